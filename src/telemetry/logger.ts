import { pino, type Logger, type LoggerOptions, type DestinationStream } from 'pino';

export type { Logger };

/**
 * The root logger. JSON lines, except on an interactive terminal, where pino-pretty formats them
 * for people; FLEETBRIDGE_LOG_FORMAT=json or =pretty forces either. Secret values are redacted by
 * path, once, here.
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
  if (opts.destination) return pino(options, opts.destination);
  const format = process.env['FLEETBRIDGE_LOG_FORMAT'] ?? (process.stdout.isTTY ? 'pretty' : 'json');
  if (format === 'pretty') {
    return pino(options, pino.transport({ target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,app' } }));
  }
  return pino(options);
}
