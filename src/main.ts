#!/usr/bin/env node
/**
 * The fleetbridge command: flag parsing and wiring only.
 */
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { readFileSync } from 'node:fs';
import { startStandalone } from './bridge/standalone.js';
import { createLogger } from './telemetry/logger.js';

const USAGE = `Usage:
  fleetbridge standalone --manifests DIR [--opamp-port 4320] [--http-port 8080] [--host 0.0.0.0]
                         [--heartbeat-interval SECONDS] [--max-message-bytes N] [--watch-debounce-ms 100]
                         [--admin-token-file PATH] [--metrics-auth true|false] [--own-metrics-max-skew SECONDS]
  fleetbridge operator   [--kubeconfig PATH] [--namespace NS] [--bridge NAME]
                         [--opamp-port PORT] [--http-port 8080] [--host 0.0.0.0] [--advertise-url URL]
                         [--admin-auth kubernetes|none] [--metrics-auth true|false] [--own-metrics-max-skew SECONDS]

Commands:
  standalone   Serve OpAMP for the Collector and OpAMPBridge manifests in DIR (watched for changes).
               Without an OpAMPBridge in DIR agents are not authenticated and both endpoints listen on
               loopback only, whatever --host says; an OpAMPBridge that is present but invalid (or a
               file that cannot be read when none is valid) stops the start.
  operator     Serve OpAMP for the OpAMPBridge NAME in namespace NS, with Collectors and pods from the
               Kubernetes API, and write the fleet's status back. Defaults: in-cluster config, the pod's
               namespace (POD_NAMESPACE or the service account's), bridge FLEETBRIDGE_BRIDGE or "fleetbridge".

Admin endpoint (--http-port): /healthz and /readyz are open; the API and /metrics need a credential
(standalone: an admin token from --admin-token-file or spec.admin.tokenSecretName, or a client
certificate of spec.adminTLS.clientCASecretName; operator: a bearer token the Kubernetes API accepts
and authorizes). Standalone without any of them, or --admin-auth none, it listens on 127.0.0.1 only.
--metrics-auth false leaves /metrics open.
`;

function boolFlag(v: string | undefined, name: string): boolean | undefined {
  if (v === undefined) return undefined;
  if (v === 'true' || v === 'false') return v === 'true';
  process.stderr.write(`fleetbridge: --${name} must be true or false, got ${JSON.stringify(v)}\n`);
  process.exit(2);
}

function secondsFlagMs(v: string | undefined, name: string): number | undefined {
  const n = intFlag(v, name);
  return n === undefined ? undefined : n * 1000;
}

function intFlag(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) {
    process.stderr.write(`fleetbridge: --${name} must be a non-negative integer, got ${JSON.stringify(v)}\n`);
    process.exit(2);
  }
  return n;
}

/**
 * Start-up that ends with nothing left to wait on (a promise nobody settles) would make Node exit
 * with code 0 and no word: that is a failed start.
 */
