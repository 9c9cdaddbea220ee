/**
 * Standalone mode: the bridge core (core.ts) fed by a folder of manifests. The folder is the
 * desired-state source (Collectors), the secret source (Secret manifests) and the settings source
 * (the OpAMPBridge, applied live). src/main.ts parses flags and calls startStandalone.
 */
import type { Logger } from 'pino';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { readTokenFile, standaloneAdminAccess } from '../api/access.js';
import type { CollectorEntry } from '../controller/collector-views.js';
import type { Fleet } from '../fleet/fleet.js';
import { mtlsAuth } from '../opamp/mtls-auth.js';
import { hmacVersion, type SecretValue } from '../render/secrets.js';
import { OpAMPBridgeSpec } from '../schema/v1alpha1/index.js';
import { ManifestDirectory, type ManifestSnapshot } from '../standalone/manifests.js';
import { bridgeReporter, listenHost, startupRefusal, tokenSources } from '../standalone/bridge-settings.js';
import { standaloneIdentity } from '../standalone/identity.js';
import { createMetrics, type Metrics } from '../telemetry/metrics.js';
import { BridgeCore, type BridgeOverrides } from './core.js';

export interface StandaloneOptions extends BridgeOverrides {
  manifestsDir: string;
  logger: Logger;
  /** OpAMP port; overrides the OpAMPBridge manifest. 0 picks a free port. Default: manifest, else 4320. */
  opampPort?: number;
  /** Admin API port. 0 picks a free port. Default 8080. */
  httpPort?: number;
  /** A file of admin tokens (one per line) for the admin API and /metrics (besides spec.admin.tokenSecretName). */
  adminTokenFile?: string;
  /** Address both servers bind. Default 0.0.0.0. */
  host?: string;
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

/** Builds the standalone bridge; nothing listens until `listen()`. */
export async function buildStandalone(opts: StandaloneOptions): Promise<{ core: BridgeCore; manifests: ManifestDirectory; listen(): Promise<RunningBridge> }> {
  const log = opts.logger;
  const metrics = opts.metrics ?? createMetrics();
  const dir = opts.manifestsDir;
  let core: BridgeCore | null = null;
  const manifests = new ManifestDirectory({
    dir,
    logger: log.child({ component: 'manifests' }),
    ...(opts.watchDebounceMs !== undefined ? { debounceMs: opts.watchDebounceMs } : {}),
    ...(opts.watchRescanMs !== undefined ? { rescanMs: opts.watchRescanMs } : {}),
    onChange: (snap) => apply(snap),
  });
  const fail = async (message: string): Promise<never> => {
    await manifests.close();
    throw new Error(message);
  };
  const initial = await manifests.load();
  // Fail closed: a present but invalid OpAMPBridge (or a file that may be it) stops the start.
  const refusal = startupRefusal(initial, dir);
  if (refusal) return fail(refusal);
  // Without an OpAMPBridge manifest nothing asks for authentication: serve without (and say so).
  const noBridge = OpAMPBridgeSpec.parse({ auth: { mode: 'none' } });
  const namespace = initial.bridge?.resource.metadata.namespace ?? 'default';
  const serviceAccountRefusal = (source: string) =>
    `${source}: spec.auth.mode serviceAccountToken (the default) needs Kubernetes (a TokenReview); ` +
    'in standalone mode set spec.auth.mode to bearerToken (tokens from a Secret manifest), mtls, or none';
  if (initial.bridge?.resource.spec.auth.mode === 'serviceAccountToken') return fail(serviceAccountRefusal(initial.bridge.source));
  const spec = initial.bridge?.resource.spec ?? noBridge;
  if (spec.auth.mode === 'none') log.warn({ bridge: initial.bridge?.source ?? null }, 'Agent authentication is off (spec.auth.mode: none): any agent that reaches the endpoint is served by the attributes it reports');

  // Secrets from the folder. Versions are HMACs under a key of this process: they change with the
  // values and reveal nothing of them (a restart re-pushes configs that use secrets, once).
  const versionKey = randomBytes(32);
  let secretMap = new Map<string, SecretValue>();
  const secrets = { get: (ns: string, name: string) => secretMap.get(`${ns}/${name}`) };
  let entries: CollectorEntry[] = [];

  // Who may use the admin API and /metrics: admin tokens (a file, a Secret manifest) or client certificates; none: loopback only.
  let fileTokens: string[] = [];
  if (opts.adminTokenFile) {
    try {
      fileTokens = readTokenFile(await readFile(opts.adminTokenFile, 'utf8'), opts.adminTokenFile);
    } catch (err) {
      return fail(`--admin-token-file: ${(err as Error).message}`);
    }
  }
  const current = () => core?.spec ?? spec;
  const tokenSecret = spec.admin?.tokenSecretName;
  const adminAccess = standaloneAdminAccess({
    fileTokens,
    ...(tokenSecret ? { secretTokens: () => secrets.get(namespace, current().admin?.tokenSecretName ?? tokenSecret)?.data } : {}),
    ...(spec.adminTLS?.clientCASecretName ? { clientCa: () => secrets.get(namespace, current().adminTLS?.clientCASecretName ?? '')?.data['ca.crt'] } : {}),
  });
  const reportBridge = bridgeReporter(log, { authenticated: () => current().auth.mode !== 'none', bridgeNamespace: namespace });

  let lastBridge = JSON.stringify(initial.bridge?.resource.spec ?? null);
  function apply(snap: ManifestSnapshot): void {
    metrics.manifestErrors.set(snap.invalidFiles.length);
    reportBridge(snap);
    const before = secretMap;
    secretMap = new Map(snap.secrets.map((s) => [`${s.namespace}/${s.name}`, { data: s.data, version: hmacVersion(versionKey, s.data) }]));
    entries = snap.collectors.map((c) => ({ key: `${c.input.namespace}/${c.input.name}`, namespace: c.input.namespace, name: c.input.name, source: c.source, generation: c.input.generation, input: c.input, issues: [], lastGoodInEffect: false }));
    if (!core) return;
    // Every value in the folder is scrubbed from what agents report, before anything is pushed.
    for (const s of snap.secrets) core.scrub(Object.values(s.data));
    applyBridge(snap);
    core.setDesired(snap.collectors.map((c) => c.input));
    core.secretsChanged((ns, name) => before.get(`${ns}/${name}`)?.version !== secretMap.get(`${ns}/${name}`)?.version);
  }

  /** The OpAMPBridge manifest, applied live; an invalid one was reported and is not applied. */
  function applyBridge(snap: ManifestSnapshot): void {
    const text = JSON.stringify(snap.bridge?.resource.spec ?? null);
    if (text === lastBridge || snap.bridgeProblems.length > 0) return;
    lastBridge = text;
    if (!snap.bridge) {
      log.warn({}, 'The OpAMPBridge manifest changed; it was removed: the bridge keeps serving with its last settings (started without one, it would serve loopback only, without authentication)');
      return;
    }
    const next = snap.bridge.resource.spec;
    if (next.auth.mode === 'serviceAccountToken') {
      log.error({ bridge: snap.bridge.source }, `${serviceAccountRefusal(snap.bridge.source)}; the bridge keeps its last settings`);
      return;
    }
    // --opamp-port wins over spec.endpoint.port: a port edit changes nothing then.
    const restart = core!.applySettings(next).filter((f) => !(f === 'endpoint.port' && opts.opampPort !== undefined));
    if (restart.length > 0) log.warn({ bridge: snap.bridge.source, fields: restart }, `The OpAMPBridge manifest changed; applied except ${restart.join(', ')}, which need a new listening socket: restart it to apply the change`);
  }

  apply(initial);
  core = BridgeCore.build({
    logger: log,
    metrics,
    spec,
    namespace,
    identity: standaloneIdentity(namespace),
    secrets,
    secretsWhere: ` in ${dir}`,
    // Each token grants the namespace of the Secret it is declared in (standalone/identity.ts).
    tokenSources: (s) => tokenSources(s.auth, namespace, secrets.get, dir),
    verifier: (s) => (s.auth.mode === 'mtls' ? mtlsAuth({ requireNamespace: false }) : undefined),
    adminAccess,
    adminClientCa: true,
    ready: () => true,
    collectors: () => ({ entries, invalidFiles: manifests.snapshot.invalidFiles }),
    overrides: opts,
  });
  for (const s of initial.secrets) core.scrub(Object.values(s.data));
  core.setDesired(initial.collectors.map((c) => c.input));
  if (tokenSecret && !secrets.get(namespace, tokenSecret)) log.warn({ secret: `${namespace}/${tokenSecret}` }, 'The admin token Secret (spec.admin.tokenSecretName) is not in the manifest folder: admin requests with a token are refused until it is');
  const built = core;

  return {
    core: built,
    manifests,
    async listen() {
      const host = listenHost(opts.host, initial, dir, log);
      const opampPortSetting = opts.opampPort !== undefined || !initial.bridge ? '--opamp-port' : `--opamp-port or spec.endpoint.port of the OpAMPBridge in ${initial.bridge.source}`;
      let l;
      try {
        l = await built.listen({ opampPort: opts.opampPort, httpPort: opts.httpPort, host, opampPortSetting });
      } catch (err) {
        await manifests.close();
        throw err;
      }
      manifests.watch();
      log.info(
        { opamp: l.opampUrl, api: l.apiUrl, adminAccess: adminAccess.mode, manifests: dir, collectors: initial.collectors.length, invalidFiles: initial.invalidFiles.length },
        'Fleetbridge standalone started',
      );
      return {
        opampUrl: l.opampUrl,
        apiUrl: l.apiUrl,
        fleet: built.fleet,
        manifests,
        async stop() {
          await manifests.close();
          await built.close();
        },
      };
    },
  };
}

export async function startStandalone(opts: StandaloneOptions): Promise<RunningBridge> {
  return (await buildStandalone(opts)).listen();
}
