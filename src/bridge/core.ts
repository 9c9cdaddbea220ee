/**
 * The bridge, once, for both modes: the fleet, the OpAMP server and the admin server, built from a
 * few ports the mode supplies (docs/architecture.md):
 * - the bridge's Secrets and the Collectors' Secrets (folder | Kubernetes watch);
 * - an identity resolver (agent attributes | pods) and a verifier for the modes the bridge cannot
 *   verify alone (mTLS binding rules, ServiceAccount tokens);
 * - the Collectors in effect, pushed with setDesired();
 * - who may use the admin endpoint.
 * `build()` needs no port; `listen()` binds. The OpAMPBridge spec is applied live with
 * applySettings(): only what needs another socket (port, TLS on or off) waits for a restart.
 */
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import { AdminServer } from '../api/server.js';
import { adminListenHost, type AdminAccess } from '../api/access.js';
import { collectorView, FleetFigures, type CollectorEntry } from '../controller/collector-views.js';
import type { IdentityResolver } from '../fleet/agent.js';
import { Fleet, sweepEvery } from '../fleet/fleet.js';
import { packageFilesRoute } from '../fleet/package-files.js';
import type { CollectorView } from '../fleet/view-types.js';
import type { AuthResult } from '../opamp/connection.js';
import { BearerTokens, type TokenSource } from '../opamp/bearer-auth.js';
import { OpampServer } from '../opamp/server.js';
import { otlpMetricsHandler } from '../otlp/receiver.js';
import { OwnMetricsCredentials, ownMetricsToken } from '../otlp/credentials.js';
import { DesiredState, type CollectorInput } from '../render/index.js';
import { servePolicy } from '../render/packages.js';
import type { SecretSource } from '../render/secrets.js';
import type { OpAMPBridgeSpec } from '../schema/v1alpha1/index.js';
import type { Metrics } from '../telemetry/metrics.js';
import { listenOrExplain, keepingAlive } from './listen.js';
import { fleetSink, receiverCounters } from './own-metrics.js';
import { BridgeSecrets, type SecretLookup } from './secrets.js';
import { settingsChanges } from './settings.js';

export type Authenticate = (req: IncomingMessage) => Promise<AuthResult>;

/** Command-line values that win over the OpAMPBridge spec. */
export interface BridgeOverrides {
  heartbeatIntervalSeconds?: number;
  maxMessageBytes?: number;
  maxMessagesPerSecond?: number;
  maxConnectionsPerSource?: number;
  pingIntervalMs?: number;
  sweepIntervalMs?: number;
  ownMetricsMaxSkewMs?: number;
  /** false: /metrics needs no admin credential. Default true. */
  metricsAuth?: boolean;
}

export interface BridgeCoreOptions {
  logger: Logger;
  metrics: Metrics;
  spec: OpAMPBridgeSpec;
  /** The bridge's namespace: its Secrets, and agents that name none. */
  namespace: string;
  identity: IdentityResolver;
  /** Every Secret the bridge reads (its own and the Collectors'). */
  secrets: SecretLookup;
  /** Secrets Collectors may substitute (Kubernetes: only labelled ones). Default `secrets`. */
  configSecrets?: SecretSource;
  /** Where Secrets come from, for messages: e.g. " in ./manifests". */
  secretsWhere?: string;
  /** auth.mode bearerToken: the Secrets whose tokens are accepted (the mode decides what each grants). */
  tokenSources: (spec: OpAMPBridgeSpec) => TokenSource[];
  /** auth.mode mtls and serviceAccountToken: how agents are verified (none and bearerToken are the core's). */
  verifier: (spec: OpAMPBridgeSpec) => Authenticate | undefined;
  adminAccess: AdminAccess;
  /** The admin endpoint asks for client certificates of adminTLS.clientCASecretName (standalone). */
  adminClientCa?: boolean;
  ready: () => boolean;
  collectors: () => { entries: readonly CollectorEntry[]; invalidFiles: { path: string; issues: string[] }[] };
  beforeScrape?: () => void;
  overrides?: BridgeOverrides;
}

