/**
 * Kubernetes mode: the bridge core (core.ts) as an operator, from named units in src/kube:
 * the reconciler (Collectors, Pods, Namespaces → desired state), the bridge settings (the
 * OpAMPBridge, applied live), the secret cache, and the status writer (Collector and OpAMPBridge
 * status and Events, leader only). Every replica serves OpAMP; only the Lease holder writes.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram } from 'prom-client';
import { OPEN_ACCESS } from '../api/access.js';
import type { CompiledCollector } from '../controller/collector-compiler.js';
import type { CollectorEntry } from '../controller/collector-views.js';
import { bridgeTotals, type Fleet } from '../fleet/fleet.js';
import { mtlsAuth } from '../opamp/mtls-auth.js';
import type { OpAMPBridgeSpec } from '../schema/v1alpha1/index.js';
import { createMetrics, type Metrics } from '../telemetry/metrics.js';
import { kubernetesAdminAccessFrom } from '../kube/access-review.js';
import { KubeBridgeSettings, bridgeSecretKeys } from '../kube/bridge-settings.js';
import { makeClients } from '../kube/client.js';
import { EventRecorder } from '../kube/events.js';
import { LeaderElector } from '../kube/leader.js';
import { podIdentity } from '../kube/pod-identity.js';
import { Reconciler } from '../kube/reconciler.js';
import { SecretCache, configSecrets } from '../kube/secrets.js';
import { StatusWriter } from '../kube/status-writer.js';
import { serviceAccountTokenAuth } from '../kube/token-review.js';
import { BridgeCore } from './core.js';

export interface OperatorOptions {
  kc: KubeConfig;
  /** Namespace of the OpAMPBridge this process serves (and of its Lease). */
  namespace: string;
  /** Name of that OpAMPBridge. */
  bridgeName: string;
  logger: Logger;
  /** OpAMP port; overrides the OpAMPBridge. 0 picks a free port. */
  opampPort?: number;
  /** Admin API port (probes, metrics, API). Default 8080; 0 picks a free port. */
  httpPort?: number;
  host?: string;
  /** Least time between two status writes of one object, ms. Default 1,000. */
  statusIntervalMs?: number;
  /** Default true. Off only for tests of a single replica. */
  leaderElection?: boolean;
  /** This replica's identity in the Lease. Default host name + random suffix. */
  identity?: string;
  /** Overrides spec.heartbeatIntervalSeconds. */
  heartbeatIntervalSeconds?: number;
  /** The URL agents should use, shown in OpAMPBridge.status.endpoint. Default ws://NAME.NAMESPACE.svc:PORT/PATH. */
  advertiseUrl?: string;
  pingIntervalMs?: number;
  sweepIntervalMs?: number;
  metrics?: Metrics;
  /**
   * Who may use the admin API and /metrics: kubernetes (default): a bearer token verified with a
   * TokenReview and authorized with a SubjectAccessReview (src/kube/access-review.ts); none: open,
   * on loopback only.
   */
  adminAuth?: 'kubernetes' | 'none';
  /** false: /metrics needs no credential (the API still does). Default true. */
  metricsAuth?: boolean;
  /** How far an own-metrics data point's time may be from now, ms. Default 5 minutes. */
  ownMetricsMaxSkewMs?: number;
}

export interface RunningOperator {
  opampUrl: { websocket: string; http: string };
  apiUrl: string;
  fleet: Fleet;
  isLeader(): boolean;
  /** Resolves when queued reconciles and status writes are done (tests). */
  settled(): Promise<void>;
  stop(): Promise<void>;
}

