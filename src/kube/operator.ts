/**
 * Kubernetes mode: the bridge as an operator. Informers on OpAMPBridge, Collector and Pod (and
 * Namespace when a namespaceSelector is set) feed a level-triggered reconcile of the desired state;
 * the fleet's truth is written back into `status` (coalesced, leader only) with aggregated Events.
 * Every replica serves OpAMP; only the Lease holder writes.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { KubeConfig, KubernetesListObject, KubernetesObject, V1Namespace, V1Pod } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram } from 'prom-client';
import { AdminServer } from '../api/server.js';
import type { CollectorView } from '../api/views.js';
import { buildCollectorStatus, aggregateCollectorStatus, emptyStatus, mergedConfigIssues, type CollectorFleetStatus } from '../controller/collector-status.js';
import { CollectorCompiler, type CompiledCollector, type CollectorObject } from '../controller/collector-compiler.js';
import { ConditionType, Reason, setCondition } from '../controller/conditions.js';
import { WorkQueue } from '../controller/workqueue.js';
import { Fleet, configState, sweepEvery, type OwnTelemetry } from '../fleet/fleet.js';
import { OpampServer } from '../opamp/server.js';
import { BearerTokens } from '../opamp/bearer-auth.js';
import type { AgentConnection, AuthResult } from '../opamp/connection.js';
import { bridgeMetricsDestination, fleetSink, receiverCounters } from '../otlp/bridge.js';
import { otlpMetricsHandler } from '../otlp/receiver.js';
import { mtlsAuth } from '../opamp/mtls-auth.js';
import type { TlsMaterial } from '../opamp/tls.js';
import { DesiredState, selectorMatches } from '../render/index.js';
import { API_GROUP, API_VERSION, GROUP_VERSION, OpAMPBridgeSpec, type Condition, type OpAMPBridge } from '../schema/v1alpha1/index.js';
import { createMetrics, type Metrics } from '../telemetry/metrics.js';
import { MERGE_PATCH, errorText, makeClients, statusOf } from './client.js';
import { EventRecorder } from './events.js';
import { serviceAccountTokenAuth } from './token-review.js';
import { kubernetesAdminAccessFrom } from './access-review.js';
import { OPEN_ACCESS, adminListenHost } from '../api/access.js';
import { OwnMetricsCredentials, ownMetricsToken } from '../otlp/credentials.js';
import { ResilientInformer } from './informer.js';
import { LeaderElector } from './leader.js';
import { PodIndex, podIdentity } from './pod-identity.js';
import { SecretCache, configSecrets } from './secrets.js';
import { packagesSummary, servePolicy } from '../packages/desired.js';
import { keepingAlive, listenOrExplain } from '../listen.js';
import { packageFilesRoute } from '../packages/files.js';

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

type CollectorResource = KubernetesObject & CollectorObject & { status?: { conditions?: Condition[] } };
type BridgeResource = KubernetesObject & { spec?: unknown; status?: { conditions?: Condition[] } };

const COLLECTORS = 'collectors';
const BRIDGES = 'opampbridges';

export async function startOperator(opts: OperatorOptions): Promise<RunningOperator> {
  const log = opts.logger;
  const metrics = opts.metrics ?? createMetrics();
  const om = operatorMetrics(metrics);
  const k = makeClients(opts.kc);
  const ns = opts.namespace;

  const bridgeObj = await readBridge();
  const parsedSpec = OpAMPBridgeSpec.safeParse(bridgeObj?.spec ?? {});
  if (!parsedSpec.success) log.error({ issues: parsedSpec.error.issues }, 'OpAMPBridge spec is invalid; serving with defaults');
  const spec = parsedSpec.success ? parsedSpec.data : OpAMPBridgeSpec.parse({});
  const inEffectGeneration = (bridgeObj?.metadata?.generation as number | undefined) ?? 0;
  const selector = spec.namespaceSelector;
  const clusterWide = selector !== undefined;

  // ---- Secrets: the ones Collectors list, and the bridge's own (tokens, certificates) --------
  const bridgeSecret = (name: string | undefined) => (name ? `${ns}/${name}` : null);
  const tokenSecret = spec.auth.mode === 'bearerToken' ? bridgeSecret(spec.auth.bearerToken?.secretName) : null;
  const tlsSecret = bridgeSecret(spec.tls?.secretName);
  const clientCaSecret = bridgeSecret(spec.tls?.clientCASecretName);
  const adminTlsSecret = bridgeSecret(spec.adminTLS?.secretName);
  const telemetrySecrets = (['metrics', 'traces', 'logs'] as const).map((sig) => bridgeSecret(spec.ownTelemetry?.[sig]?.headersSecretName)).filter((k): k is string => k !== null);
  const bridgeSecrets = [...new Set([tokenSecret, tlsSecret, clientCaSecret, adminTlsSecret, ...telemetrySecrets].filter((k): k is string => k !== null))];
  let collectorSecrets: string[] = [];
  const secrets = new SecretCache({
    kc: opts.kc,
    core: k.core,
    logger: log.child({ component: 'secrets' }),
    onChange: (key) => onSecretChange(key),
    onError: () => om.apiErrors.inc({ op: 'watch' }),
  });
  const wantSecrets = () => secrets.want([...bridgeSecrets, ...collectorSecrets]);

  // ---- caches ------------------------------------------------------------------------------
  const desiredQueue = new WorkQueue({
    name: 'desired',
    logger: log.child({ component: 'controller' }),
    concurrency: 1,
    process: async () => reconcileDesired(),
    onResult: (_k, outcome, s) => om.observe('desired', outcome, s),
  });
  const statusQueue = new WorkQueue({
    name: 'status',
    logger: log.child({ component: 'status' }),
    concurrency: 4,
    minIntervalMs: opts.statusIntervalMs ?? 1000,
    process: async (key) => writeStatus(key),
    onResult: (_k, outcome, s) => om.observe('status', outcome, s),
  });
  const onInputChange = () => desiredQueue.add('desired');
  const informers: ResilientInformer<KubernetesObject>[] = [];
  const informer = <T extends KubernetesObject>(path: string, list: () => Promise<KubernetesListObject<T>>, onChange: (o: T | null) => void) => {
    const inf = new ResilientInformer<T>({ kc: opts.kc, path, list, logger: log.child({ component: 'informer' }), onChange, onError: () => om.apiErrors.inc({ op: 'watch' }) });
    informers.push(inf as unknown as ResilientInformer<KubernetesObject>);
    return inf;
  };

  const nsInformer = clusterWide
    ? informer<V1Namespace>('/api/v1/namespaces', () => k.core.listNamespace(), onInputChange)
    : null;
  const serves = (namespace: string): boolean => {
    if (!clusterWide) return namespace === ns;
    if (namespace === ns) return true;
    const n = nsInformer!.get(namespace);
    return !!n && selectorMatches(selector!, n.metadata?.labels ?? {});
  };
  // Our own status writes come back as updates: only a new generation (or an add/delete) is an input change.
  const seenGeneration = new Map<string, number>();
  const onCollector = (c: CollectorResource | null) => {
    if (c) {
      const uid = c.metadata?.uid ?? '';
      const live = collectorInformer.get(c.metadata?.name ?? '', c.metadata?.namespace);
      if (!live) seenGeneration.delete(uid);
      else if (seenGeneration.get(uid) === live.metadata?.generation) return;
      else seenGeneration.set(uid, live.metadata?.generation ?? 0);
    }
    onInputChange();
  };
  const collectorInformer: ResilientInformer<CollectorResource> = clusterWide
    ? informer<CollectorResource>(`/apis/${API_GROUP}/${API_VERSION}/${COLLECTORS}`, () => k.custom.listClusterCustomObject({ group: API_GROUP, version: API_VERSION, plural: COLLECTORS }) as Promise<KubernetesListObject<CollectorResource>>, onCollector)
    : informer<CollectorResource>(`/apis/${API_GROUP}/${API_VERSION}/namespaces/${ns}/${COLLECTORS}`, () => k.custom.listNamespacedCustomObject({ group: API_GROUP, version: API_VERSION, namespace: ns, plural: COLLECTORS }) as Promise<KubernetesListObject<CollectorResource>>, onCollector);
  let podIndex: PodIndex;
  // Pods change often (status from the kubelet); only existence and labels matter here.
  const onPod = (p: V1Pod | null) => {
    if (podIndex.update(p)) onInputChange();
  };
  const podInformer = clusterWide
    ? informer<V1Pod>('/api/v1/pods', () => k.core.listPodForAllNamespaces(), onPod)
    : informer<V1Pod>(`/api/v1/namespaces/${ns}/pods`, () => k.core.listNamespacedPod({ namespace: ns }), onPod);
  podIndex = new PodIndex(podInformer);
  const bridgeInformer = informer<BridgeResource>(`/apis/${API_GROUP}/${API_VERSION}/namespaces/${ns}/${BRIDGES}`, () => k.custom.listNamespacedCustomObject({ group: API_GROUP, version: API_VERSION, namespace: ns, plural: BRIDGES }) as Promise<KubernetesListObject<BridgeResource>>, () => statusQueue.add('bridge'));

  // ---- fleet and OpAMP ----------------------------------------------------------------------
  /** The admin endpoint once it listens: agents may be offered its /v1/metrics (src/otlp). */
  let adminEndpoint: { port: number; tls: boolean; loopbackOnly: boolean } | null = null;
  /** Agents send their own metrics with a credential minted for their uid and identity (src/otlp/credentials.ts). */
  const ownMetricsCredentials = new OwnMetricsCredentials();
  const bearer = spec.auth.mode === 'bearerToken' ? new BearerTokens() : null;
  const fleet = new Fleet({
    ...(bearer ? { credentials: bearer } : {}),
    ownTelemetry: (conn) => ownTelemetry(conn),
    // cert-manager (and most issuers) put the issuing CA into the TLS Secret as ca.crt.
    serverCa: () => (spec.tls ? secrets.get(ns, spec.tls.secretName)?.data['ca.crt'] : undefined),
    logger: log.child({ component: 'fleet' }),
    metrics,
    heartbeatIntervalSeconds: opts.heartbeatIntervalSeconds ?? spec.heartbeatIntervalSeconds,
    maxAgents: spec.limits.maxAgents,
    bounds: spec.limits.agentReports ?? {},
    ...(spec.limits.newAgentsPerSource ? { newAgentsPerSourceBurst: spec.limits.newAgentsPerSource.burst, newAgentsPerSourcePerSecond: spec.limits.newAgentsPerSource.perSecond } : {}),
    defaultNamespace: ns,
    identity: podIdentity(podIndex, serves),
  });
  const compiler = new CollectorCompiler();
  let compiled: CompiledCollector[] = [];
  let compiledByKey = new Map<string, CompiledCollector>();
  let desiredState = new DesiredState([]);
  let countsCache: Map<string, CollectorFleetStatus> | null = null;
  let issuesCache: Map<string, string[]> | null = null;
  const counts = () => (countsCache ??= aggregateCollectorStatus(fleet.records()));
  const renderIssues = () => (issuesCache ??= mergedConfigIssues(fleet.records()));

  let statusTimer: NodeJS.Timeout | null = null;
  const scheduleAllStatus = () => {
    countsCache = null;
    issuesCache = null;
    if (statusTimer) return;
    statusTimer = setTimeout(() => {
      statusTimer = null;
      for (const c of compiled) statusQueue.add(`collector:${c.key}`);
      statusQueue.add('bridge');
    }, 250);
    statusTimer.unref();
  };
  fleet.onChange(scheduleAllStatus);

  async function reconcileDesired(): Promise<void> {
    if (!collectorInformer.synced || !podInformer.synced || (nsInformer && !nsInformer.synced)) return;
    const objects = collectorInformer.list().filter((c) => serves(c.metadata?.namespace ?? ''));
    const next = compiler.compile(objects);
    // Watch what the Collectors in effect list; render once every one of those Secrets was read
    // (a Secret that is still loading is not a missing one). Its watch's first list re-queues us.
    collectorSecrets = [...new Set(next.flatMap((c) => (c.input?.secretNames ?? []).map((n) => `${c.namespace}/${n}`)))].sort();
    wantSecrets();
    if (!secrets.settled()) {
      // Not read yet: try again shortly (the watch's first list also re-queues us).
      setTimeout(() => desiredQueue.add('desired'), 1000).unref();
      return;
    }
    compiled = next;
    compiledByKey = new Map(compiled.map((c) => [c.key, c]));
    // Every value the bridge could substitute is scrubbed from what agents report, even before it is pushed.
    fleet.redactor.add(secrets.values());
    desiredState = new DesiredState(compiled.flatMap((c) => (c.input ? [c.input] : [])), configSecrets(secrets), { servePolicy: servePolicy(spec.packages) });
    fleet.setDesiredState(desiredState);
    scheduleAllStatus();
  }

  // ---- status ----------------------------------------------------------------------------
  const elector = opts.leaderElection === false
    ? null
    : new LeaderElector({
        api: k.coordination,
        namespace: ns,
        name: `fleetbridge-${opts.bridgeName}`,
        identity: opts.identity ?? `${hostname()}-${randomBytes(3).toString('hex')}`,
        logger: log.child({ component: 'leader' }),
        onChange: (leader) => {
          if (leader) {
            lastWritten.clear();
            scheduleAllStatus();
          }
        },
      });
  const isLeader = () => (elector ? elector.isLeader : true);
  const events = new EventRecorder(k.core, log.child({ component: 'events' }), { instance: opts.identity ?? hostname() });
  const lastWritten = new Map<string, string>();
  const lastEventState = new Map<string, string>();

  async function writeStatus(key: string): Promise<void> {
    if (!isLeader()) return;
    if (key === 'bridge') return writeBridgeStatus();
    const ckey = key.slice('collector:'.length);
    const [cns, cname] = ckey.split('/') as [string, string];
    const obj = collectorInformer.get(cname, cns);
    const c = compiledByKey.get(ckey);
    if (!obj || !c) return;
    const extra = renderIssues().get(ckey) ?? [];
    const issues = [...new Set([...c.issues, ...extra, ...(c.input && !c.input.invalid ? desiredState.own(c.input).secretIssues : [])])];
    const hash = c.input && !c.input.invalid ? desiredState.ownConfigHash(c.input) : null;
    const fleetCounts = counts().get(ckey) ?? emptyStatus();
    const ownPackages = c.input && !c.input.invalid ? desiredState.ownPackages(c.input) : null;
    const status = buildCollectorStatus({
      generation: c.generation,
      configHash: hash,
      packages: ownPackages && { hash: ownPackages.allHashHex, issues: ownPackages.issues },
      issues,
      lastGoodInEffect: c.lastGoodInEffect,
      counts: fleetCounts,
      previous: obj.status?.conditions,
      now: new Date(),
    });
    const body = JSON.stringify(status);
    if (lastWritten.get(key) === body) return;
    try {
      await k.custom.patchNamespacedCustomObjectStatus(
        { group: API_GROUP, version: API_VERSION, namespace: cns, plural: COLLECTORS, name: cname, body: { status: { ...status, configHash: status.configHash ?? null, packages: status.packages ?? null, resources: status.resources ?? null } } },
        MERGE_PATCH,
      );
      om.statusWrites.inc({ kind: 'Collector', outcome: 'ok' });
      lastWritten.set(key, body);
    } catch (err) {
      if (statusOf(err) === 404) return; // deleted meanwhile
      om.statusWrites.inc({ kind: 'Collector', outcome: 'error' });
      om.apiErrors.inc({ op: 'status' });
      throw new Error(`status write for Collector ${ckey} failed: ${errorText(err)}`);
    }
    // Events: one per distinct problem, aggregated by the recorder.
    const ref = { apiVersion: GROUP_VERSION, kind: 'Collector', namespace: cns, name: cname, uid: obj.metadata?.uid ?? '' };
    const eventState = JSON.stringify([issues, fleetCounts.failing.map((f) => f.message)]);
    if (lastEventState.get(key) !== eventState) {
      lastEventState.set(key, eventState);
      if (issues.length > 0) void events.record(ref, 'Warning', Reason.InvalidConfig, issues.join('; '));
      // One Event per distinct problem, with no agent count in its text, so that the same problem
      // on more agents aggregates into that Event (its count) instead of making new ones.
      const problems = new Map(fleetCounts.failing.map((f) => [`${f.reason}\n${f.message}`, f] as const));
      for (const f of problems.values()) {
        if (f.reason === 'Drifted') void events.record(ref, 'Warning', Reason.Drifted, `Agent ${f.message}`);
        else if (f.reason === 'MissingComponents') void events.record(ref, 'Warning', Reason.MissingComponents, `Config ${hash?.slice(0, 12) ?? ''} is not pushed to agents that lack components it uses: ${f.message}`);
        else if (f.reason === 'PackageInstallFailed') void events.record(ref, 'Warning', Reason.PackageInstallFailed, `Agents failed to install packages ${ownPackages?.allHashHex.slice(0, 12) ?? ''}: ${f.message}`);
        else void events.record(ref, 'Warning', Reason.ApplyFailed, `Agents failed to apply config ${hash?.slice(0, 12) ?? ''}: ${f.message}`);
      }
    }
  }

  const opampPort = opts.opampPort ?? spec.endpoint.port;
  const wsScheme = spec.tls ? 'wss' : 'ws';
  let advertised = opts.advertiseUrl ?? `${wsScheme}://${opts.bridgeName}.${ns}.svc:${opampPort}${spec.endpoint.path}`;
  let serversStarted = false;

  async function writeBridgeStatus(): Promise<void> {
    const obj = bridgeInformer.get(opts.bridgeName, ns);
    if (!obj) return;
    const t = { connected: 0, healthy: 0, unhealthy: 0, applied: 0, failed: 0, unbound: 0, staleCredentials: 0 };
    for (const rec of fleet.records()) {
      if (!rec.connected) continue;
      t.connected++;
      if (rec.health) rec.health.healthy ? t.healthy++ : t.unhealthy++;
      const s = configState(rec);
      if (s === 'applied') t.applied++;
      if (s === 'failed') t.failed++;
      if (rec.identityError) t.unbound++;
      if (fleet.credentialStale(rec)) t.staleCredentials++;
    }
    const synced = informers.every((i) => i.synced);
    // The spec is read at start: report the generation in effect, so tools (kubectl wait, Argo CD)
    // see a newer one as not yet observed, and say what it takes.
    const gen = inEffectGeneration;
    const current = (obj.metadata?.generation as number | undefined) ?? 0;
    const secure = setCondition(obj.status?.conditions, authCondition(), gen, new Date());
    const conditions = setCondition(
      secure,
      !synced
        ? { type: ConditionType.Ready, status: 'False', reason: Reason.NotServing, message: 'Waiting for the Kubernetes caches to sync' }
        : current !== gen
          ? { type: ConditionType.Ready, status: 'True', reason: 'RestartRequired', message: `Serving OpAMP on ${advertised} with generation ${gen} of the spec; generation ${current} takes effect when the bridge restarts (e.g. kubectl rollout restart)` }
          : { type: ConditionType.Ready, status: 'True', reason: Reason.Serving, message: `Serving OpAMP on ${advertised}; ${t.connected} agents connected${t.unbound ? `, ${t.unbound} not bound to a pod` : ''}` },
      gen,
      new Date(),
    );
    const status = { observedGeneration: gen, endpoint: advertised, conditions, agents: t };
    const body = JSON.stringify(status);
    if (lastWritten.get('bridge') === body) return;
    try {
      await k.custom.patchNamespacedCustomObjectStatus({ group: API_GROUP, version: API_VERSION, namespace: ns, plural: BRIDGES, name: opts.bridgeName, body: { status } }, MERGE_PATCH);
      om.statusWrites.inc({ kind: 'OpAMPBridge', outcome: 'ok' });
      lastWritten.set('bridge', body);
    } catch (err) {
      if (statusOf(err) === 404) return;
      om.statusWrites.inc({ kind: 'OpAMPBridge', outcome: 'error' });
      om.apiErrors.inc({ op: 'status' });
      throw new Error(`status write for OpAMPBridge ${ns}/${opts.bridgeName} failed: ${errorText(err)}`);
    }
  }

  /** What AgentsAuthenticated says: how agents are authenticated, and what a problem blocks. */
  function authCondition(): Omit<Condition, 'lastTransitionTime' | 'observedGeneration'> {
    switch (spec.auth.mode) {
      case 'none':
        return { type: 'AgentsAuthenticated', status: 'False', reason: 'AuthenticationDisabled', message: 'spec.auth.mode is none: agents are not authenticated and are bound to the pods they claim' };
      case 'serviceAccountToken':
        return { type: 'AgentsAuthenticated', status: 'True', reason: 'ServiceAccountTokens', message: `Agents must present a pod-bound ServiceAccount token for audience ${spec.auth.audiences.join(', ')}` };
      case 'mtls':
        return { type: 'AgentsAuthenticated', status: 'True', reason: 'ClientCertificates', message: `Agents must present a client certificate signed by the CA in Secret ${clientCaSecret}; it limits them to pods of the namespace and ServiceAccount it names` };
      case 'bearerToken':
        return bearerProblem
          ? { type: 'AgentsAuthenticated', status: 'False', reason: 'TokensUnavailable', message: `Agents are refused: ${bearerProblem}` }
          : { type: 'AgentsAuthenticated', status: 'True', reason: 'BearerTokens', message: `Agents must present a token from Secret ${tokenSecret} (current key ${spec.auth.bearerToken?.currentKey}); they are bound to the pods they claim` };
    }
  }

  // ---- the bridge's own Secrets ---------------------------------------------------------------
  let bearerProblem: string | null = null;
  function loadBearerTokens(): void {
    if (!bearer || !tokenSecret) return;
    const s = secrets.get(ns, spec.auth.bearerToken!.secretName);
    const currentKey = spec.auth.bearerToken!.currentKey;
    bearerProblem = !s ? `Secret ${tokenSecret} not found` : !s.data[currentKey] ? `Secret ${tokenSecret} has no key ${currentKey} (the current token)` : null;
    bearer.set(s?.data ?? {}, currentKey, s ? undefined : bearerProblem ?? undefined);
    if (bearerProblem) log.error({ secret: tokenSecret }, bearerProblem);
  }

  /** The PEMs from kubernetes.io/tls Secrets (and a CA Secret), or a reason they are not usable. */
  function tlsMaterial(certKey: string | null, caKey: string | null): TlsMaterial | string {
    const pick = (key: string) => secrets.get(...(key.split('/') as [string, string]));
    const certs = certKey ? pick(certKey) : undefined;
    if (!certs) return `Secret ${certKey} not found`;
    const cert = certs.data['tls.crt'];
    const key = certs.data['tls.key'];
    if (!cert || !key) return `Secret ${certKey} lacks tls.crt or tls.key`;
    if (!caKey) return { cert, key };
    const ca = pick(caKey)?.data['ca.crt'];
    if (!ca) return `Secret ${caKey} not found or lacks ca.crt`;
    return { cert, key, clientCa: ca };
  }

  /** spec.ownTelemetry with header values from their Secrets (a destination whose Secret is missing is not offered). */
  function ownTelemetry(conn?: AgentConnection): OwnTelemetry {
    const out: OwnTelemetry = {};
    for (const sig of ['metrics', 'traces', 'logs'] as const) {
      const d = spec.ownTelemetry?.[sig];
      if (!d) continue;
      let headers: Record<string, string> = {};
      if (d.headersSecretName) {
        const sec = secrets.get(ns, d.headersSecretName);
        if (!sec) continue;
        headers = { ...sec.data };
      }
      out[sig] = { endpoint: d.endpoint, headers };
    }
    // By default agents send their own metrics to the bridge (admin endpoint, /v1/metrics).
    const bridgeMetrics = bridgeMetricsDestination(spec.ownTelemetry, conn, adminEndpoint, ownMetricsCredentials);
    if (bridgeMetrics) out.metrics = bridgeMetrics;
    return out;
  }

  function onSecretChange(key: string): void {
    // Any value the bridge holds (tokens and telemetry headers included) is scrubbed from what agents report.
    fleet.redactor.add(secrets.values());
    if (telemetrySecrets.includes(key) && serversStarted) fleet.reofferConnectionSettings();
    if (key === tokenSecret) {
      loadBearerTokens();
      if (serversStarted) {
        // Revoked tokens lose their connections; agents on an old, still accepted token are
        // offered the current one, and status counts who has not moved yet.
        fleet.closeConnections((c) => !bearer!.accepts(c.authorization), 'credential revoked');
        fleet.reofferConnectionSettings();
      }
      statusQueue.add('bridge');
    }
    if (key === tlsSecret || key === clientCaSecret) {
      // A new client CA applies to new handshakes; agents verified by the old one must verify again.
      if (reloadTls('opamp')) {
        if (key === clientCaSecret) fleet.closeConnections((c) => c.verified?.method === 'mtls', 'client CA changed');
        // Offers carry the serving CA (ca.crt) when the Secret has one.
        else fleet.reofferConnectionSettings();
      }
    }
    if (key === adminTlsSecret) reloadTls('admin');
    if (collectorSecrets.includes(key)) desiredQueue.add('desired');
  }

  function reloadTls(which: 'opamp' | 'admin'): boolean {
    if (!serversStarted) return false;
    const m = which === 'opamp' ? tlsMaterial(tlsSecret, clientCaSecret) : tlsMaterial(adminTlsSecret, null);
    if (typeof m === 'string') {
      log.error({ endpoint: which, reason: m }, 'Cannot reload TLS certificates; serving the previous ones');
      return false;
    }
    try {
      if (which === 'opamp') opamp.setTls(m);
      else admin.setTls(m);
      log.info({ endpoint: which }, 'Reloaded TLS certificates');
      return true;
    } catch (err) {
      log.error({ endpoint: which, err: errorText(err) }, 'Cannot reload TLS certificates; serving the previous ones');
      return false;
    }
  }

  /** Waits until the bridge's own Secrets were read, so TLS and tokens are in place before serving. */
  async function bridgeSecretsReady(): Promise<void> {
    if (bridgeSecrets.length === 0) return;
    wantSecrets();
    // Up to 15 s: a Secret that cannot be read by then (missing, or RBAC) is reported as missing.
    while (!secrets.settled(15_000)) await new Promise((r) => setTimeout(r, 100));
    loadBearerTokens();
    for (const [which, m] of [['opamp', tlsSecret ? tlsMaterial(tlsSecret, clientCaSecret) : null], ['admin', adminTlsSecret ? tlsMaterial(adminTlsSecret, null) : null]] as const) {
      // Without its certificate an endpoint cannot serve TLS, and must never fall back to plain text.
      if (typeof m === 'string') throw new Error(`cannot serve the ${which} endpoint with TLS: ${m}`);
    }
  }

  async function readBridge(): Promise<OpAMPBridge | null> {
    const deadline = Date.now() + 30_000;
    for (let delay = 250; ; delay = Math.min(delay * 2, 4000)) {
      try {
        return (await k.custom.getNamespacedCustomObject({ group: API_GROUP, version: API_VERSION, namespace: ns, plural: BRIDGES, name: opts.bridgeName })) as OpAMPBridge;
      } catch (err) {
        if (statusOf(err) === 404) {
          log.warn({ bridge: `${ns}/${opts.bridgeName}` }, 'OpAMPBridge not found; serving with defaults');
          return null;
        }
        if (Date.now() > deadline) {
          log.error({ err: errorText(err) }, 'Cannot read the OpAMPBridge; serving with defaults');
          return null;
        }
        log.warn({ err: errorText(err), retryInMs: delay }, 'Cannot read the OpAMPBridge yet');
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  // ---- servers -----------------------------------------------------------------------------
  if (spec.auth.mode === 'none') {
    log.warn({ bridge: `${ns}/${opts.bridgeName}` }, 'Agent authentication is off (spec.auth.mode: none): any agent that reaches the endpoint is served by the pod it claims');
  }
  try {
    await bridgeSecretsReady();
  } catch (err) {
    await secrets.stop();
    throw err;
  }
  const authenticate: ((req: import('node:http').IncomingMessage) => Promise<AuthResult>) | undefined =
    spec.auth.mode === 'serviceAccountToken'
      ? serviceAccountTokenAuth({ api: k.authn, audiences: spec.auth.audiences, logger: log.child({ component: 'auth' }) })
      : spec.auth.mode === 'bearerToken'
        ? bearer!.authenticate
        : spec.auth.mode === 'mtls'
          ? mtlsAuth({ requireNamespace: true })
          : undefined;
  const opampTls = tlsSecret ? (tlsMaterial(tlsSecret, clientCaSecret) as TlsMaterial) : undefined;
  const adminTls = adminTlsSecret ? (tlsMaterial(adminTlsSecret, null) as TlsMaterial) : undefined;
  const opamp = new OpampServer({
    handler: fleet,
    ...(opampTls ? { tls: opampTls } : {}),
    authenticate,
    logger: log.child({ component: 'opamp' }),
    onProtocolError: (transport, code) => metrics.protocolErrors.inc({ transport, code }),
    path: spec.endpoint.path,
    transports: spec.transports,
    maxMessageBytes: spec.limits.maxMessageBytes,
    maxMessagesPerSecond: spec.limits.maxMessagesPerSecond,
    maxBytesPerSecond: spec.limits.maxBytesPerSecond,
    maxConnectionsPerSource: spec.limits.maxConnectionsPerSource,
    maxConnections: spec.limits.maxConnections,
    firstMessageTimeoutMs: spec.limits.firstMessageTimeoutSeconds * 1000,
    maxPendingConnectionsPerSource: spec.limits.maxPendingConnectionsPerSource,
    pingIntervalMs: opts.pingIntervalMs ?? 30_000,
    files: packageFilesRoute({ spec: spec.packages, desired: () => desiredState, downloads: metrics.packageDownloads, logger: log }),
  });
  // Who may use the admin API and /metrics (docs/adr/0008-admin-access.md).
  const adminAccess = opts.adminAuth === 'none' ? OPEN_ACCESS : kubernetesAdminAccessFrom(opts.kc, k.authn, { namespace: ns, bridgeName: opts.bridgeName, logger: log.child({ component: 'admin-auth' }) });
  if (spec.admin?.tokenSecretName || spec.adminTLS?.clientCASecretName) log.warn({ bridge: `${ns}/${opts.bridgeName}` }, 'spec.admin.tokenSecretName and spec.adminTLS.clientCASecretName apply to standalone mode; the operator authorizes admin requests with TokenReview and SubjectAccessReview');
  const admin = new AdminServer({
    ...(adminTls ? { tls: adminTls } : {}),
    otlpMetrics: otlpMetricsHandler({ sink: fleetSink(fleet, ownMetricsCredentials), credential: ownMetricsToken, ...(opts.ownMetricsMaxSkewMs !== undefined ? { maxSkewMs: opts.ownMetricsMaxSkewMs } : {}), counters: receiverCounters(metrics), logger: log.child({ component: 'otlp' }) }),
    access: adminAccess,
    metricsAuth: opts.metricsAuth ?? true,
    registry: metrics.registry,
    logger: log.child({ component: 'api' }),
    source: {
      ready: () => informers.every((i) => i.synced),
      agents: () => fleet.views(),
      agent: (uid) => fleet.viewOf(uid),
      collectors: () => {
        const extra = renderIssues();
        const views: CollectorView[] = compiled.map((c) => {
          const issues = [...new Set([...c.issues, ...(extra.get(c.key) ?? []), ...(c.input && !c.input.invalid ? desiredState.own(c.input).secretIssues : [])])];
          return {
            namespace: c.namespace,
            name: c.name,
            source: null,
            generation: c.generation,
            priority: c.input?.priority ?? 0,
            valid: issues.length === 0,
            issues,
            configHash: c.input && !c.input.invalid ? desiredState.ownConfigHash(c.input) : null,
            packages: c.input && !c.input.invalid ? packagesSummary(desiredState.ownPackages(c.input)) : null,
            status: counts().get(c.key) ?? emptyStatus(),
          };
        });
        return { collectors: views, invalidFiles: [] };
      },
      beforeScrape: () => {
        fleet.updateGauges();
        om.queueDepth.set({ queue: 'desired' }, desiredQueue.depth);
        om.queueDepth.set({ queue: 'status' }, statusQueue.depth);
        om.leader.set(isLeader() ? 1 : 0);
      },
    },
  });

  const host = opts.host ?? '0.0.0.0';
  const opampSetting = opts.opampPort !== undefined ? '--opamp-port' : `spec.endpoint.port of OpAMPBridge ${ns}/${opts.bridgeName} (or --opamp-port)`;
  const oa = await listenOrExplain(() => opamp.listen(opampPort, host), { name: 'OpAMP', host, port: opampPort, change: opampSetting });
  if (opts.advertiseUrl === undefined && opampPort === 0) advertised = `${wsScheme}://${opts.bridgeName}.${ns}.svc:${oa.port}${spec.endpoint.path}`;
  const httpPort = opts.httpPort ?? 8080;
  const adminHost = adminListenHost(host, adminAccess, log);
  const aa = await listenOrExplain(() => admin.listen(httpPort, adminHost), { name: 'admin API', host: adminHost, port: httpPort, change: '--http-port' }).catch(async (err: unknown) => {
    await keepingAlive(opamp.close());
    throw err;
  });
  adminEndpoint = { port: aa.port, tls: !!adminTls, loopbackOnly: !adminAccess.enforced };
  serversStarted = true;
  for (const i of informers) i.start();
  elector?.start();
  const sweeper = setInterval(() => fleet.sweep(), opts.sweepIntervalMs ?? sweepEvery(opts.heartbeatIntervalSeconds ?? spec.heartbeatIntervalSeconds));
  sweeper.unref();
  // Periodic full reconcile, in case an event was missed (controller-runtime's resync).
  const resync = setInterval(() => {
    desiredQueue.add('desired');
    scheduleAllStatus();
  }, 60_000);
  resync.unref();

  const shown = (h: string) => (h === '0.0.0.0' || h === '::' ? '127.0.0.1' : h);
  log.info({ bridge: `${ns}/${opts.bridgeName}`, opamp: `${shown(oa.host)}:${oa.port}`, api: `${shown(aa.host)}:${aa.port}`, adminAccess: adminAccess.mode, clusterWide }, 'Fleetbridge operator started');
  return {
    opampUrl: { websocket: `${wsScheme}://${shown(oa.host)}:${oa.port}${spec.endpoint.path}`, http: `http${spec.tls ? 's' : ''}://${shown(oa.host)}:${oa.port}${spec.endpoint.path}` },
    apiUrl: `http${adminTls ? 's' : ''}://${shown(aa.host)}:${aa.port}`,
    fleet,
    isLeader,
    async settled() {
      await desiredQueue.idle();
      await statusQueue.idle();
    },
    async stop() {
      clearInterval(sweeper);
      clearInterval(resync);
      if (statusTimer) clearTimeout(statusTimer);
      await elector?.stop();
      desiredQueue.shutdown();
      statusQueue.shutdown();
      await Promise.all([...informers.map((i) => i.stop()), secrets.stop()]);
      await Promise.all([opamp.close(), admin.close()]);
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
