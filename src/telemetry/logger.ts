import { pino, type Logger, type LoggerOptions, type DestinationStream } from 'pino';

export type { Logger };

/**
 * The root logger. JSON lines by default; pretty only when asked (FLEETBRIDGE_LOG_FORMAT=pretty
 * and pino-pretty installed). Secret values are redacted by path, once, here.
 */
export function createLogger(opts: { level?: string; destination?: DestinationStream } = {}): Logger {
  const options: LoggerOptions = {
    level: opts.level ?? process.env['FLEETBRIDGE_LOG_LEVEL'] ?? 'info',
    base: { app: 'fleetbridge' },
    redact: {
      paths: ['headers.authorization', 'req.headers.authorization', '*.token', '*.password', 'secret', '*.secret'],
      censor: '[REDACTED]',
    },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return opts.destination ? pino(options, opts.destination) : pino(options);
}