export async function startOperator(opts: OperatorOptions): Promise<RunningOperator> {
  const log = opts.logger;
  const metrics = opts.metrics ?? createMetrics();
  const om = operatorMetrics(metrics);
  const k = makeClients(opts.kc);
  const ns = opts.namespace;
  const onApiError = () => om.apiErrors.inc({ op: 'watch' });

  const settings = new KubeBridgeSettings({ kc: opts.kc, clients: k, namespace: ns, bridgeName: opts.bridgeName, logger: log, onApiError });
  const spec = await settings.load();
  let core: BridgeCore | null = null;

  // ---- Secrets: the ones Collectors list, and the bridge's own (tokens, certificates) --------
  let bridgeSecrets = bridgeSecretKeys(spec, ns);
  const secrets = new SecretCache({
    kc: opts.kc,
    core: k.core,
    logger: log.child({ component: 'secrets' }),
    onChange: (key) => {
      if (!core) return;
      // Any value the bridge holds (tokens and telemetry headers included) is scrubbed from what agents report.
      core.scrub(secrets.values());
      core.secretsChanged((sns, name) => `${sns}/${name}` === key);
      if (bridgeSecrets.includes(key)) status.bridgeChanged();
      if (reconciler.collectorSecrets.includes(key)) reconciler.requeue();
    },
    onError: onApiError,
  });
  const wantSecrets = () => secrets.want([...bridgeSecrets, ...reconciler.collectorSecrets]);

  let compiled: CompiledCollector[] = [];
  let byKey = new Map<string, CollectorEntry>();
  const reconciler = new Reconciler({
    kc: opts.kc,
    clients: k,
    namespace: ns,
    namespaceSelector: spec.namespaceSelector,
    secrets,
    logger: log,
    onSecretsWanted: wantSecrets,
    onCompiled: (next) => {
      compiled = next;
      byKey = new Map(compiled.map((c) => [c.key, { ...c, source: null }]));
      // Every value the bridge could substitute is scrubbed from what agents report, even before it is pushed.
      core!.scrub(secrets.values());
      core!.setDesired(compiled.flatMap((c) => (c.input ? [c.input] : [])));
      status.scheduleAll();
    },
    onApiError,
    observe: (outcome, s) => om.observe('desired', outcome, s),
  });

  const elector =
    opts.leaderElection === false
      ? null
      : new LeaderElector({
          api: k.coordination,
          namespace: ns,
          name: `fleetbridge-${opts.bridgeName}`,
          identity: opts.identity ?? `${hostname()}-${randomBytes(3).toString('hex')}`,
          logger: log.child({ component: 'leader' }),
          onChange: (leader) => {
            if (leader) status.forget();
          },
        });
  const isLeader = () => (elector ? elector.isLeader : true);

  // Waits until the bridge's own Secrets were read, so TLS and tokens are in place before serving.
  if (bridgeSecrets.length > 0) {
    wantSecrets();
    // Up to 15 s: a Secret that cannot be read by then (missing, or RBAC) is reported as missing.
    while (!secrets.settled(15_000)) await new Promise((r) => setTimeout(r, 100));
  }
  if (spec.auth.mode === 'none') log.warn({ bridge: settings.ref }, 'Agent authentication is off (spec.auth.mode: none): any agent that reaches the endpoint is served by the pod it claims');
  const adminAccess = opts.adminAuth === 'none' ? OPEN_ACCESS : kubernetesAdminAccessFrom(opts.kc, k.authn, { namespace: ns, bridgeName: opts.bridgeName, logger: log.child({ component: 'admin-auth' }) });
  if (spec.admin?.tokenSecretName || spec.adminTLS?.clientCASecretName) log.warn({ bridge: settings.ref }, 'spec.admin.tokenSecretName and spec.adminTLS.clientCASecretName apply to standalone mode; the operator authorizes admin requests with TokenReview and SubjectAccessReview');
  const tokenSecret = (s: OpAMPBridgeSpec) => (s.auth.bearerToken ? secrets.get(ns, s.auth.bearerToken.secretName) : undefined);
  try {
    core = BridgeCore.build({
      logger: log,
      metrics,
      spec,
      namespace: ns,
      identity: podIdentity(reconciler.pods, reconciler.serves),
      secrets,
      configSecrets: configSecrets(secrets),
      // Tokens name no namespace here: agents are bound to the pods they claim.
      tokenSources: (s) => {
        const sec = tokenSecret(s);
        return [{ tokens: sec?.data ?? {}, currentKey: s.auth.bearerToken!.currentKey, ...(sec ? {} : { problem: `Secret ${ns}/${s.auth.bearerToken!.secretName} not found` }) }];
      },
      verifier: (s) =>
        s.auth.mode === 'serviceAccountToken'
          ? serviceAccountTokenAuth({ api: k.authn, audiences: s.auth.audiences, logger: log.child({ component: 'auth' }) })
          : s.auth.mode === 'mtls'
            ? mtlsAuth({ requireNamespace: true })
            : undefined,
      adminAccess,
      ready: () => reconciler.synced && settings.informer.synced,
      collectors: () => ({ entries: [...byKey.values()], invalidFiles: [] }),
      beforeScrape: () => {
        om.queueDepth.set({ queue: 'desired' }, reconciler.queue.depth);
        om.queueDepth.set({ queue: 'status' }, status.queue.depth);
        om.leader.set(isLeader() ? 1 : 0);
      },
      overrides: opts,
    });
  } catch (err) {
    await secrets.stop();
    throw err;
  }
  const bridge = core;
  /** Why bearer tokens are not usable, for status: a missing Secret, or no current token in it. */
  const bearerProblem = (): string | null => {
    const s = bridge.spec;
    if (s.auth.mode !== 'bearerToken') return null;
    const sec = tokenSecret(s);
    const where = `${ns}/${s.auth.bearerToken!.secretName}`;
    return !sec ? `Secret ${where} not found` : !sec.data[s.auth.bearerToken!.currentKey] ? `Secret ${where} has no key ${s.auth.bearerToken!.currentKey} (the current token)` : null;
  };

  const events = new EventRecorder(k.core, log.child({ component: 'events' }), { instance: opts.identity ?? hostname() });
  let advertised = '';
  const status: StatusWriter = new StatusWriter({
    clients: k,
    namespace: ns,
    bridgeName: opts.bridgeName,
    logger: log,
    events,
    isLeader,
    statusIntervalMs: opts.statusIntervalMs ?? 1000,
    entries: () => [...byKey.values()],
    entry: (key) => byKey.get(key),
    collector: (cns, name) => reconciler.collector(cns, name),
    bridgeObject: () => settings.object(),
    bridgeReport: () => settings.report({ endpoint: advertised, synced: reconciler.synced && settings.informer.synced, bearerProblem: bearerProblem() }),
    totals: () => bridgeTotals(bridge.fleet),
    desired: () => bridge.desired,
    figures: bridge.figures,
    metrics: om,
  });
  bridge.fleet.onChange(() => status.scheduleAll());

  const l = await bridge.listen({
    opampPort: opts.opampPort,
    httpPort: opts.httpPort,
    host: opts.host ?? '0.0.0.0',
    opampPortSetting: opts.opampPort !== undefined ? '--opamp-port' : `spec.endpoint.port of OpAMPBridge ${settings.ref} (or --opamp-port)`,
  }).catch(async (err: unknown) => {
    await secrets.stop();
    throw err;
  });
  const scheme = spec.tls ? 'wss' : 'ws';
  const port = opts.opampPort === 0 ? l.opamp.port : (opts.opampPort ?? spec.endpoint.port);
  const advertise = (s: OpAMPBridgeSpec) => opts.advertiseUrl ?? `${scheme}://${opts.bridgeName}.${ns}.svc:${port}${s.endpoint.path}`;
  advertised = advertise(spec);

  settings.start(
    async (next) => {
      const restart = bridge.applySettings(next).filter((f) => !(f === 'endpoint.port' && opts.opampPort !== undefined));
      bridgeSecrets = bridgeSecretKeys(next, ns);
      wantSecrets();
      advertised = advertise(next);
      await reconciler.setNamespaceSelector(next.namespaceSelector);
      return restart;
    },
    () => status.bridgeChanged(),
  );
  reconciler.start();
  elector?.start();
  // Periodic full reconcile, in case an event was missed (controller-runtime's resync).
  const resync = setInterval(() => {
    reconciler.requeue();
    status.scheduleAll();
  }, 60_000);
  resync.unref();

  log.info({ bridge: settings.ref, opamp: `${l.opamp.host}:${l.opamp.port}`, api: `${l.admin.host}:${l.admin.port}`, adminAccess: adminAccess.mode, clusterWide: spec.namespaceSelector !== undefined }, 'Fleetbridge operator started');
  return {
    opampUrl: l.opampUrl,
    apiUrl: l.apiUrl,
    fleet: bridge.fleet,
    isLeader,
    async settled() {
      await reconciler.queue.idle();
      await status.queue.idle();
    },
    async stop() {
      clearInterval(resync);
      status.stop();
      await elector?.stop();
      await Promise.all([reconciler.stop(), settings.stop(), secrets.stop()]);
      await bridge.close();
    },
  };
}

