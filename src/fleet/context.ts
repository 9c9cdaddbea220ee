/**
 * What the fleet's modules share: the options and the settings that may change live, the registry
 * of records, logger, metrics, redactor, the desired state, and isolation of one agent's errors.
 */
import type { Logger } from 'pino';
import type { CredentialPolicy } from '../opamp/bearer-auth.js';
import type { TransportName } from '../opamp/connection.js';
import type { DesiredState } from '../render/index.js';
import { Redactor } from '../render/redact.js';
import type { Metrics } from '../telemetry/metrics.js';
import { LogBudget } from '../lib/log-budget.js';
import { DEFAULT_AGENT_BOUNDS, type AgentBounds } from './bounds.js';
import { attributeIdentity, type AgentConnection, type AgentRecord, type IdentityResolver } from './agent.js';

export interface FleetOptions {
  logger: Logger;
  metrics: Metrics;
  /** Offered to agents that accept OpAMP connection settings (and their HTTP poll interval). Seconds; default 30. */
  heartbeatIntervalSeconds?: number;
  /** An HTTP agent silent for this long is marked disconnected. Default two heartbeat intervals. */
  offlineAfterMs?: number;
  /** A disconnected agent counts as recently disconnected (not as connected) for this long. Default two heartbeat intervals. */
  disconnectedGraceMs?: number;
  /** Drift is judged on an effective config older than the APPLIED status only after this long. Default 5 s. */
  driftSettleMs?: number;
  /** A disconnected agent's record is forgotten after this long. Default 15 minutes. */
  retainDisconnectedMs?: number;
  /** The same remote config is offered again on one connection only after this long. Default 60 s. */
  offerRetryMs?: number;
  /**
   * Connected agents beyond this count are refused with UNAVAILABLE. Records of disconnected agents
   * make room for new ones (oldest first). Default 20,000.
   */
  maxAgents?: number;
  /** What one agent may make the bridge keep (src/fleet/bounds.ts); a message over a bound is refused. */
  bounds?: Partial<AgentBounds>;
  /** New instance_uids accepted per source address: a bucket of this size, refilled at `newAgentsPerSourcePerSecond`. Default 5,000 and 500/s. */
  newAgentsPerSourceBurst?: number;
  newAgentsPerSourcePerSecond?: number;
  /** A record that never got a description (the agent never completed a first report) is dropped after this long. Default 10 s. */
  unidentifiedTtlMs?: number;
  /** Effective configs larger than this are stored and shown but not parsed to judge drift (about 1 ms per KiB on the event loop). Default 32 KiB. */
  driftJudgeMaxBytes?: number;
  /** The namespace of agents that do not report `k8s.namespace.name` (standalone). Default "default". */
  defaultNamespace?: string;
  /** Decides each agent's namespace and selection labels. Default: its attributes (standalone mode). */
  identity?: IdentityResolver;
  /** Which Authorization agents should use (bearer-token rotation). Default: the one each presented. */
  credentials?: CredentialPolicy;
  /** Where agents should send their own telemetry (read at every offer, so it may change). */
  ownTelemetry?: (conn: AgentConnection) => OwnTelemetry;
  /**
   * PEM of the CA that signed the OpAMP endpoint's certificate, offered with the OpAMP connection
   * settings. Without one, the OpAMP Supervisor (v0.149) turns certificate verification OFF when it
   * applies an offer (supervisor.go onOpampConnectionSettings), so a TLS bridge should know its CA.
   */
  serverCa?: () => string | undefined;
  now?: () => number;
}

/** An OTLP destination for one signal of an agent's own telemetry. */
export interface TelemetryDestination {
  endpoint: string;
  headers: Record<string, string>;
}
export type OwnTelemetry = Partial<Record<'metrics' | 'traces' | 'logs', TelemetryDestination>>;

/** Settings that may change while the fleet runs (Fleet.configure). */
export interface FleetSettingsChange {
  heartbeatIntervalSeconds?: number;
  maxAgents?: number;
  /** The bounds in full: unset ones take their defaults, as in the constructor. */
  bounds?: Partial<AgentBounds>;
  newAgentsPerSourceBurst?: number;
  newAgentsPerSourcePerSecond?: number;
  /** null clears the credential policy. */
  credentials?: CredentialPolicy | null;
}

type Settings = Required<Omit<FleetOptions, 'logger' | 'metrics' | 'identity' | 'credentials' | 'ownTelemetry' | 'serverCa' | 'bounds' | 'now'>>;

type Counter = { inc(n?: number): void };

function boundsOf(given: Partial<AgentBounds> | undefined): AgentBounds {
  return { ...DEFAULT_AGENT_BOUNDS, ...Object.fromEntries(Object.entries(given ?? {}).filter(([, v]) => v !== undefined)) };
}

function checkHeartbeat(seconds: number): void {
  if (!(seconds > 0)) throw new TypeError('heartbeatIntervalSeconds must be > 0: 0 turns heartbeats off in Go clients');
}