function exitIfStartStalls(what: string): () => void {
  const onBeforeExit = () => {
    process.stderr.write(`fleetbridge: ${what} stopped during start-up without saying why\n`);
    process.exit(1);
  };
  process.once('beforeExit', onBeforeExit);
  return () => process.off('beforeExit', onBeforeExit);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  if (command === 'operator') return operator(rest);
  if (command !== 'standalone') {
    process.stderr.write(`fleetbridge: unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
    process.exit(2);
  }
  const values = flags(rest, [...SHARED_FLAGS, 'manifests', 'heartbeat-interval', 'max-message-bytes', 'watch-debounce-ms', 'admin-token-file']);
  const manifests = values.manifests;
  if (!manifests) {
    process.stderr.write(`fleetbridge: --manifests DIR is required\n\n${USAGE}`);
    process.exit(2);
  }
  const logger = createLogger();
  await runUntilSignal('fleetbridge standalone', 'Fleetbridge failed to start', logger, () =>
    startStandalone({
      manifestsDir: resolve(manifests),
      logger,
      opampPort: intFlag(values['opamp-port'], 'opamp-port'),
      httpPort: intFlag(values['http-port'], 'http-port'),
      host: values.host,
      heartbeatIntervalSeconds: intFlag(values['heartbeat-interval'], 'heartbeat-interval'),
      maxMessageBytes: intFlag(values['max-message-bytes'], 'max-message-bytes'),
      watchDebounceMs: intFlag(values['watch-debounce-ms'], 'watch-debounce-ms'),
      ...(values['admin-token-file'] ? { adminTokenFile: resolve(values['admin-token-file']) } : {}),
      metricsAuth: boolFlag(values['metrics-auth'], 'metrics-auth'),
      ownMetricsMaxSkewMs: secondsFlagMs(values['own-metrics-max-skew'], 'own-metrics-max-skew'),
    }),
  );
}

/** Starts a mode (exit 1 when it cannot start, or when starting stalls) and stops it on SIGTERM/SIGINT. */
async function runUntilSignal(name: string, failure: string, logger: ReturnType<typeof createLogger>, start: () => Promise<{ stop(): Promise<void> }>): Promise<void> {
  const started = exitIfStartStalls(name);
  let running: { stop(): Promise<void> };
  try {
    running = await start();
  } catch (err) {
    logger.fatal({ err }, failure);
    process.stderr.write(`fleetbridge: ${(err as Error).message}\n`);
    process.exit(1);
  }
  started();
  stopOnSignals(logger, () => running.stop());
}

function stopOnSignals(logger: ReturnType<typeof createLogger>, stopFn: () => Promise<void>): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'Stopping');
    stopFn().then(
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

/** Flags both commands take. */
const SHARED_FLAGS = ['opamp-port', 'http-port', 'host', 'metrics-auth', 'own-metrics-max-skew'] as const;

/** The command's flags (all strings), or exit 2 with the usage. */
function flags<K extends string>(args: string[], names: readonly K[]): Partial<Record<K, string>> {
  const options = Object.fromEntries(names.map((n) => [n, { type: 'string' as const }]));
  try {
    return parseArgs({ args, options, strict: true }).values as Partial<Record<K, string>>;
  } catch (err) {
    process.stderr.write(`fleetbridge: ${(err as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
}

function inClusterNamespace(): string | undefined {
  if (process.env['POD_NAMESPACE']) return process.env['POD_NAMESPACE'];
  try {
    return readFileSync('/var/run/secrets/kubernetes.io/serviceaccount/namespace', 'utf8').trim();
  } catch {
    return undefined;
  }
}

async function operator(args: string[]): Promise<void> {
  const values = flags(args, [...SHARED_FLAGS, 'kubeconfig', 'namespace', 'bridge', 'advertise-url', 'admin-auth']);
  const namespace = values.namespace ?? inClusterNamespace();
  if (!namespace) {
    process.stderr.write('fleetbridge: --namespace is required outside a cluster\n');
    process.exit(2);
  }
  const adminAuth = values['admin-auth'] ?? 'kubernetes';
  if (adminAuth !== 'kubernetes' && adminAuth !== 'none') {
    process.stderr.write(`fleetbridge: --admin-auth must be kubernetes or none, got ${JSON.stringify(adminAuth)}\n`);
    process.exit(2);
  }
  const metricsAuth = boolFlag(values['metrics-auth'], 'metrics-auth');
  const ownMetricsMaxSkewMs = secondsFlagMs(values['own-metrics-max-skew'], 'own-metrics-max-skew');
  const logger = createLogger();
  // Loaded only here: standalone mode never pays for the Kubernetes client.
  const { loadKubeConfig } = await import('./kube/client.js');
  const { startOperator } = await import('./bridge/operator.js');
  await runUntilSignal('fleetbridge operator', 'Fleetbridge operator failed to start', logger, () =>
    startOperator({
      kc: loadKubeConfig(values.kubeconfig ?? process.env['KUBECONFIG']),
      namespace,
      bridgeName: values.bridge ?? process.env['FLEETBRIDGE_BRIDGE'] ?? 'fleetbridge',
      logger,
      opampPort: intFlag(values['opamp-port'], 'opamp-port'),
      httpPort: intFlag(values['http-port'], 'http-port'),
      host: values.host,
      advertiseUrl: values['advertise-url'],
      adminAuth,
      metricsAuth,
      ownMetricsMaxSkewMs,
    }),
  );
}

void main(process.argv.slice(2));
