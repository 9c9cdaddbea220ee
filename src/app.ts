/**
 * Builds the whole bridge from its dependencies, without a process: tests use it directly and
 * src/main.ts only parses flags and calls it.
 */
import type { Logger } from 'pino';
import { AdminServer } from './api/server.js';
import type { CollectorView } from './api/views.js';
import { aggregateCollectorStatus, emptyStatus, mergedConfigIssues } from './controller/collector-status.js';
import { randomBytes } from 'node:crypto';
import { Fleet, sweepEvery, type OwnTelemetry } from './fleet/fleet.js';
import type { AgentConnection } from './fleet/agent.js';
import { bridgeMetricsDestination, fleetSink, receiverCounters } from './otlp/bridge.js';
import { otlpMetricsHandler } from './otlp/receiver.js';
import { OwnMetricsCredentials, ownMetricsToken } from './otlp/credentials.js';
import { adminListenHost, readTokenFile, standaloneAdminAccess } from './api/access.js';
import { readFile } from 'node:fs/promises';
import { BearerTokens } from './opamp/bearer-auth.js';
import { mtlsAuth } from './opamp/mtls-auth.js';
import { OpampServer } from './opamp/server.js';
import type { TlsMaterial } from './opamp/tls.js';
import { DesiredState } from './render/index.js';
import { hmacVersion, type SecretSource, type SecretValue } from './render/secrets.js';
import { OpAMPBridgeSpec } from './schema/v1alpha1/index.js';
import { ManifestDirectory, type ManifestSnapshot } from './standalone/manifests.js';
import { bridgeReporter, listenHost, startupRefusal, tokenSources } from './standalone/bridge-settings.js';
import { standaloneIdentity } from './standalone/identity.js';
import { createMetrics, type Metrics } from './telemetry/metrics.js';
import { packagesSummary, servePolicy } from './packages/desired.js';
import { packageFilesRoute } from './packages/files.js';
import { keepingAlive, listenOrExplain } from './listen.js';