function operatorMetrics(m: Metrics) {
  const get = <T>(name: string, make: () => T): T => (m.registry.getSingleMetric(name) as T | undefined) ?? make();
  const reconciles = get('fleetbridge_reconcile_total', () => new Counter({ name: 'fleetbridge_reconcile_total', help: 'Reconciles by queue and outcome', labelNames: ['queue', 'outcome'] as const, registers: [m.registry] }));
  const duration = get('fleetbridge_reconcile_duration_seconds', () => new Histogram({ name: 'fleetbridge_reconcile_duration_seconds', help: 'Reconcile duration by queue', labelNames: ['queue'] as const, buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 2, 10], registers: [m.registry] }));
  return {
    observe(queue: string, outcome: string, seconds: number) {
      reconciles.inc({ queue, outcome });
      duration.observe({ queue }, seconds);
    },
    queueDepth: get('fleetbridge_workqueue_depth', () => new Gauge({ name: 'fleetbridge_workqueue_depth', help: 'Keys waiting in each work queue', labelNames: ['queue'] as const, registers: [m.registry] })),
    statusWrites: get('fleetbridge_status_writes_total', () => new Counter({ name: 'fleetbridge_status_writes_total', help: 'Status subresource writes by kind and outcome', labelNames: ['kind', 'outcome'] as const, registers: [m.registry] })),
    apiErrors: get('fleetbridge_kube_api_errors_total', () => new Counter({ name: 'fleetbridge_kube_api_errors_total', help: 'Failed Kubernetes API calls by operation', labelNames: ['op'] as const, registers: [m.registry] })),
    leader: get('fleetbridge_leader', () => new Gauge({ name: 'fleetbridge_leader', help: '1 while this replica holds the Lease and writes status', registers: [m.registry] })),
  };
}