export interface Listening {
  opampUrl: { websocket: string; http: string };
  apiUrl: string;
  opamp: { host: string; port: number };
  admin: { host: string; port: number };
}

/** Shown in URLs: a wildcard address as loopback, an IPv6 address in brackets. */
export const shownHost = (h: string): string => (h === '0.0.0.0' || h === '::' ? '127.0.0.1' : h.includes(':') ? `[${h}]` : h);

export class BridgeCore {
  readonly fleet: Fleet;
  readonly opamp: OpampServer;
  readonly admin: AdminServer;
  readonly figures: FleetFigures;
  readonly secrets: BridgeSecrets;
  readonly #o: BridgeCoreOptions;
  readonly #log: Logger;
  #spec: OpAMPBridgeSpec;
  #bearer: BearerTokens | null = null;
  #bearerProblems: string[] = [];
  #inputs: CollectorInput[] = [];
  #desired = new DesiredState([]);
  #files: ReturnType<typeof packageFilesRoute>;
  #sweeper: NodeJS.Timeout | null = null;
  #listening: Listening | null = null;
  readonly #ownMetricsCredentials = new OwnMetricsCredentials();

  private constructor(o: BridgeCoreOptions) {
    this.#o = o;
    this.#log = o.logger;
    this.#spec = o.spec;
    const spec = o.spec;
    const over = o.overrides ?? {};
    this.secrets = new BridgeSecrets(o.secrets, o.namespace, o.secretsWhere ?? '');
    // Without its certificate an endpoint cannot serve TLS, and must never fall back to plain text.
    const opampTls = this.secrets.tlsOrThrow('OpAMP', spec.tls);
    const adminTls = this.secrets.tlsOrThrow('admin', spec.adminTLS, o.adminClientCa ?? false);
    this.fleet = new Fleet({
      ownTelemetry: (conn) => this.secrets.ownTelemetry(this.#spec, conn, this.#adminEndpoint(), this.#ownMetricsCredentials),
      // cert-manager (and most issuers) put the issuing CA into the TLS Secret as ca.crt.
      serverCa: () => (this.#spec.tls ? this.secrets.get(this.#spec.tls.secretName)?.data['ca.crt'] : undefined),
      logger: o.logger.child({ component: 'fleet' }),
      metrics: o.metrics,
      heartbeatIntervalSeconds: this.#heartbeat(spec),
      maxAgents: spec.limits.maxAgents,
      bounds: spec.limits.agentReports ?? {},
      ...(spec.limits.newAgentsPerSource ? { newAgentsPerSourceBurst: spec.limits.newAgentsPerSource.burst, newAgentsPerSourcePerSecond: spec.limits.newAgentsPerSource.perSecond } : {}),
      defaultNamespace: o.namespace,
      identity: o.identity,
    });
    this.figures = new FleetFigures(() => this.fleet.records());
    this.fleet.onChange(() => this.figures.invalidate());
    this.#files = this.#filesRoute(spec);
    this.opamp = new OpampServer({
      handler: this.fleet,
      ...(opampTls ? { tls: opampTls } : {}),
      authenticate: this.#authenticate(spec),
      logger: o.logger.child({ component: 'opamp' }),
      onProtocolError: (transport, code) => o.metrics.protocolErrors.inc({ transport, code }),
      ...this.#serverLimits(spec),
      pingIntervalMs: over.pingIntervalMs ?? 30_000,
      files: { prefix: this.#files.prefix, handle: (req, res, path, id) => this.#files.handle(req, res, path, id) },
    });
    this.admin = new AdminServer({
      ...(adminTls ? { tls: adminTls } : {}),
      otlpMetrics: otlpMetricsHandler({
        sink: fleetSink(this.fleet, this.#ownMetricsCredentials),
        credential: ownMetricsToken,
        ...(over.ownMetricsMaxSkewMs !== undefined ? { maxSkewMs: over.ownMetricsMaxSkewMs } : {}),
        counters: receiverCounters(o.metrics),
        logger: o.logger.child({ component: 'otlp' }),
      }),
      access: o.adminAccess,
      metricsAuth: over.metricsAuth ?? true,
      registry: o.metrics.registry,
      logger: o.logger.child({ component: 'api' }),
      source: {
        ready: () => this.#listening !== null && o.ready(),
        agents: () => this.fleet.views(),
        agent: (uid) => this.fleet.viewOf(uid),
        collectors: () => {
          const { entries, invalidFiles } = o.collectors();
          return { collectors: entries.map((e) => this.collectorView(e)), invalidFiles };
        },
        beforeScrape: () => {
          this.fleet.updateGauges();
          o.beforeScrape?.();
        },
      },
    });
  }

  /** Builds the bridge without binding a port. Throws when the spec cannot be served (TLS without its certificate). */
  static build(o: BridgeCoreOptions): BridgeCore {
    return new BridgeCore(o);
  }

  get spec(): OpAMPBridgeSpec {
    return this.#spec;
  }

  get desired(): DesiredState {
    return this.#desired;
  }

  /** Why bearer tokens are not usable (a missing Secret or key), or null. */
  get bearerProblem(): string | null {
    return this.#bearer ? (this.#bearerProblems[0] ?? null) : null;
  }

  get listening(): Listening | null {
    return this.#listening;
  }

  collectorView(e: CollectorEntry): CollectorView {
    return collectorView(e, this.#desired, this.figures);
  }

  /** The Collectors in effect changed (or the Secrets they use): render again and push what changed. */
  setDesired(inputs: CollectorInput[]): void {
    this.#inputs = inputs;
    this.#desired = new DesiredState(inputs, this.#o.configSecrets ?? this.#o.secrets, { servePolicy: servePolicy(this.#spec.packages) });
    this.fleet.setDesiredState(this.#desired);
    this.figures.invalidate();
  }

  /** Every Secret value the bridge holds is scrubbed from what agents report, before anything is pushed. */
  scrub(values: Iterable<string>): void {
    this.fleet.redactor.add([...values]);
  }

  /**
   * Secrets changed (`changed` says which, by namespace and name): reload tokens, certificates and
   * offers that use them. Agents on a revoked token, or verified by a replaced client CA, are closed.
   */
  secretsChanged(changed: (namespace: string, name: string) => boolean): void {
    const spec = this.#spec;
    const own = (name: string | undefined) => !!name && changed(this.#o.namespace, name);
    let reoffer = false;
    if (this.#bearer && spec.auth.bearerToken && this.#o.tokenSources(spec).some((s) => changed(s.namespace ?? this.#o.namespace, spec.auth.bearerToken!.secretName))) {
      this.#loadTokens(spec);
      if (this.#listening) {
        const bearer = this.#bearer;
        // A removed token, or one that now grants another namespace than the connection was verified for.
        this.fleet.closeConnections((c) => !bearer.accepts(c.authorization) || bearer.namespaceOf(c.authorization) !== c.verified?.namespace, 'credential revoked');
        reoffer = true;
      }
    }
    if ((['metrics', 'traces', 'logs'] as const).some((sig) => own(spec.ownTelemetry?.[sig]?.headersSecretName))) reoffer = true;
    if (this.#listening && (own(spec.tls?.secretName) || own(spec.tls?.clientCASecretName))) {
      if (this.#reloadTls('opamp')) {
        // A new client CA applies to new handshakes; agents verified by the old one must verify again.
        if (own(spec.tls?.clientCASecretName)) this.fleet.closeConnections((c) => c.verified?.method === 'mtls', 'client CA changed');
        reoffer = true; // offers carry the serving CA (ca.crt)
      }
    }
    if (this.#listening && own(spec.adminTLS?.secretName)) this.#reloadTls('admin');
    if (reoffer && this.#listening) this.fleet.reofferConnectionSettings();
  }

  /**
   * A new OpAMPBridge spec, applied live. Returns the fields that take effect only when the bridge
   * restarts (they need another socket): the OpAMP port, and TLS turned on or off on either endpoint.
   */
  applySettings(next: OpAMPBridgeSpec): string[] {
    const prev = this.#spec;
    const c = settingsChanges(prev, next);
    if (c.none) return c.restartRequired;
    this.#spec = next;
    if (c.limits || c.endpoint) this.opamp.configure({ ...this.#serverLimits(next) });
    if (c.fleet) {
      this.fleet.configure({
        heartbeatIntervalSeconds: this.#heartbeat(next),
        maxAgents: next.limits.maxAgents,
        bounds: next.limits.agentReports ?? {},
        newAgentsPerSourceBurst: next.limits.newAgentsPerSource?.burst ?? 5000,
        newAgentsPerSourcePerSecond: next.limits.newAgentsPerSource?.perSecond ?? 500,
      });
    }
    if (c.auth) {
      this.opamp.configure({ authenticate: this.#authenticate(next) });
      const method = next.auth.mode === 'none' ? null : next.auth.mode;
      // Connections verified another way than the new mode asks are closed; they verify again.
      if (method) this.fleet.closeConnections((conn) => conn.verified?.method !== method || (method === 'bearerToken' && !this.#bearer!.accepts(conn.authorization)), 'authentication changed');
      this.#log.info({ mode: next.auth.mode }, 'Agent authentication changed');
    }
    if (this.#listening && !c.restartRequired.some((f) => f.startsWith('tls')) && c.tlsSecrets) this.secretsChanged((ns, name) => ns === this.#o.namespace && (name === next.tls?.secretName || name === next.tls?.clientCASecretName));
    if (this.#listening && !c.restartRequired.some((f) => f.startsWith('adminTLS')) && c.adminTlsSecret) this.#reloadTls('admin');
    if (c.packages) {
      this.#files = this.#filesRoute(next);
      this.setDesired(this.#inputs);
    }
    if (c.offers && this.#listening) this.fleet.reofferConnectionSettings();
    if (c.heartbeat) this.#startSweeper();
    this.#log.info({ changed: c.changed, restartRequired: c.restartRequired }, 'Applied the OpAMPBridge spec');
    return c.restartRequired;
  }

  /** Binds both endpoints (OpAMP first); a busy port is explained (listen.ts). */
  async listen(o: { opampPort?: number; httpPort?: number; host?: string; opampPortSetting: string }): Promise<Listening> {
    const spec = this.#spec;
    const host = o.host ?? '0.0.0.0';
    const opampPort = o.opampPort ?? spec.endpoint.port;
    const oa = await listenOrExplain(() => this.opamp.listen(opampPort, host), { name: 'OpAMP', host, port: opampPort, change: o.opampPortSetting });
    let aa;
    try {
      const httpPort = o.httpPort ?? 8080;
      const adminHost = adminListenHost(host, this.#o.adminAccess, this.#log);
      aa = await listenOrExplain(() => this.admin.listen(httpPort, adminHost), { name: 'admin API', host: adminHost, port: httpPort, change: '--http-port' });
    } catch (err) {
      await keepingAlive(this.opamp.close());
      throw err;
    }
    const tls = !!spec.tls;
    this.#listening = {
      opampUrl: {
        websocket: `ws${tls ? 's' : ''}://${shownHost(oa.host)}:${oa.port}${spec.endpoint.path}`,
        http: `http${tls ? 's' : ''}://${shownHost(oa.host)}:${oa.port}${spec.endpoint.path}`,
      },
      apiUrl: `http${spec.adminTLS ? 's' : ''}://${shownHost(aa.host)}:${aa.port}`,
      opamp: oa,
      admin: aa,
    };
    this.#startSweeper();
    return this.#listening;
  }

  async close(): Promise<void> {
    if (this.#sweeper) clearInterval(this.#sweeper);
    this.#sweeper = null;
    await Promise.all([this.opamp.close(), this.admin.close()]);
  }

  #heartbeat(spec: OpAMPBridgeSpec): number {
    return this.#o.overrides?.heartbeatIntervalSeconds ?? spec.heartbeatIntervalSeconds;
  }

  #startSweeper(): void {
    if (!this.#listening) return;
    if (this.#sweeper) clearInterval(this.#sweeper);
    this.#sweeper = setInterval(() => this.fleet.sweep(), this.#o.overrides?.sweepIntervalMs ?? sweepEvery(this.#heartbeat(this.#spec)));
    this.#sweeper.unref();
  }

  /** The admin endpoint once it listens: agents may be offered its /v1/metrics (src/otlp). */
  #adminEndpoint(): { port: number; tls: boolean; loopbackOnly: boolean } | null {
    const l = this.#listening;
    return l ? { port: l.admin.port, tls: !!this.#spec.adminTLS, loopbackOnly: !this.#o.adminAccess.enforced } : null;
  }

  #serverLimits(spec: OpAMPBridgeSpec) {
    const over = this.#o.overrides ?? {};
    return {
      path: spec.endpoint.path,
      transports: spec.transports,
      maxMessageBytes: over.maxMessageBytes ?? spec.limits.maxMessageBytes,
      maxMessagesPerSecond: over.maxMessagesPerSecond ?? spec.limits.maxMessagesPerSecond,
      maxBytesPerSecond: spec.limits.maxBytesPerSecond,
      maxConnectionsPerSource: over.maxConnectionsPerSource ?? spec.limits.maxConnectionsPerSource,
      maxConnections: spec.limits.maxConnections,
      firstMessageTimeoutMs: spec.limits.firstMessageTimeoutSeconds * 1000,
      maxPendingConnectionsPerSource: spec.limits.maxPendingConnectionsPerSource,
    };
  }

  #filesRoute(spec: OpAMPBridgeSpec) {
    return packageFilesRoute({ spec: spec.packages, desired: () => this.#desired, downloads: this.#o.metrics.packageDownloads, logger: this.#log });
  }

  /** The verifier for a spec's auth mode; bearer tokens are loaded here. */
  #authenticate(spec: OpAMPBridgeSpec): Authenticate | undefined {
    if (spec.auth.mode !== 'bearerToken') {
      this.#bearer = null;
      this.fleet.configure({ credentials: null });
      if (spec.auth.mode === 'none') return undefined;
      return this.#o.verifier(spec);
    }
    this.#bearer ??= new BearerTokens();
    this.#loadTokens(spec);
    this.fleet.configure({ credentials: this.#bearer });
    return this.#bearer.authenticate;
  }

  #loadTokens(spec: OpAMPBridgeSpec): void {
    if (!this.#bearer) return;
    this.#bearerProblems = this.#bearer.setSources(this.#o.tokenSources(spec));
    this.#o.metrics.secretReloads.inc({ use: 'bearer_tokens', outcome: this.#bearerProblems.length > 0 ? 'error' : 'ok' });
    for (const problem of this.#bearerProblems) this.#log.warn({ problem }, 'Bearer tokens: a token Secret is not usable');
  }

  #reloadTls(which: 'opamp' | 'admin'): boolean {
    const m = which === 'opamp' ? this.secrets.tlsMaterial(this.#spec.tls) : this.secrets.tlsMaterial(this.#spec.adminTLS, this.#o.adminClientCa ?? false);
    try {
      if (typeof m !== 'object') throw new Error(m ?? 'no certificate');
      (which === 'opamp' ? this.opamp : this.admin).setTls(m);
      this.#log.info({ endpoint: which }, 'Reloaded TLS certificates');
      this.#o.metrics.secretReloads.inc({ use: `${which}_tls`, outcome: 'ok' });
      return true;
    } catch (err) {
      this.#o.metrics.secretReloads.inc({ use: `${which}_tls`, outcome: 'error' });
      this.#log.error({ endpoint: which, err: (err as Error).message }, 'Cannot reload TLS certificates; serving the previous ones');
      return false;
    }
  }
}
