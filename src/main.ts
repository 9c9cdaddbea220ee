#!/usr/bin/env node
/**
 * The fleetbridge command: flag parsing and wiring only.
 */
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { startStandalone } from './app.js';
import { createLogger } from './telemetry/logger.js';

const USAGE = `Usage:
  fleetbridge standalone --manifests DIR [--opamp-port 4320] [--http-port 8080] [--host 0.0.0.0]
                         [--heartbeat-interval SECONDS] [--max-message-bytes N]

Commands:
  standalone   Serve OpAMP for the Collector and OpAMPBridge manifests in DIR (watched for changes).
`;

function intFlag(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) {
    process.stderr.write(`fleetbridge: --${name} must be a non-negative integer, got ${JSON.stringify(v)}\n`);
    process.exit(2);
  }
  return n;
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  if (command !== 'standalone') {
    process.stderr.write(`fleetbridge: unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
    process.exit(2);
  }
  let values;
  try {
    ({ values } = parseArgs({
      args: rest,
      options: {
        manifests: { type: 'string' },
        'opamp-port': { type: 'string' },
        'http-port': { type: 'string' },
        host: { type: 'string' },
        'heartbeat-interval': { type: 'string' },
        'max-message-bytes': { type: 'string' },
      },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`fleetbridge: ${(err as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
  if (!values.manifests) {
    process.stderr.write(`fleetbridge: --manifests DIR is required\n\n${USAGE}`);
    process.exit(2);
  }
  const logger = createLogger();
  let bridge;
  try {
    bridge = await startStandalone({
      manifestsDir: resolve(values.manifests),
      logger,
      opampPort: intFlag(values['opamp-port'], 'opamp-port'),
      httpPort: intFlag(values['http-port'], 'http-port'),
      host: values.host,
      heartbeatIntervalSeconds: intFlag(values['heartbeat-interval'], 'heartbeat-interval'),
      maxMessageBytes: intFlag(values['max-message-bytes'], 'max-message-bytes'),
    });
  } catch (err) {
    logger.fatal({ err }, 'Fleetbridge failed to start');
    process.stderr.write(`fleetbridge: ${(err as Error).message}\n`);
    process.exit(1);
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'Stopping');
    bridge.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'Error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

void main(process.argv.slice(2));
