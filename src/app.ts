/**
 * Builds the whole bridge from its dependencies, without a process: tests use it directly and
 * src/main.ts only parses flags and calls it.
 */
import type { Logger } from 'pino';
import { AdminServer } from './api/server.js';
import type { CollectorView } from './api/views.js';
import { aggregateCollectorStatus, emptyStatus, mergedConfigIssues } from './controller/collector-status.js';
import { Fleet } from './fleet/fleet.js';
import { OpampServer } from './opamp/server.js';
import { DesiredState } from './render/index.js';
import { OpAMPBridgeSpec } from './schema/v1alpha1/index.js';
import { ManifestDirectory, type ManifestSnapshot } from './standalone/manifests.js';
import { createMetrics, type Metrics } from './telemetry/metrics.js';

export interface StandaloneOptions {
  manifestsDir: string;
  logger: Logger;
  /** OpAMP port; overrides the OpAMPBridge manifest. 0 picks a free port. Default: manifest, else 4320. */
  opampPort?: number;
  /** Admin API port. 0 picks a free port. Default 8080. */
  httpPort?: number;
  /** Address both servers bind. Default 0.0.0.0. */
  host?: string;
  /** Overrides spec.limits.maxMessageBytes. */
  maxMessageBytes?: number;
  /** Overrides spec.heartbeatIntervalSeconds. */
  heartbeatIntervalSeconds?: number;
  /** Overrides spec.limits.maxMessagesPerSecond. */
  maxMessagesPerSecond?: number;
  /** Overrides spec.limits.maxConnectionsPerSource. */
  maxConnectionsPerSource?: number;
  /** WebSocket ping period, ms. Default 30,000. */
  pingIntervalMs?: number;
  /** How often silent HTTP agents are swept, ms. Default 5,000. */
  sweepIntervalMs?: number;
  metrics?: Metrics;
}

export interface RunningBridge {
  opampUrl: { websocket: string; http: string };
  apiUrl: string;
  fleet: Fleet;
  manifests: ManifestDirectory;
  stop(): Promise<void>;
}

export async function startStandalone(opts: StandaloneOptions): Promise<RunningBridge> {
  const log = opts.logger;
  const metrics = opts.metrics ?? createMetrics();
  const manifests = new ManifestDirectory({
    dir: opts.manifestsDir,
    logger: log.child({ component: 'manifests' }),
    onChange: (snap) => apply(snap),
  });
  const initial = await manifests.load();
  const bridgeSpec = initial.bridge?.resource.spec ?? OpAMPBridgeSpec.parse({});
  const bridgeNamespace = initial.bridge?.resource.metadata.namespace ?? 'default';
  const heartbeat = opts.heartbeatIntervalSeconds ?? bridgeSpec.heartbeatIntervalSeconds;
  const maxMessageBytes = opts.maxMessageBytes ?? bridgeSpec.limits.maxMessageBytes;

  const fleet = new Fleet({
    logger: log.child({ component: 'fleet' }),
    metrics,
    heartbeatIntervalSeconds: heartbeat,
    maxAgents: bridgeSpec.limits.maxAgents,
    defaultNamespace: bridgeNamespace,
  });

  let desiredState = new DesiredState([]);
  function apply(snap: ManifestSnapshot): void {
    metrics.manifestErrors.set(snap.invalidFiles.length);
    desiredState = new DesiredState(snap.collectors.map((c) => c.input));
    fleet.setDesiredState(desiredState);
  }
  apply(initial);

  const opamp = new OpampServer({
    handler: fleet,
    logger: log.child({ component: 'opamp' }),
    onProtocolError: (transport, code) => metrics.protocolErrors.inc({ transport, code }),
    path: bridgeSpec.endpoint.path,
    transports: bridgeSpec.transports,
    maxMessageBytes,
    maxMessagesPerSecond: opts.maxMessagesPerSecond ?? bridgeSpec.limits.maxMessagesPerSecond,
    maxConnectionsPerSource: opts.maxConnectionsPerSource ?? bridgeSpec.limits.maxConnectionsPerSource,
    pingIntervalMs: opts.pingIntervalMs ?? 30_000,
  });
  const admin = new AdminServer({
    registry: metrics.registry,
    logger: log.child({ component: 'api' }),
    source: {
      ready: () => ready,
      agents: () => fleet.views(),
      agent: (uid) => fleet.viewOf(uid),
      collectors: () => {
        const snap = manifests.snapshot;
        const counts = aggregateCollectorStatus(fleet.records());
        const merged = mergedConfigIssues(fleet.records());
        const collectors: CollectorView[] = snap.collectors.map((c) => {
          const key = `${c.input.namespace}/${c.input.name}`;
          const issues = merged.get(key) ?? [];
          return {
            namespace: c.input.namespace,
            name: c.input.name,
            source: c.source,
            generation: c.input.generation,
            priority: c.input.priority,
            valid: issues.length === 0,
            issues,
            configHash: desiredState.ownConfigHash(c.input),
            status: counts.get(key) ?? emptyStatus(),
          };
        });
        return { collectors, invalidFiles: snap.invalidFiles };
      },
      beforeScrape: () => fleet.updateGauges(),
    },
  });

  let ready = false;
  const host = opts.host ?? '0.0.0.0';
  const oa = await opamp.listen(opts.opampPort ?? bridgeSpec.endpoint.port, host);
  let aa;
  try {
    aa = await admin.listen(opts.httpPort ?? 8080, host);
  } catch (err) {
    await opamp.close();
    throw err;
  }
  manifests.watch();
  const sweeper = setInterval(() => fleet.sweep(), opts.sweepIntervalMs ?? 5000);
  sweeper.unref();
  ready = true;

  const shown = (h: string) => (h === '0.0.0.0' || h === '::' ? '127.0.0.1' : h.includes(':') ? `[${h}]` : h);
  const running: RunningBridge = {
    opampUrl: {
      websocket: `ws://${shown(oa.host)}:${oa.port}${bridgeSpec.endpoint.path}`,
      http: `http://${shown(oa.host)}:${oa.port}${bridgeSpec.endpoint.path}`,
    },
    apiUrl: `http://${shown(aa.host)}:${aa.port}`,
    fleet,
    manifests,
    async stop() {
      ready = false;
      clearInterval(sweeper);
      await manifests.close();
      await Promise.all([opamp.close(), admin.close()]);
    },
  };
  log.info(
    {
      opamp: running.opampUrl,
      api: running.apiUrl,
      manifests: opts.manifestsDir,
      collectors: initial.collectors.length,
      invalidFiles: initial.invalidFiles.length,
    },
    'Fleetbridge standalone started',
  );
  return running;
}