export class FleetContext {
  /** Every known agent by instance_uid (records are added and removed by session.ts only). */
  readonly agents = new Map<string, AgentRecord>();
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly now: () => number;
  /**
   * Scrubs secret values out of everything agents report (effective configs, error messages,
   * health) before it is stored: what is stored is what logs, status, events and the API show.
   */
  readonly redactor = new Redactor();
  readonly settings: Settings;
  bounds: AgentBounds;
  credentials: CredentialPolicy | undefined;
  readonly identity: IdentityResolver;
  readonly ownTelemetry: (conn: AgentConnection) => OwnTelemetry;
  readonly serverCa: () => string | undefined;
  desired: DesiredState | null = null;
  /** Bumped when what connection-settings offers are made of may have changed (see Fleet.reofferConnectionSettings). */
  settingsEpoch = 0;
  /** Per-transport children of the message counters, bound once (a labelled inc hashes its labels every time). */
  readonly counters: Record<TransportName, { received: Counter; sent: Counter }>;
  /** Lines agents can cause (refusals, one agent's error): about one a second each. */
  readonly logBudget: LogBudget;
  /** Timings the constructor derived from the heartbeat (re-derived when it changes). */
  readonly #derived: { offlineAfterMs: boolean; disconnectedGraceMs: boolean };

  constructor(opts: FleetOptions) {
    const heartbeat = opts.heartbeatIntervalSeconds ?? 30;
    checkHeartbeat(heartbeat);
    this.log = opts.logger;
    this.metrics = opts.metrics;
    this.now = opts.now ?? Date.now;
    this.settings = {
      heartbeatIntervalSeconds: heartbeat,
      offlineAfterMs: opts.offlineAfterMs ?? heartbeat * 2000,
      disconnectedGraceMs: opts.disconnectedGraceMs ?? heartbeat * 2000,
      driftSettleMs: opts.driftSettleMs ?? 5000,
      newAgentsPerSourceBurst: opts.newAgentsPerSourceBurst ?? 5000,
      newAgentsPerSourcePerSecond: opts.newAgentsPerSourcePerSecond ?? 500,
      unidentifiedTtlMs: opts.unidentifiedTtlMs ?? 10_000,
      driftJudgeMaxBytes: opts.driftJudgeMaxBytes ?? 32 * 1024,
      retainDisconnectedMs: opts.retainDisconnectedMs ?? 15 * 60_000,
      offerRetryMs: opts.offerRetryMs ?? 60_000,
      maxAgents: opts.maxAgents ?? 20_000,
      defaultNamespace: opts.defaultNamespace ?? 'default',
    };
    this.#derived = { offlineAfterMs: opts.offlineAfterMs === undefined, disconnectedGraceMs: opts.disconnectedGraceMs === undefined };
    this.identity = opts.identity ?? attributeIdentity(this.settings.defaultNamespace);
    this.bounds = boundsOf(opts.bounds);
    this.counters = {
      websocket: { received: this.metrics.messagesReceived.labels('websocket'), sent: this.metrics.messagesSent.labels('websocket') },
      http: { received: this.metrics.messagesReceived.labels('http'), sent: this.metrics.messagesSent.labels('http') },
    };
    this.credentials = opts.credentials;
    this.ownTelemetry = opts.ownTelemetry ?? (() => ({}));
    this.serverCa = opts.serverCa ?? (() => undefined);
    this.logBudget = new LogBudget(1, 1000, this.now);
  }

  /**
   * Applies live settings; returns what changed. A new heartbeat re-derives the timings derived from
   * it (unless the constructor was given them). A new credential policy bumps the settings epoch, so
   * every agent's offer is judged again with its next message.
   */
  configure(change: FleetSettingsChange): { changed: boolean; heartbeat: boolean } {
    const s = this.settings;
    let changed = false;
    let heartbeat = false;
    const h = change.heartbeatIntervalSeconds;
    if (h !== undefined && h !== s.heartbeatIntervalSeconds) {
      checkHeartbeat(h);
      s.heartbeatIntervalSeconds = h;
      if (this.#derived.offlineAfterMs) s.offlineAfterMs = h * 2000;
      if (this.#derived.disconnectedGraceMs) s.disconnectedGraceMs = h * 2000;
      changed = heartbeat = true;
    }
    for (const key of ['maxAgents', 'newAgentsPerSourceBurst', 'newAgentsPerSourcePerSecond'] as const) {
      const v = change[key];
      if (v !== undefined && v !== s[key]) {
        s[key] = v;
        changed = true;
      }
    }
    if (change.bounds !== undefined) {
      const next = boundsOf(change.bounds);
      if (JSON.stringify(next) !== JSON.stringify(this.bounds)) {
        this.bounds = next;
        changed = true;
      }
    }
    if (change.credentials !== undefined && (change.credentials ?? undefined) !== this.credentials) {
      this.credentials = change.credentials ?? undefined;
      this.settingsEpoch++;
      changed = true;
    }
    return { changed, heartbeat };
  }

  /** Runs one agent's part of a loop over the fleet; an error is logged (about once a second) and that agent skipped. */
  isolated<T>(where: string, rec: AgentRecord, fn: () => T, fallback: T): T {
    try {
      return fn();
    } catch (err) {
      this.metrics.protocolErrors.inc({ transport: rec.session.transport, code: 'FB_INTERNAL_AGENT_ERROR' });
      if (this.logBudget.take('isolated') !== false) this.log.error({ err, instanceUid: rec.uid, where }, 'Skipped one agent after an error; the others are unaffected');
      return fallback;
    }
  }
}
