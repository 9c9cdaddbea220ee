/**
 * The operator started in-process for the Kubernetes integration tests, with test defaults:
 * free ports (0) on 127.0.0.1, no leader election unless asked for, a quiet logger
 * (FLEETBRIDGE_TEST_LOG_LEVEL, else silent), status writes at most every 200 ms, and its stop()
 * registered with the caller's cleanups.
 *
 * ```ts
 * const op = await startTestOperator({ kc, namespace: ns, cleanups, adminAuth: 'none' });
 * // agents connect to op.opampUrl.websocket; the admin API is op.apiUrl
 * ```
 */
import { pino } from 'pino';
import { startOperator, type OperatorOptions, type RunningOperator } from '../../../src/bridge/operator.js';

export type { RunningOperator };

export interface TestOperatorOptions extends Omit<OperatorOptions, 'logger' | 'bridgeName'> {
  /** The OpAMPBridge served; default `fb`. */
  bridgeName?: string;
  /** Default: pino at FLEETBRIDGE_TEST_LOG_LEVEL, else silent. */
  logger?: OperatorOptions['logger'];
  /** The operator's stop() is pushed here (run by the caller's afterAll/afterEach). */
  cleanups: (() => Promise<unknown>)[];
}

export async function startTestOperator({ cleanups, ...opts }: TestOperatorOptions): Promise<RunningOperator> {
  const op = await startOperator({
    bridgeName: 'fb',
    logger: pino({ level: process.env['FLEETBRIDGE_TEST_LOG_LEVEL'] ?? 'silent' }),
    opampPort: 0,
    httpPort: 0,
    host: '127.0.0.1',
    statusIntervalMs: 200,
    leaderElection: false,
    ...opts,
  });
  cleanups.push(() => op.stop());
  return op;
}