export interface StandaloneOptions {
  manifestsDir: string;
  logger: Logger;
  /** OpAMP port; overrides the OpAMPBridge manifest. 0 picks a free port. Default: manifest, else 4320. */
  opampPort?: number;
  /** Admin API port. 0 picks a free port. Default 8080. */
  httpPort?: number;
  /** A file of admin tokens (one per line) for the admin API and /metrics (besides spec.admin.tokenSecretName). */
  adminTokenFile?: string;
  /** false: /metrics needs no admin credential (the API still does). Default true. */
  metricsAuth?: boolean;
  /** How far an own-metrics data point's time may be from now, ms. Default 5 minutes. */
  ownMetricsMaxSkewMs?: number;
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
  /** How long the manifest watcher waits for more changes before applying them, ms. Default 100. */
  watchDebounceMs?: number;
  /** How often the manifest folder is rescanned in case a change was not reported, ms. Default 2,000. */
  watchRescanMs?: number;
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
    ...(opts.watchDebounceMs !== undefined ? { debounceMs: opts.watchDebounceMs } : {}),
    ...(opts.watchRescanMs !== undefined ? { rescanMs: opts.watchRescanMs } : {}),
    onChange: (snap) => apply(snap),
  });
  const initial = await manifests.load();
  // Fail closed: a present but invalid OpAMPBridge (or a file that may be it) stops the start.
  const refusal = startupRefusal(initial, opts.manifestsDir);
  if (refusal) {
    await manifests.close();
    throw new Error(refusal);
  }
  // Without an OpAMPBridge manifest nothing asks for authentication: serve without (and say so).
  const bridgeSpec = initial.bridge?.resource.spec ?? OpAMPBridgeSpec.parse({ auth: { mode: 'none' } });
  const bridgeNamespace = initial.bridge?.resource.metadata.namespace ?? 'default';
  const heartbeat = opts.heartbeatIntervalSeconds ?? bridgeSpec.heartbeatIntervalSeconds;
  const maxMessageBytes = opts.maxMessageBytes ?? bridgeSpec.limits.maxMessageBytes;
  const auth = bridgeSpec.auth;
  if (auth.mode === 'serviceAccountToken') {
    await manifests.close();
    throw new Error(
      `${initial.bridge!.source}: spec.auth.mode serviceAccountToken (the default) needs Kubernetes (a TokenReview); ` +
        'in standalone mode set spec.auth.mode to bearerToken (tokens from a Secret manifest), mtls, or none',
    );
  }
  if (auth.mode === 'none') log.warn({ bridge: initial.bridge?.source ?? null }, 'Agent authentication is off (spec.auth.mode: none): any agent that reaches the endpoint is served by the attributes it reports');
  const reportBridge = bridgeReporter(log, { authenticated: auth.mode !== 'none', bridgeNamespace });

  // Secrets from the folder. Versions are HMACs under a key of this process: they change with the
  // values and reveal nothing of them (a restart re-pushes configs that use secrets, once).
  const versionKey = randomBytes(32);
  let secretMap = new Map<string, SecretValue>();
  const secrets: SecretSource = { get: (ns, name) => secretMap.get(`${ns}/${name}`) };
  const bridgeSecret = (name: string | undefined) => (name ? secretMap.get(`${bridgeNamespace}/${name}`) : undefined);
  const bearer = auth.mode === 'bearerToken' ? new BearerTokens() : null;
  const loadBearerTokens = () => {
    if (!bearer) return;
    // Each token grants the namespace of the Secret it is declared in (standalone/identity.ts).
    const problems = bearer.setSources(tokenSources(auth, bridgeNamespace, (ns, name) => secretMap.get(`${ns}/${name}`), opts.manifestsDir));
    for (const problem of problems) log.warn({ problem }, 'Bearer tokens: a token Secret is not usable');
  };
  /** PEMs for an endpoint from kubernetes.io/tls-style Secret manifests, or why not. */
  const tlsMaterial = (certName: string | undefined, caName: string | undefined): TlsMaterial | string | undefined => {
    if (!certName) return undefined;
    const c = bridgeSecret(certName);
    if (!c?.data['tls.crt'] || !c.data['tls.key']) return `Secret ${bridgeNamespace}/${certName} with tls.crt and tls.key not found in ${opts.manifestsDir}`;
    if (!caName) return { cert: c.data['tls.crt'], key: c.data['tls.key'] };
    const ca = bridgeSecret(caName)?.data['ca.crt'];
    if (!ca) return `Secret ${bridgeNamespace}/${caName} with ca.crt not found in ${opts.manifestsDir}`;
    return { cert: c.data['tls.crt'], key: c.data['tls.key'], clientCa: ca };
  };
  /** The admin endpoint once it listens: agents may be offered its /v1/metrics (src/otlp). */
  let adminEndpoint: { port: number; tls: boolean; loopbackOnly: boolean } | null = null;
  /** Agents send their own metrics with a credential minted for their uid and identity (src/otlp/credentials.ts). */
  const ownMetricsCredentials = new OwnMetricsCredentials();
  const ownTelemetry = (conn?: AgentConnection): OwnTelemetry => {
    const out: OwnTelemetry = {};
    for (const sig of ['metrics', 'traces', 'logs'] as const) {
      const d = bridgeSpec.ownTelemetry?.[sig];
      if (!d) continue;
      const h = d.headersSecretName ? bridgeSecret(d.headersSecretName) : undefined;
      if (d.headersSecretName && !h) continue;
      out[sig] = { endpoint: d.endpoint, headers: { ...(h?.data ?? {}) } };
    }
    const bridgeMetrics = bridgeMetricsDestination(bridgeSpec.ownTelemetry, conn, adminEndpoint, ownMetricsCredentials);
    if (bridgeMetrics) out.metrics = bridgeMetrics;
    return out;
  };

  const fleet = new Fleet({
    ...(bearer ? { credentials: bearer } : {}),
    ownTelemetry,
    serverCa: () => (bridgeSpec.tls ? bridgeSecret(bridgeSpec.tls.secretName)?.data['ca.crt'] : undefined),
    logger: log.child({ component: 'fleet' }),
    metrics,
    heartbeatIntervalSeconds: heartbeat,
    maxAgents: bridgeSpec.limits.maxAgents,
    bounds: bridgeSpec.limits.agentReports ?? {},
    ...(bridgeSpec.limits.newAgentsPerSource ? { newAgentsPerSourceBurst: bridgeSpec.limits.newAgentsPerSource.burst, newAgentsPerSourcePerSecond: bridgeSpec.limits.newAgentsPerSource.perSecond } : {}),
    defaultNamespace: bridgeNamespace,
    identity: standaloneIdentity(bridgeNamespace),
  });

  let desiredState = new DesiredState([]);
  let started = false;
  // The OpAMPBridge (auth, TLS, ports, limits) is read once; an edit is told, not silently ignored.
  const bridgeText = (snap: ManifestSnapshot) => JSON.stringify(snap.bridge?.resource.spec ?? null);
  const startedBridge = bridgeText(initial);
  let lastBridge = startedBridge;
  function apply(snap: ManifestSnapshot): void {
    metrics.manifestErrors.set(snap.invalidFiles.length);
    reportBridge(snap);
    if (bridgeText(snap) !== lastBridge) {
      lastBridge = bridgeText(snap);
      if (lastBridge !== startedBridge) {
        log.warn({ bridge: snap.bridge?.source ?? null }, 'The OpAMPBridge manifest changed; the bridge keeps serving with the one it started with (auth, TLS, endpoint, limits): restart it to apply the change');
      }
    }
    const before = secretMap;
    secretMap = new Map(snap.secrets.map((s) => [`${s.namespace}/${s.name}`, { data: s.data, version: hmacVersion(versionKey, s.data) }]));
    // Every value in the folder is scrubbed from what agents report, before anything is pushed.
    for (const s of snap.secrets) fleet.redactor.add(Object.values(s.data));
    desiredState = new DesiredState(snap.collectors.map((c) => c.input), secrets, { servePolicy: servePolicy(bridgeSpec.packages) });
    fleet.setDesiredState(desiredState);
    if (!started) return;
    const changed = (name: string | undefined) => !!name && before.get(`${bridgeNamespace}/${name}`)?.version !== secretMap.get(`${bridgeNamespace}/${name}`)?.version;
    const tokensChanged = bearer && tokenSources(auth, bridgeNamespace, () => undefined, '').some((src) => before.get(`${src.namespace}/${auth.bearerToken!.secretName}`)?.version !== secretMap.get(`${src.namespace}/${auth.bearerToken!.secretName}`)?.version);
    if (bearer && tokensChanged) {
      loadBearerTokens();
      // A removed token, or one that now grants another namespace than the connection was verified for.
      fleet.closeConnections((c) => !bearer.accepts(c.authorization) || bearer.namespaceOf(c.authorization) !== c.verified?.namespace, 'credential revoked');
      fleet.reofferConnectionSettings();
    } else if ((['metrics', 'traces', 'logs'] as const).some((sig) => changed(bridgeSpec.ownTelemetry?.[sig]?.headersSecretName))) {
      fleet.reofferConnectionSettings();
    }
    for (const [which, certName, caName] of [['opamp', bridgeSpec.tls?.secretName, bridgeSpec.tls?.clientCASecretName], ['admin', bridgeSpec.adminTLS?.secretName, bridgeSpec.adminTLS?.clientCASecretName]] as const) {
      if (!changed(certName) && !changed(caName)) continue;
      const m = tlsMaterial(certName, caName);
      try {
        if (typeof m !== 'object') throw new Error(m ?? 'no certificate');
        (which === 'opamp' ? opamp : admin).setTls(m);
        log.info({ endpoint: which }, 'Reloaded TLS certificates');
        if (which === 'opamp' && changed(caName)) fleet.closeConnections((c) => c.verified?.method === 'mtls', 'client CA changed');
        if (which === 'opamp') fleet.reofferConnectionSettings(); // offers carry the serving CA (ca.crt)
      } catch (err) {
        log.error({ endpoint: which, err: (err as Error).message }, 'Cannot reload TLS certificates; serving the previous ones');
      }
    }
  }
  apply(initial);
  loadBearerTokens();
  // Without its certificate an endpoint cannot serve TLS, and must never fall back to plain text.
  const tlsOrFail = async (which: string, m: TlsMaterial | string | undefined): Promise<TlsMaterial | undefined> => {
    if (typeof m !== 'string') return m;
    await manifests.close();
    throw new Error(`cannot serve the ${which} endpoint with TLS: ${m}`);
  };
  const opampTls = await tlsOrFail('OpAMP', tlsMaterial(bridgeSpec.tls?.secretName, bridgeSpec.tls?.clientCASecretName));
  const adminTls = await tlsOrFail('admin', tlsMaterial(bridgeSpec.adminTLS?.secretName, bridgeSpec.adminTLS?.clientCASecretName));
  // Who may use the admin API and /metrics: admin tokens (a file, a Secret manifest) or client certificates; none: loopback only.
  let adminFileTokens: string[] = [];
  if (opts.adminTokenFile) {
    try {
      adminFileTokens = readTokenFile(await readFile(opts.adminTokenFile, 'utf8'), opts.adminTokenFile);
    } catch (err) {
      await manifests.close();
      throw new Error(`--admin-token-file: ${(err as Error).message}`);
    }
  }
  const adminTokenSecret = bridgeSpec.admin?.tokenSecretName;
  if (adminTokenSecret && !bridgeSecret(adminTokenSecret)) log.warn({ secret: `${bridgeNamespace}/${adminTokenSecret}` }, 'The admin token Secret (spec.admin.tokenSecretName) is not in the manifest folder: admin requests with a token are refused until it is');
  const adminAccess = standaloneAdminAccess({
    fileTokens: adminFileTokens,
    ...(adminTokenSecret ? { secretTokens: () => bridgeSecret(adminTokenSecret)?.data } : {}),
    ...(adminTls?.clientCa ? { clientCa: () => bridgeSecret(bridgeSpec.adminTLS!.clientCASecretName)?.data['ca.crt'] } : {}),
  });

  const opamp = new OpampServer({
    handler: fleet,
    ...(opampTls ? { tls: opampTls } : {}),
    authenticate: bearer ? bearer.authenticate : auth.mode === 'mtls' ? mtlsAuth({ requireNamespace: false }) : undefined,
    logger: log.child({ component: 'opamp' }),
    onProtocolError: (transport, code) => metrics.protocolErrors.inc({ transport, code }),
    path: bridgeSpec.endpoint.path,
    transports: bridgeSpec.transports,
    maxMessageBytes,
    maxMessagesPerSecond: opts.maxMessagesPerSecond ?? bridgeSpec.limits.maxMessagesPerSecond,
    maxBytesPerSecond: bridgeSpec.limits.maxBytesPerSecond,
    maxConnectionsPerSource: opts.maxConnectionsPerSource ?? bridgeSpec.limits.maxConnectionsPerSource,
    maxConnections: bridgeSpec.limits.maxConnections,
    firstMessageTimeoutMs: bridgeSpec.limits.firstMessageTimeoutSeconds * 1000,
    maxPendingConnectionsPerSource: bridgeSpec.limits.maxPendingConnectionsPerSource,
    pingIntervalMs: opts.pingIntervalMs ?? 30_000,
    files: packageFilesRoute({ spec: bridgeSpec.packages, desired: () => desiredState, downloads: metrics.packageDownloads, logger: log }),
  });
  const admin = new AdminServer({
    ...(adminTls ? { tls: adminTls } : {}),
    otlpMetrics: otlpMetricsHandler({ sink: fleetSink(fleet, ownMetricsCredentials), credential: ownMetricsToken, ...(opts.ownMetricsMaxSkewMs !== undefined ? { maxSkewMs: opts.ownMetricsMaxSkewMs } : {}), counters: receiverCounters(metrics), logger: log.child({ component: 'otlp' }) }),
    access: adminAccess,
    metricsAuth: opts.metricsAuth ?? true,
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
            packages: packagesSummary(desiredState.ownPackages(c.input)),
            status: counts.get(key) ?? emptyStatus(),
          };
        });
        return { collectors, invalidFiles: snap.invalidFiles };
      },
      beforeScrape: () => fleet.updateGauges(),
    },
  });

  let ready = false;
  const host = listenHost(opts.host, initial, opts.manifestsDir, log);
  const opampPort = opts.opampPort ?? bridgeSpec.endpoint.port;
  const opampSetting = opts.opampPort !== undefined || !initial.bridge ? '--opamp-port' : `--opamp-port or spec.endpoint.port of the OpAMPBridge in ${initial.bridge.source}`;
  const oa = await listenOrExplain(() => opamp.listen(opampPort, host), { name: 'OpAMP', host, port: opampPort, change: opampSetting });
  let aa;
  try {
    const httpPort = opts.httpPort ?? 8080;
    const adminHost = adminListenHost(host, adminAccess, log);
    aa = await listenOrExplain(() => admin.listen(httpPort, adminHost), { name: 'admin API', host: adminHost, port: httpPort, change: '--http-port' });
  } catch (err) {
    await keepingAlive(opamp.close());
    throw err;
  }
  adminEndpoint = { port: aa.port, tls: !!adminTls, loopbackOnly: !adminAccess.enforced };
  manifests.watch();
  started = true;
  const sweeper = setInterval(() => fleet.sweep(), opts.sweepIntervalMs ?? sweepEvery(heartbeat));
  sweeper.unref();
  ready = true;

  const shown = (h: string) => (h === '0.0.0.0' || h === '::' ? '127.0.0.1' : h.includes(':') ? `[${h}]` : h);
  const running: RunningBridge = {
    opampUrl: {
      websocket: `ws${opampTls ? 's' : ''}://${shown(oa.host)}:${oa.port}${bridgeSpec.endpoint.path}`,
      http: `http${opampTls ? 's' : ''}://${shown(oa.host)}:${oa.port}${bridgeSpec.endpoint.path}`,
    },
    apiUrl: `http${adminTls ? 's' : ''}://${shown(aa.host)}:${aa.port}`,
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
      adminAccess: adminAccess.mode,
      manifests: opts.manifestsDir,
      collectors: initial.collectors.length,
      invalidFiles: initial.invalidFiles.length,
    },
    'Fleetbridge standalone started',
  );
  return running;
}
