/**
 * The agent registry and the OpAMP session rules: one record per instance_uid, what to store
 * from each AgentToServer, and what each ServerToAgent carries (full-state requests, remote
 * config, connection settings). Transport-agnostic: WebSocket and HTTP call the same methods.
 * Pure logic apart from the injected clock, logger and metrics; no sockets, no Kubernetes.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import {
  AgentCapabilities,
  AgentToServerFlags,
  RemoteConfigStatusNames,
  SERVER_CAPABILITIES,
  ServerErrorResponseType,
  ServerToAgentFlags,
  capabilityNames,
  hasBit,
  toBigInt,
  toNumber,
  type AgentToServer,
  type ServerToAgentProps,
} from '../opamp/messages.js';
import { newUuidV7, parseUid, sameBytes, uidToString } from '../opamp/uid.js';
import { encodeServerToAgent } from '../opamp/codec.js';
import { configDifferences, parseConfigBody } from './drift.js';
import type { DesiredState, RenderedConfig } from '../render/index.js';
import { Redactor } from '../render/secrets.js';
import type { CredentialPolicy } from '../opamp/bearer-auth.js';
import type { Metrics } from '../telemetry/metrics.js';
import { mergeFigures, type ProcessFigures } from '../otlp/metrics.js';
import { updateResourceGauges } from '../otlp/gauges.js';
import type { AgentPackagesView, AgentView, AvailableComponentsView, ComponentDetailsView, PackageStatusesView, RemoteConfigState } from '../api/views.js';
import { offeredDownloadUrl, packageState } from './packages.js';
import { componentsUsed, missingComponents, missingComponentsMessage } from './components.js';
import { DEFAULT_AGENT_BOUNDS, boundText, exceededBound, type AgentBounds } from './bounds.js';
import {
  internShort,
  attributeIdentity,
  describe,
  healthView,
  keyValuesToObject,
  labelsOf,
  type AgentConnection,
  type AgentRecord,
  type IdentityResolver,
  type UnsupportedRequest,
} from './agent.js';

/** Messages sent per turn of the event loop in a fan-out. */
const SEND_BATCH = 1000;

/** A uid taken over between live connections this often within CLONE_WINDOW_MS is held by clones. */
const CLONE_TAKEOVERS = 3;
const CLONE_WINDOW_MS = 60_000;

/** Characters of distinct effective-config texts kept for sharing between agents. */
const TEXT_TABLE_CHARS = 32 * 1024 * 1024;

/** Who holds a uid: the identity the connection was verified as (null: no authentication, or nothing that tells agents apart). */
export function holderOf(conn: AgentConnection): string | null {
  const v = conn.verified;
  if (!v) return null;
  switch (v.method) {
    case 'serviceAccountToken':
      return `sa|${v.namespace ?? ''}|${v.podUid ?? v.podName ?? v.username}`;
    case 'mtls':
      return `mtls|${v.username}`;
    case 'bearerToken':
      return conn.authorization ? `bearer|${createHash('sha256').update(conn.authorization).digest('hex').slice(0, 32)}` : null;
  }
}

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

/** The heartbeat interval OpAMP clients use until told otherwise (opamp-go, the Supervisor: 30 s). */
const OPAMP_DEFAULT_HEARTBEAT_SECONDS = 30;

const OWN_SIGNALS = [
  ['metrics', AgentCapabilities.ReportsOwnMetrics, 'ownMetrics'],
  ['traces', AgentCapabilities.ReportsOwnTraces, 'ownTraces'],
  ['logs', AgentCapabilities.ReportsOwnLogs, 'ownLogs'],
] as const;

export class Fleet {
  readonly #agents = new Map<string, AgentRecord>();
  /** uids seen on each live WebSocket connection, to forget them when it closes (OpAMP §AgentDisconnect). */
  readonly #byConnection = new Map<number, Set<string>>();
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #opts: Required<Omit<FleetOptions, 'logger' | 'metrics' | 'identity' | 'credentials' | 'ownTelemetry' | 'serverCa' | 'bounds'>>;
  readonly #bounds: AgentBounds;
  /** New-uid buckets per source address (bounded: the oldest source is dropped when full). */
  readonly #newAgentBuckets = new Map<string, { tokens: number; at: number }>();
  /** Refusals not yet logged, by reason (logged at most once per second with their count). */
  readonly #refusals = { count: 0, loggedAt: 0 };
  #textBytes = 0;
  readonly #ownTelemetry: (conn: AgentConnection) => OwnTelemetry;
  readonly #serverCa: () => string | undefined;
  readonly #credentials: CredentialPolicy | undefined;
  /**
   * Scrubs secret values out of everything agents report (effective configs, error messages,
   * health) before it is stored: what is stored is what logs, status, events and the API show.
   */
  readonly redactor = new Redactor();
  /** Bumped when what connection-settings offers are made of may have changed (see reofferConnectionSettings). */
  #settingsEpoch = 0;
  readonly #identity: IdentityResolver;
  #desired: DesiredState | null = null;
  /** Drift verdicts by desired hash, then by reported effective config (shared by every agent reporting it). */
  readonly #driftResults = new Map<string, Map<string, { drifted: boolean; differences: string[] } | null>>();
  /** Effective config texts agents report, kept once however many agents report the same text. */
  readonly #texts = new Map<string, string>();
  readonly #desiredTexts = new Map<string, string>();
  readonly #desiredParsed = new Map<string, unknown>();
  /** "kind/type" of the components each desired config (by hash) defines. */
  readonly #usedComponents = new Map<string, string[]>();
  readonly #listeners = new Set<() => void>();
  /** Per-transport children of the message counters, bound once (a labelled inc hashes its labels every time). */
  readonly #counters: Record<'websocket' | 'http', { received: { inc(n?: number): void }; sent: { inc(n?: number): void } }>;

  constructor(opts: FleetOptions) {
    const heartbeat = opts.heartbeatIntervalSeconds ?? 30;
    if (!(heartbeat > 0)) throw new TypeError('heartbeatIntervalSeconds must be > 0: 0 turns heartbeats off in Go clients');
    this.#log = opts.logger;
    this.#metrics = opts.metrics;
    this.#opts = {
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
      now: opts.now ?? Date.now,
    };
    this.#identity = opts.identity ?? attributeIdentity(this.#opts.defaultNamespace);
    this.#bounds = { ...DEFAULT_AGENT_BOUNDS, ...Object.fromEntries(Object.entries(opts.bounds ?? {}).filter(([, v]) => v !== undefined)) };
    this.#counters = {
      websocket: { received: this.#metrics.messagesReceived.labels('websocket'), sent: this.#metrics.messagesSent.labels('websocket') },
      http: { received: this.#metrics.messagesReceived.labels('http'), sent: this.#metrics.messagesSent.labels('http') },
    };
    this.#credentials = opts.credentials;
    this.#ownTelemetry = opts.ownTelemetry ?? (() => ({}));
    this.#serverCa = opts.serverCa ?? (() => undefined);
  }

  /** Called (synchronously, cheaply) after any change of agent state; consumers debounce. */
  onChange(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  #changed(): void {
    for (const fn of this.#listeners) fn();
  }

  get size(): number {
    return this.#agents.size;
  }

  get(uid: string): AgentRecord | undefined {
    return this.#agents.get(uid);
  }

  records(): IterableIterator<AgentRecord> {
    return this.#agents.values();
  }

  /**
   * Handles one AgentToServer and returns the ServerToAgent to answer it with (OpAMP: the server
   * answers every message). For WebSocket the caller sends it; for HTTP it is the response body.
   */
  handleMessage(conn: AgentConnection, msg: AgentToServer): ServerToAgentProps {
    const now = this.#opts.now();
    this.#counters[conn.transport].received.inc();
    const uidBytes = msg.instanceUid ?? new Uint8Array();
    if (uidBytes.length !== 16) {
      this.#metrics.protocolErrors.inc({ transport: conn.transport, code: 'FB_OPAMP_BAD_INSTANCE_UID' });
      this.#log.warn({ transport: conn.transport, uidLength: uidBytes.length }, 'Refused message with an instance_uid that is not 16 bytes');
      return errorResponse(uidBytes, ServerErrorResponseType.BadRequest, `instance_uid must be 16 bytes, got ${uidBytes.length}`);
    }
    // A connection carries one agent (almost always): its uid string is kept, not rebuilt per message.
    const cached = conn.uidCache;
    let uid: string;
    if (cached && sameBytes(cached.bytes, uidBytes)) uid = cached.uid;
    else {
      uid = uidToString(uidBytes);
      conn.uidCache = { bytes: Uint8Array.from(uidBytes), uid };
    }
    // What one agent can make the bridge keep is bounded: a message over a bound is refused whole.
    const over = exceededBound(msg, this.#bounds);
    if (over) return this.#refuse(conn, uidBytes, uid, 'FB_OPAMP_AGENT_LIMIT', ServerErrorResponseType.BadRequest, `message refused: ${over}`);
    let rec = this.#agents.get(uid);
    const seq = toBigInt(msg.sequenceNum);
    const flags = toNumber(msg.flags);
    const response: ServerToAgentProps = { instanceUid: uidBytes, capabilities: SERVER_CAPABILITIES };
    let fullState = false;
    /** The agent's sequence started again on a record we know: its process (or its OpAMP client) restarted. */
    let restarted = false;
    const claimant = holderOf(conn);

    if (rec && !this.#mayHold(rec, conn, claimant, now)) {
      // Another identity claims a uid that is held: refused, the holder untouched.
      return this.#refuse(conn, uidBytes, uid, 'FB_OPAMP_UID_HELD', ServerErrorResponseType.BadRequest, `instance_uid ${uid} is held by another identity; use your own (or set RequestInstanceUid)`);
    }
    let recordUid = uidBytes;
    if (rec && this.#isClone(rec, conn, flags, now)) {
      // Two live connections keep taking one uid from each other (cloned agents): the newcomer gets
      // a uid of its own (OpAMP agent_identification) instead of closing the other again.
      recordUid = newUuidV7(now);
      const fresh = uidToString(recordUid);
      response.agentIdentification = { newInstanceUid: recordUid };
      this.#metrics.protocolErrors.inc({ transport: conn.transport, code: 'FB_OPAMP_UID_CLONED' });
      this.#log.warn({ instanceUid: uid, newInstanceUid: fresh, connection: conn.id, code: 'FB_OPAMP_UID_CLONED' }, 'Two live connections keep claiming one instance_uid (cloned agents): gave the newer one a new uid');
      uid = fresh;
      rec = undefined;
    }
    const isNew = !rec;

    if (!rec) {
      if (!this.#admitNewAgent(conn, now)) {
        return this.#refuse(conn, uidBytes, uid, 'FB_OPAMP_OVERLOADED', ServerErrorResponseType.Unavailable, 'too many new agents from this address; retry later', 10);
      }
      if (this.#agents.size >= this.#opts.maxAgents && !this.#evictDisconnected()) {
        return this.#refuse(conn, uidBytes, uid, 'FB_OPAMP_OVERLOADED', ServerErrorResponseType.Unavailable, `this server serves at most ${this.#opts.maxAgents} agents`, 30);
      }
      rec = this.#newRecord(uid, recordUid, conn, now);
      this.#agents.set(uid, rec);
      // OpAMP §sequence_num: a server with no state for the agent (new, or we restarted) asks for
      // full state, unless this is plainly a fresh agent's first report, or the message already
      // carries everything full state would (an agent that re-sends its state when it reconnects:
      // asking again would double a reconnect storm after a restart).
      fullState = !(msg.agentDescription != null && (seq === 0n || carriesFullState(msg)));
      this.#log.info({ instanceUid: uid, transport: conn.transport }, 'Agent connected');
    } else {
      if (rec.connection && rec.connection.id !== conn.id && rec.connected && !hasBit(flags, AgentToServerFlags.RequestInstanceUid)) {
        // Two live connections claim one instance_uid: the newest wins (an agent that reconnected
        // before its old connection was seen to close).
        const old = rec.connection;
        this.#detach(old.id, uid);
        if (old.close) {
          if (now - rec.takeovers.since > CLONE_WINDOW_MS) rec.takeovers = { count: 0, since: now };
          rec.takeovers.count++;
          this.#log.warn({ instanceUid: uid, oldConnection: old.id, newConnection: conn.id }, 'Closed older connection of an agent that connected again');
          old.close(1008, 'replaced by a newer connection for this instance_uid');
        }
      }
      fullState = rec.lastSeq === null || seq !== rec.lastSeq + 1n;
      // A sequence that starts again (0, or below the last one; a retried copy repeats the last) is a
      // new client: what was offered to the old one may never have been acted on.
      restarted = rec.lastSeq !== null && (seq === 0n || seq < rec.lastSeq);
      if (restarted) {
        rec.offered = null;
        rec.packagesOffered = null;
        rec.componentsRequested = null;
        // A new client's first message without a config status says it runs no remote config (the
        // Python client starts with none): what the old one reported no longer stands.
        if (seq === 0n && msg.remoteConfigStatus == null) rec.reported = { hash: null, status: 'UNSET', errorMessage: '' };
      }
      if (!rec.connected) this.#log.info({ instanceUid: uid, transport: conn.transport }, 'Agent reconnected');
    }
    rec.holder = claimant;
    rec.holderAuthorization = claimant?.startsWith('bearer|') ? (conn.authorization ?? null) : null;

    // Already recorded on this very connection (every heartbeat): nothing to attach.
    const wasOn = !isNew && rec.connected && rec.connection ? rec.connection.id : null;
    const cameBack = !rec.connected;
    rec.lastSeq = seq;
    rec.lastSeen = now;
    rec.capabilities = toNumber(msg.capabilities);
    rec.transport = conn.transport;
    rec.connection = conn;
    rec.connected = true;
    rec.disconnectedAt = null;
    rec.pastGrace = false;
    const verified = conn.verified ?? null;
    const verifiedChanged = verified !== rec.verified && JSON.stringify(verified) !== JSON.stringify(rec.verified);
    rec.verified = verified;
    if (conn.send && wasOn !== conn.id) this.#attach(conn.id, uid);

    // Every field of every message is stored, whatever else the message carries (a message that
    // says agent_disconnect may also carry the agent's full state: opamp-go-based agents that
    // restart their client send both).
    let descriptionChanged = false;
    if (msg.agentDescription != null) {
      rec.description = describe(msg.agentDescription);
      const attributes = labelsOf(rec.description);
      descriptionChanged = JSON.stringify(attributes) !== JSON.stringify(rec.attributes);
      rec.attributes = attributes;
    }
    // Agent-written text is scrubbed of secret values, then cut to the bound (it only explains).
    const clean = (s: string) => boundText(this.redactor.redact(s), this.#bounds);
    if (msg.health != null) rec.health = healthView(msg.health, clean);
    // The status first: an effective config in the same message belongs to the status it carries.
    if (msg.remoteConfigStatus != null) this.#recordConfigStatus(rec, msg.remoteConfigStatus, now);
    if (msg.effectiveConfig != null) {
      const files: Record<string, { body: string; contentType: string }> = {};
      for (const [k, f] of Object.entries(msg.effectiveConfig.configMap?.configMap ?? {})) {
        const bytes = f.body ?? new Uint8Array();
        // After a push, agents report the config they were sent: reuse its (redacted) text rather
        // than decoding and hashing the same kilobytes once per agent.
        const d = rec.desired;
        const text = d && bytes.length === d.body.length && d.body.equals(bytes) ? this.#desiredText(d) : this.#intern(this.redactor.redact(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8')));
        files[k] = { body: text, contentType: internShort(f.contentType ?? '') };
      }
      rec.effectiveConfig = files;
      rec.effectiveConfigFresh = true;
    }
    if (msg.packageStatuses != null) rec.packageStatuses = packageStatusesView(msg.packageStatuses, clean);
    if (msg.availableComponents != null) this.#recordComponents(rec, msg.availableComponents);
    if (msg.customCapabilities != null) rec.customCapabilities = [...(msg.customCapabilities.capabilities ?? [])];
    if (msg.connectionSettingsStatus != null) {
      const st = msg.connectionSettingsStatus;
      rec.connectionSettingsStatus = {
        hash: st.lastConnectionSettingsHash?.length ? Buffer.from(st.lastConnectionSettingsHash).toString('hex') : null,
        status: (['UNSET', 'APPLIED', 'APPLYING', 'FAILED'] as const)[st.status ?? 0] ?? 'UNSET',
        errorMessage: clean(st.errorMessage ?? ''),
      };
    }

    if (hasBit(flags, AgentToServerFlags.RequestInstanceUid)) {
      const fresh = newUuidV7(now);
      const newUid = uidToString(fresh);
      this.#agents.delete(uid);
      this.#detach(conn.id, uid);
      rec.uid = newUid;
      rec.uidBytes = fresh;
      this.#agents.set(newUid, rec);
      if (conn.send) this.#attach(conn.id, newUid);
      response.agentIdentification = { newInstanceUid: fresh };
      this.#log.info({ instanceUid: uid, newInstanceUid: newUid }, 'Assigned a new instance_uid at the agent\'s request');
      uid = newUid;
    }

    // Who the agent is and what it should run follow from what it says, on every message that
    // changes it: a stored description is always resolved.
    if (descriptionChanged || isNew || verifiedChanged || cameBack) {
      this.#resolveIdentity(rec);
      this.#computeDesired(rec);
    }
    this.#judgeDrift(rec, now);
    this.#judgeComponents(rec);
    this.#refuseCustomMessages(rec, conn, msg, response, now);

    if (msg.agentDisconnect != null) {
      // Its state is kept (a restarting client reconnects at once); nothing more is offered on a
      // connection the agent is leaving.
      this.#disconnect(rec, now);
      this.#log.info({ instanceUid: uid }, 'Agent disconnected');
      this.#counters[conn.transport].sent.inc();
      this.#changed();
      return response;
    }
    if (msg.connectionSettingsRequest != null) {
      // This server does not issue client certificates (and does not advertise
      // AcceptsConnectionSettingsRequest). OpAMP §CSR: a request that cannot be served is answered
      // with error_response BAD_REQUEST. The error goes alone; what the answer would have carried
      // follows with the next message (asked for again in full if it was due now).
      const message = 'this server does not issue client certificates: ConnectionSettingsRequest is not supported (the server does not advertise AcceptsConnectionSettingsRequest)';
      this.#refused(rec, conn, 'connection_settings_request', message, now);
      if (fullState) rec.lastSeq = null;
      this.#counters[conn.transport].sent.inc();
      this.#changed();
      return { instanceUid: response.instanceUid, capabilities: SERVER_CAPABILITIES, errorResponse: { type: ServerErrorResponseType.BadRequest, errorMessage: message } };
    }

    if (fullState) response.flags = ServerToAgentFlags.ReportFullState;
    this.#maybeRequestComponents(rec, conn, response, now);
    // After asking for full state, wait for the agent's config status before offering config, so
    // an agent that already runs the desired config is not sent it again. A first message (sequence
    // 0) that carries no status says the agent has none.
    const knowsReported = msg.remoteConfigStatus != null || !fullState || seq === 0n;
    const configSent = knowsReported && this.#maybeAddRemoteConfig(rec, conn, response, now);
    // Likewise packages: the agent's statuses say whether it already has them.
    if (msg.packageStatuses != null || !fullState) this.#maybeAddPackages(rec, conn, response, now);
    // Connection settings wait while a config is on its way: agents that restart their OpAMP client
    // on an offer would otherwise drop a config they were about to apply and be sent it again.
    if (isNew || restarted) rec.sequenceStartedAt = now;
    if (isNew || (restarted && this.#lostState(rec))) rec.settingsMayBeForgotten = true;
    if (!configSent && !this.#configInFlight(rec, now)) {
      if (this.#maybeAddConnectionSettings(rec, conn, response, rec.settingsMayBeForgotten, now, this.#startingUp(rec, now))) rec.settingsMayBeForgotten = false;
    }
    this.#counters[conn.transport].sent.inc();
    this.#changed();
    return response;
  }

  /** A refusal: counted under `code`, logged at most once a second (with how many were not), answered with error_response only. */
  #refuse(conn: AgentConnection, uidBytes: Uint8Array, uid: string, code: string, type: number, message: string, retryAfterSeconds?: number): ServerToAgentProps {
    this.#metrics.protocolErrors.inc({ transport: conn.transport, code });
    const now = this.#opts.now();
    const r = this.#refusals;
    if (now - r.loggedAt >= 1000) {
      this.#log.warn({ instanceUid: uid, transport: conn.transport, source: conn.remoteAddress, code, alsoRefusedSinceLastLine: r.count }, `Refused an agent's message: ${message}`);
      r.loggedAt = now;
      r.count = 0;
    } else r.count++;
    return {
      instanceUid: uidBytes,
      errorResponse: { type, errorMessage: message, ...(retryAfterSeconds ? { retryInfo: { retryAfterNanoseconds: retryAfterSeconds * 1_000_000_000 } } : {}) },
    };
  }

  /**
   * Whether `conn` may speak for the record: a uid is bound to the identity that holds it (its
   * ServiceAccount token's pod, its certificate, its bearer token) while the holder is connected or
   * within the grace after. A bearer token that replaces the holder's (a rotation) may take over.
   */
  #mayHold(rec: AgentRecord, conn: AgentConnection, claimant: string | null, now: number): boolean {
    if (rec.holder === null || claimant === rec.holder) return true;
    if (!rec.connected && (rec.pastGrace || now - (rec.disconnectedAt ?? rec.lastSeen) > this.#opts.disconnectedGraceMs)) return true;
    const held = rec.holderAuthorization;
    return held !== null && conn.authorization !== undefined && this.#credentials?.replacementFor(held) === conn.authorization;
  }

  /** Whether a second live WebSocket connection keeps taking this uid from a live one (cloned agents). */
  #isClone(rec: AgentRecord, conn: AgentConnection, flags: number, now: number): boolean {
    if (!rec.connected || !rec.connection?.send || !conn.send || rec.connection.id === conn.id) return false;
    if (hasBit(flags, AgentToServerFlags.RequestInstanceUid)) return false;
    return now - rec.takeovers.since <= CLONE_WINDOW_MS && rec.takeovers.count >= CLONE_TAKEOVERS;
  }

  /** A new uid from this source address, within its bucket (a flood of fresh uids from one address is refused). */
  #admitNewAgent(conn: AgentConnection, now: number): boolean {
    const source = conn.remoteAddress ?? '';
    const burst = this.#opts.newAgentsPerSourceBurst;
    let b = this.#newAgentBuckets.get(source);
    if (!b) {
      if (this.#newAgentBuckets.size >= 10_000) this.#newAgentBuckets.delete(this.#newAgentBuckets.keys().next().value!);
      this.#newAgentBuckets.set(source, (b = { tokens: burst, at: now }));
    }
    b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * this.#opts.newAgentsPerSourcePerSecond);
    b.at = now;
    if (b.tokens < 1) return false;
    b.tokens--;
    return true;
  }

  /** Makes room for a new agent by forgetting the longest-disconnected record; false when every record is connected. */
  #evictDisconnected(): boolean {
    let oldest: AgentRecord | null = null;
    for (const rec of this.#agents.values()) {
      if (!rec.connected && (oldest === null || rec.lastSeen < oldest.lastSeen)) oldest = rec;
    }
    if (!oldest) return false;
    this.#agents.delete(oldest.uid);
    return true;
  }

  /** A WebSocket closed: every agent last seen on it is disconnected (OpAMP §AgentDisconnect). */
  connectionClosed(conn: AgentConnection): void {
    const uids = this.#byConnection.get(conn.id);
    this.#byConnection.delete(conn.id);
    if (!uids) return;
    const now = this.#opts.now();
    for (const uid of uids) {
      const rec = this.#agents.get(uid);
      if (rec && rec.connection?.id === conn.id) {
        this.#disconnect(rec, now);
        this.#log.info({ instanceUid: uid }, 'Agent connection closed');
      }
    }
    this.#changed();
  }

  /**
   * Installs a new desired state and pushes, over WebSocket, every config that changed; HTTP agents
   * get theirs in the response to their next poll. Level-triggered: recomputes every agent.
   */
  setDesiredState(state: DesiredState): void {
    this.#desired = state;
    this.refresh();
  }

  /**
   * Re-resolves every agent's identity (its pod may have been relabelled or deleted) and desired
   * config, and pushes what changed. Level-triggered: call it after any change of inputs.
   */
  refresh(): void {
    const end = this.#metrics.renderDuration.startTimer();
    const now = this.#opts.now();
    const outbox: { rec: AgentRecord; conn: AgentConnection; msg: ServerToAgentProps }[] = [];
    for (const rec of this.#agents.values()) {
      // One agent's failure never stops the others' fan-out.
      this.#isolated('refresh', rec, () => {
        const before = rec.desired?.hashHex ?? null;
        const packagesBefore = rec.packagesDesired?.allHashHex ?? null;
        if (rec.description) this.#resolveIdentity(rec);
        this.#computeDesired(rec);
        this.#judgeDrift(rec, now);
        this.#judgeComponents(rec);
        const configChanged = (rec.desired?.hashHex ?? null) !== before || rec.repushDue;
        const packagesChanged = (rec.packagesDesired?.allHashHex ?? null) !== packagesBefore;
        if (!configChanged && !packagesChanged) return;
        const conn = rec.connection;
        if (!rec.connected || !conn?.send) return;
        const msg: ServerToAgentProps = { instanceUid: rec.uidBytes, capabilities: SERVER_CAPABILITIES };
        const withConfig = configChanged && this.#maybeAddRemoteConfig(rec, conn, msg, now, 'debug');
        const withPackages = packagesChanged && this.#maybeAddPackages(rec, conn, msg, now);
        if (withConfig || withPackages) outbox.push({ rec, conn, msg });
      }, undefined);
    }
    end();
    if (outbox.length > 0) {
      this.#log.info({ pushed: outbox.length, configs: new Set(outbox.map((o) => o.rec.desired?.hashHex)).size }, 'Pushing remote config to connected agents');
      this.#sendAll(outbox);
    }
    this.#changed();
  }

  /**
   * Sends a fan-out: each distinct remote config is encoded once (agents' messages differ only in
   * their instance_uid and what else they carry), and the sends go out in batches with the event
   * loop free in between, so a push to 19,000 agents never stalls heartbeats. A message whose
   * connection was replaced meanwhile is dropped (the new connection gets what it needs when it
   * reports).
   */
  #sendAll(outbox: { rec: AgentRecord; conn: AgentConnection; msg: ServerToAgentProps }[]): void {
    const shared = new Map<string, Uint8Array>();
    const prepared = outbox.map(({ rec, conn, msg }) => {
      let tail: Uint8Array | undefined;
      const rc = msg.remoteConfig;
      if (rc && rec.desired) {
        const key = rec.desired.hashHex;
        tail = shared.get(key);
        if (!tail) shared.set(key, (tail = encodeServerToAgent({ remoteConfig: rc })));
        msg = { ...msg };
        delete msg.remoteConfig;
      }
      return { rec, conn, msg, tail };
    });
    const sendBatch = (from: number) => {
      const to = Math.min(prepared.length, from + SEND_BATCH);
      let ws = 0;
      for (let i = from; i < to; i++) {
        const p = prepared[i]!;
        if (p.rec.connection !== p.conn || !p.rec.connected) continue;
        this.#isolated('send', p.rec, () => p.conn.send!(p.msg, p.tail), undefined);
        ws++;
      }
      if (ws > 0) this.#counters.websocket.sent.inc(ws);
      if (to < prepared.length) setImmediate(() => sendBatch(to));
    };
    sendBatch(0);
  }

  /**
   * Offers connection settings again to connected WebSocket agents whose offer changed (e.g. a
   * rotated bearer token); HTTP agents get theirs with their next poll. Returns how many were sent.
   */
  reofferConnectionSettings(): number {
    // What offers are made of (credentials, telemetry destinations, CA) may have changed.
    this.#settingsEpoch++;
    let sent = 0;
    for (const rec of this.#agents.values()) {
      const conn = rec.connection;
      if (!rec.connected || !conn?.send) continue;
      const msg: ServerToAgentProps = { instanceUid: rec.uidBytes, capabilities: SERVER_CAPABILITIES };
      this.#isolated('reoffer', rec, () => this.#maybeAddConnectionSettings(rec, conn, msg, false), undefined);
      if (!msg.connectionSettings) continue;
      this.#isolated('send', rec, () => conn.send!(msg), undefined);
      this.#metrics.messagesSent.inc({ transport: conn.transport });
      sent++;
    }
    if (sent > 0) this.#log.info({ agents: sent }, 'Offered new connection settings');
    return sent;
  }

  /**
   * Closes the WebSocket connections of agents whose credential is no longer accepted (a revoked
   * token): they must reconnect, and authenticate again. HTTP agents authenticate on every request.
   */
  closeConnections(revoked: (conn: AgentConnection) => boolean, reason: string): number {
    let closed = 0;
    for (const rec of this.#agents.values()) {
      const conn = rec.connection;
      if (!rec.connected || !conn?.close || !revoked(conn)) continue;
      conn.close(1008, reason);
      closed++;
    }
    if (closed > 0) this.#log.warn({ agents: closed, reason }, 'Closed connections of agents whose credential was revoked');
    return closed;
  }

  /** Whether a connected agent still uses a credential that is no longer current (rotation pending). */
  credentialStale(rec: AgentRecord): boolean {
    return !!this.#credentials && rec.connected && this.#credentials.replacementFor(rec.connection?.authorization) !== undefined;
  }

  /**
   * Call periodically (at least twice per heartbeat interval). Marks HTTP agents that stopped polling
   * on time disconnected, ends the grace in which disconnected agents are counted as recently
   * disconnected, judges drift whose settle has passed (pushing a config once more where that is
   * due), and forgets long-disconnected agents.
   */
  sweep(): void {
    const now = this.#opts.now();
    let changed = false;
    const outbox: { rec: AgentRecord; conn: AgentConnection; msg: ServerToAgentProps }[] = [];
    for (const [uid, rec] of this.#agents) {
      if (rec.description === null && now - rec.firstSeen > this.#opts.unidentifiedTtlMs) {
        // Never completed a first report: not an agent we know (one that comes back is asked for its state).
        this.#agents.delete(uid);
        if (rec.connection) this.#detach(rec.connection.id, uid);
        changed = true;
      } else if (rec.connected && rec.transport === 'http' && now - rec.lastSeen > this.#opts.offlineAfterMs) {
        this.#disconnect(rec, now);
        this.#log.info({ instanceUid: uid }, 'HTTP agent stopped polling; marked disconnected');
        changed = true;
      } else if (!rec.connected && !rec.pastGrace && now - (rec.disconnectedAt ?? rec.lastSeen) > this.#opts.disconnectedGraceMs) {
        rec.pastGrace = true;
        changed = true;
      } else if (!rec.connected && now - rec.lastSeen > this.#opts.retainDisconnectedMs) {
        this.#agents.delete(uid);
        changed = true;
      } else if (rec.connected && rec.drift === null && !rec.effectiveConfigFresh && rec.reported.status === 'APPLIED' && rec.desired?.hashHex === rec.reported.hash) {
        this.#isolated('sweep', rec, () => {
          this.#judgeDrift(rec, now);
          if (rec.drift !== null || rec.repushDue) changed = true;
          const conn = rec.connection;
          if (rec.repushDue && conn?.send) {
            const msg: ServerToAgentProps = { instanceUid: rec.uidBytes, capabilities: SERVER_CAPABILITIES };
            if (this.#maybeAddRemoteConfig(rec, conn, msg, now)) outbox.push({ rec, conn, msg });
          }
        }, undefined);
      }
    }
    if (outbox.length > 0) this.#sendAll(outbox);
    if (changed) this.#changed();
  }

  /** Whether a disconnected agent is still within the grace in which it counts as recently disconnected. */
  recentlyDisconnected(rec: AgentRecord): boolean {
    return !rec.connected && !rec.pastGrace;
  }

  /** Refreshes the gauges derived from the registry (call before a metrics scrape). */
  updateGauges(): void {
    const connected = { websocket: 0, http: 0 };
    const states = { applied: 0, applying: 0, failed: 0, readonly: 0, none: 0 };
    let unbound = 0;
    const packages = { installed: 0, installing: 0, failed: 0, unsupported: 0, held: 0 };
    let recent = 0;
    for (const rec of this.#agents.values()) {
      if (!rec.connected) {
        if (!rec.pastGrace) recent++;
        continue;
      }
      connected[rec.transport]++;
      const ps = packageState(rec);
      if (ps) packages[ps.state]++;
      if (rec.identityError) unbound++;
      states[configState(rec)]++;
    }
    this.#metrics.agentsRecentlyDisconnected.set(recent);
    for (const [t, n] of Object.entries(connected)) this.#metrics.agentsConnected.set({ transport: t }, n);
    for (const [s, n] of Object.entries(states)) this.#metrics.configStatus.set({ state: s }, n);
    this.#metrics.agentsUnbound.set(unbound);
    for (const [s, n] of Object.entries(packages)) this.#metrics.packageStates.set({ state: s }, n);
    updateResourceGauges(this.#metrics, this.#agents.values());
  }

  /** Every known agent as the API shows it. */
  views(): AgentView[] {
    const out: AgentView[] = [];
    for (const r of this.#agents.values()) {
      const v = this.#isolated('view', r, () => this.view(r), null);
      if (v) out.push(v);
    }
    return out;
  }

  /** Runs one agent's part of a loop over the fleet; an error is logged (once a second) and that agent skipped. */
  #isolated<T>(where: string, rec: AgentRecord, fn: () => T, fallback: T): T {
    try {
      return fn();
    } catch (err) {
      this.#metrics.protocolErrors.inc({ transport: rec.transport, code: 'FB_INTERNAL_AGENT_ERROR' });
      const now = this.#opts.now();
      if (now - this.#isolatedLoggedAt >= 1000) {
        this.#isolatedLoggedAt = now;
        this.#log.error({ err, instanceUid: rec.uid, where }, 'Skipped one agent after an error; the others are unaffected');
      }
      return fallback;
    }
  }
  #isolatedLoggedAt = 0;

  /** One agent by canonical UUID or 32 hex digits; undefined when unknown or malformed. */
  viewOf(uid: string): AgentView | undefined {
    const bytes = parseUid(uid);
    const rec = bytes ? this.#agents.get(uidToString(bytes)) : undefined;
    return rec ? this.view(rec) : undefined;
  }

  view(rec: AgentRecord): AgentView {
    const desiredHash = rec.desired && rec.desired.issues.length === 0 ? rec.desired.hashHex : null;
    return {
      instanceUid: rec.uid,
      transport: rec.transport,
      connected: rec.connected,
      presence: rec.connected ? 'connected' : rec.pastGrace ? 'gone' : 'recently-disconnected',
      firstSeen: new Date(rec.firstSeen).toISOString(),
      lastSeen: new Date(rec.lastSeen).toISOString(),
      disconnectedAt: rec.disconnectedAt === null ? null : new Date(rec.disconnectedAt).toISOString(),
      sequenceNum: rec.lastSeq === null ? '0' : rec.lastSeq.toString(),
      capabilities: { raw: rec.capabilities, names: capabilityNames(rec.capabilities) },
      description: rec.description,
      labels: rec.labels,
      namespace: rec.namespace,
      pod: rec.pod,
      identityError: rec.identityError,
      // A credential is shown as it stands now: a rotation moves tokens between keys.
      verified: rec.verified && {
        ...rec.verified,
        ...(rec.verified.credential ? { credential: this.#credentials?.credentialOf?.(rec.connection?.authorization) ?? { ...rec.verified.credential, current: !this.credentialStale(rec) } } : {}),
      },
      health: rec.health,
      connectionSettings: rec.offeredSettings || rec.connectionSettingsStatus ? { offeredHash: rec.offeredSettings?.hash ?? null, reported: rec.connectionSettingsStatus } : null,
      effectiveConfig: rec.effectiveConfig,
      remoteConfig: {
        desiredHash,
        collectors: rec.desired?.collectors ?? [],
        reportedHash: rec.reported.hash,
        status: rec.reported.status,
        errorMessage: rec.reported.errorMessage,
        inSync: desiredHash !== null && rec.reported.hash === desiredHash && rec.reported.status === 'APPLIED',
        missingComponents: rec.missingComponents,
      },
      drift: rec.drift,
      packageStatuses: rec.packageStatuses,
      packages: this.#packagesView(rec),
      availableComponents: rec.availableComponents,
      customCapabilities: rec.customCapabilities,
      refusedRequests: Object.entries(rec.refused).map(([kind, r]) => ({ kind: kind as UnsupportedRequest, count: r.count, lastAt: new Date(r.at).toISOString(), message: r.message })),
      resources: rec.resources && { rssBytes: rec.resources.rssBytes, cpuSeconds: rec.resources.cpuSeconds, at: new Date(rec.resources.at).toISOString() },
    };
  }

  /** Keeps the newest process figures an agent's own metrics report (src/otlp); false for an unknown agent. */
  recordResources(uid: string, figures: ProcessFigures | null): boolean {
    const rec = this.#agents.get(uid);
    if (!rec) return false;
    if (figures) rec.resources = mergeFigures(rec.resources, figures);
    return true;
  }

  #newRecord(uid: string, uidBytes: Uint8Array, conn: AgentConnection, now: number): AgentRecord {
    return {
      uid,
      uidBytes: new Uint8Array(uidBytes),
      transport: conn.transport,
      connected: true,
      connection: conn,
      disconnectedAt: null,
      pastGrace: false,
      firstSeen: now,
      lastSeen: now,
      lastSeq: null,
      capabilities: 0,
      description: null,
      attributes: {},
      verified: null,
      labels: {},
      namespace: this.#opts.defaultNamespace,
      pod: null,
      identityError: null,
      health: null,
      effectiveConfig: null,
      reported: { hash: null, status: 'UNSET', errorMessage: '' },
      packageStatuses: null,
      packagesDesired: null,
      packagesOffered: null,
      availableComponents: null,
      componentsHash: null,
      componentsRequested: null,
      missingComponents: [],
      customCapabilities: [],
      desired: null,
      offered: null,
      failedHash: null,
      drift: null,
      statusAt: now,
      effectiveConfigFresh: false,
      syncedHash: null,
      repushedHash: null,
      repushDue: false,
      offeredSettings: null,
      noSettingsOffer: null,
      refused: {},
      holder: null,
      holderAuthorization: null,
      takeovers: { count: 0, since: now },
      sequenceStartedAt: now,
      settingsMayBeForgotten: true,
      connectionSettingsStatus: null,
      resources: null,
    };
  }

  #resolveIdentity(rec: AgentRecord): void {
    const id = this.#identity(rec);
    const before = rec.identityError;
    if (id.ok) {
      rec.namespace = id.namespace;
      rec.labels = id.labels;
      rec.pod = id.pod ?? null;
      rec.identityError = null;
    } else {
      rec.labels = {};
      rec.pod = null;
      rec.identityError = id.error;
      if (before !== id.error) this.#log.warn({ instanceUid: rec.uid, reason: id.error }, 'Agent gets no config: its identity is not accepted');
    }
  }

  #computeDesired(rec: AgentRecord): void {
    const next: RenderedConfig | null =
      this.#desired && rec.description && !rec.identityError ? this.#desired.forAgent(rec.namespace, rec.labels) : null;
    if ((next?.hashHex ?? null) !== (rec.desired?.hashHex ?? null)) {
      // A new desired config: the previous failure no longer stands in its way.
      rec.failedHash = null;
    }
    if (next && next.secretValues.length > 0) this.redactor.add(next.secretValues);
    rec.desired = next;
    const packages = this.#desired && rec.description && !rec.identityError ? this.#desired.packagesFor(rec.namespace, rec.labels) : null;
    if (packages && packages.secretValues.length > 0) this.redactor.add(packages.secretValues);
    rec.packagesDesired = packages;
  }

  /**
   * Adds `packages_available` (OpAMP §Packages) for an agent that accepts packages and has not
   * received the current offer: its statuses report another all_packages_hash. Offered once per
   * connection; again after offerRetryMs to an agent whose statuses still report another hash.
   * Nothing while the declaration has problems; nothing when no Collector declares packages.
   */
  #maybeAddPackages(rec: AgentRecord, conn: AgentConnection, msg: ServerToAgentProps, now: number): boolean {
    const pd = rec.packagesDesired;
    if (!pd || pd.issues.length > 0 || !hasBit(rec.capabilities, AgentCapabilities.AcceptsPackages)) return false;
    if ((rec.packageStatuses?.serverProvidedAllPackagesHash ?? '') === pd.allHashHex) return false;
    const connectionId = conn.send ? conn.id : null;
    const o = rec.packagesOffered;
    if (o && o.hash === pd.allHashHex && o.connectionId === connectionId) {
      // Without statuses there is no telling whether it got the offer: once per connection.
      if (!hasBit(rec.capabilities, AgentCapabilities.ReportsPackageStatuses) || now - o.at < this.#opts.offerRetryMs) return false;
    }
    // A served file is fetched from the OpAMP endpoint the agent reached, with the credential it connected
    // with (or the one that replaces it): the download is authenticated like the connection.
    const authorization = this.#credentials?.replacementFor(conn.authorization) ?? conn.authorization;
    const packages: NonNullable<NonNullable<ServerToAgentProps['packagesAvailable']>['packages']> = {};
    for (const p of pd.packages) {
      const headers = p.source.kind === 'url' ? p.source.headers.map((h) => ({ key: h.name, value: h.value })) : authorization ? [{ key: 'Authorization', value: authorization }] : [];
      packages[p.name] = {
        type: p.type === 'Addon' ? 1 : 0,
        version: p.version,
        hash: p.hash,
        file: {
          downloadUrl: offeredDownloadUrl(p, pd.namespace, conn.endpoint)!,
          contentHash: Buffer.from(p.sha256, 'hex'),
          ...(p.signature ? { signature: p.signature } : {}),
          ...(headers.length > 0 ? { headers: { headers } } : {}),
        },
      };
    }
    msg.packagesAvailable = { packages, allPackagesHash: pd.allHash };
    rec.packagesOffered = { hash: pd.allHashHex, at: now, connectionId };
    this.#metrics.packageOffers.inc({ transport: conn.transport });
    this.#log.info({ instanceUid: rec.uid, allPackagesHash: pd.allHashHex, packages: pd.packages.map((p) => `${p.name || '(top-level)'} ${p.version}`) }, 'Offered packages');
    return true;
  }

  #packagesView(rec: AgentRecord): AgentPackagesView | null {
    const pd = rec.packagesDesired;
    if (!pd) return null;
    const st = packageState(rec)!;
    const endpoint = rec.connection?.endpoint;
    return {
      allPackagesHash: pd.allHashHex,
      collectors: pd.collectors,
      offered: pd.packages.map((p) => ({
        name: p.name,
        version: p.version,
        sha256: p.sha256,
        downloadUrl: offeredDownloadUrl(p, pd.namespace, endpoint),
      })),
      state: st.state,
      message: st.message,
      issues: pd.issues,
    };
  }

  /** A desired config's text as agents' reports of it are stored (redacted), once per config. */
  #desiredText(d: RenderedConfig): string {
    let t = this.#desiredTexts.get(d.hashHex);
    if (t === undefined) {
      if (this.#desiredTexts.size > 100) this.#desiredTexts.clear();
      this.#desiredTexts.set(d.hashHex, (t = this.#intern(this.redactor.redact(d.body.toString('utf8')))));
    }
    return t;
  }

  /** The one stored copy of `text` (a fleet reports a few distinct effective configs, each thousands of times). */
  #intern(text: string): string {
    const known = this.#texts.get(text);
    if (known !== undefined) return known;
    // Bounded in entries and bytes (an agent may report a new text with every message).
    if (this.#texts.size >= 2000 || this.#textBytes + text.length > TEXT_TABLE_CHARS) {
      this.#texts.clear();
      this.#textBytes = 0;
    }
    this.#texts.set(text, text);
    this.#textBytes += text.length;
    return text;
  }

  /**
   * Drift is judged only for an agent that says it applied the desired config, on an effective
   * config that belongs to that report: one that came with or after it, or, failing that, the one it
   * has once a short settle has passed (some agents report the effective config before the status).
   * Until then drift is unknown (null), never a moment's false alarm. An agent that reports APPLIED
   * but was never seen running the config is sent it once more (the OpAMP Supervisor can overwrite a
   * config pushed while it starts with its initial one and still say APPLIED); if it still does not
   * run it, it has drifted.
   */
  #judgeDrift(rec: AgentRecord, now: number): void {
    const d = rec.desired;
    const files = rec.effectiveConfig;
    if (!d || d.issues.length > 0 || rec.reported.hash !== d.hashHex || rec.reported.status !== 'APPLIED' || !files) {
      rec.drift = null;
      return;
    }
    if (!rec.effectiveConfigFresh && now - rec.statusAt < this.#opts.driftSettleMs) {
      rec.drift = null;
      return;
    }
    const body = files['']?.body ?? Object.values(files)[0]?.body;
    // Parsing a large config would hold the event loop (about 1 ms per KiB): not judged.
    if (body === undefined || body.length > this.#opts.driftJudgeMaxBytes) {
      rec.drift = null;
      return;
    }
    const result = this.#driftVerdict(d, body);
    if (result && !result.drifted) rec.syncedHash = d.hashHex;
    if (result?.drifted && rec.syncedHash !== d.hashHex && rec.repushedHash !== d.hashHex && rec.connected) {
      // Never seen running it: push it once more (with the next answer, or now over WebSocket)
      // before calling it drift.
      rec.repushedHash = d.hashHex;
      rec.repushDue = true;
      rec.effectiveConfigFresh = false;
      rec.statusAt = now;
      rec.drift = null;
      this.#metrics.configRepushes.inc();
      this.#log.warn({ instanceUid: rec.uid, configHash: d.hashHex, differences: result.differences }, 'Agent reported the config APPLIED but does not run it; pushing it once more');
      return;
    }
    if (result?.drifted && !rec.drift?.drifted) this.#log.warn({ instanceUid: rec.uid, differences: result.differences }, 'Agent runs a config that differs from the one it applied');
    rec.drift = result;
  }

  /** Agents of one config report the same effective config: judged once per (desired, reported) pair. */
  #driftVerdict(d: RenderedConfig, body: string): { drifted: boolean; differences: string[] } | null {
    let byBody = this.#driftResults.get(d.hashHex);
    if (!byBody) {
      if (this.#driftResults.size > 100) this.#driftResults.clear();
      this.#driftResults.set(d.hashHex, (byBody = new Map()));
    }
    let result = byBody.get(body);
    if (result === undefined) {
      const effective = parseConfigBody(body);
      let desired = this.#desiredParsed.get(d.hashHex);
      if (desired === undefined) {
        // Compared as shown: secret values in both configs are [REDACTED], so differences never quote them.
        desired = parseConfigBody(this.#desiredText(d));
        if (this.#desiredParsed.size > 1000) this.#desiredParsed.clear();
        this.#desiredParsed.set(d.hashHex, desired);
      }
      if (effective === null || desired === null) result = null;
      else {
        const differences = configDifferences(desired, effective);
        result = { drifted: differences.length > 0, differences };
      }
      if (byBody.size > 1000) byBody.clear();
      byBody.set(body, result);
    }
    return result;
  }

  #recordConfigStatus(rec: AgentRecord, s: NonNullable<AgentToServer['remoteConfigStatus']>, now: number): void {
    const hash = s.lastRemoteConfigHash && s.lastRemoteConfigHash.length > 0 ? Buffer.from(s.lastRemoteConfigHash).toString('hex') : null;
    const status: RemoteConfigState = RemoteConfigStatusNames[s.status ?? 0] ?? 'UNSET';
    const wasFailed = rec.reported.status === 'FAILED' && rec.reported.hash === hash;
    if (hash !== rec.reported.hash || status !== rec.reported.status) {
      // A new status: the effective config known so far may be of the config before it.
      rec.statusAt = now;
      rec.effectiveConfigFresh = false;
    }
    rec.reported = { hash, status, errorMessage: boundText(this.redactor.redact(s.errorMessage ?? ''), this.#bounds) };
    // The agent runs the desired config after all (a FAILED report was a forgery or is old news).
    if (status === 'APPLIED' && hash !== null && hash === rec.failedHash) rec.failedHash = null;
    if (status === 'FAILED' && hash !== null) {
      // Never re-push automatically a config the agent reported FAILED.
      if (rec.desired && hash === rec.desired.hashHex) rec.failedHash = hash;
      if (!wasFailed) {
        this.#metrics.configApplyFailures.inc();
        this.#log.warn({ instanceUid: rec.uid, configHash: hash, error: rec.reported.errorMessage }, 'Agent failed to apply remote config');
      }
    }
  }

  /** Adds `remote_config` when the agent accepts config, lacks the desired one, and it is not a known failure. */
  #maybeAddRemoteConfig(rec: AgentRecord, conn: AgentConnection, msg: ServerToAgentProps, now: number, level: 'info' | 'debug' = 'info'): boolean {
    const d = rec.desired;
    if (!d || d.issues.length > 0) return false;
    if (!hasBit(rec.capabilities, AgentCapabilities.AcceptsRemoteConfig)) return false;
    if (rec.repushDue && rec.repushedHash === d.hashHex) {
      rec.repushDue = false;
    } else if (rec.reported.hash === d.hashHex) return false;
    else if (!this.#offerDue(rec, d, conn, now)) return false;
    msg.remoteConfig = {
      config: { configMap: { '': { body: d.body, contentType: d.contentType } } },
      configHash: d.hash,
    };
    rec.offered = { hash: d.hashHex, at: now, connectionId: conn.send ? conn.id : null };
    this.#metrics.configPushes.inc({ transport: conn.transport });
    if (this.#log.isLevelEnabled(level)) this.#log[level]({ instanceUid: rec.uid, configHash: d.hashHex, collectors: d.collectors }, 'Sent remote config');
    if (hasBit(rec.capabilities, AgentCapabilities.ReportsAvailableComponents) && !componentsKnown(rec)) {
      this.#log.warn({ instanceUid: rec.uid, configHash: d.hashHex }, 'Sent remote config without checking components: the agent did not send the list it was asked for');
    }
    return true;
  }

  /**
   * Whether the desired config should go to an agent that does not report it: not a known failure,
   * nothing missing, and not already sent to it. Over WebSocket a config goes once per connection
   * (a connection delivers what it is sent; a slow apply is no reason to send it again). Over HTTP,
   * where an answer can be lost, again after offerRetryMs. A restarted agent gets it at once (its
   * offers are forgotten when its sequence starts again).
   */
  #offerDue(rec: AgentRecord, d: RenderedConfig, conn: AgentConnection, now: number): boolean {
    if (rec.failedHash === d.hashHex) return false;
    // A config naming component types the agent lacks would only fail (or stop its collector).
    if (rec.missingComponents.length > 0) return false;
    if (this.#awaitingComponents(rec, now)) return false;
    const connectionId = conn.send ? conn.id : null;
    const o = rec.offered;
    if (!o || o.hash !== d.hashHex || o.connectionId !== connectionId) return true;
    return connectionId === null && now - o.at >= this.#opts.offerRetryMs;
  }

  /**
   * Stores what the agent says about its components. A message with only the hash (what opamp-go
   * sends on connect and in full state) keeps the stored list when the hash is the same; a new
   * hash makes the stored list stale until the agent sends the new one.
   */
  #recordComponents(rec: AgentRecord, a: NonNullable<AgentToServer['availableComponents']>): void {
    const view = availableComponentsView(a);
    rec.componentsHash = view.hash;
    // proto3 maps have no presence: an empty map is "only the hash".
    if (Object.keys(view.components).length > 0) {
      rec.availableComponents = view;
      rec.componentsRequested = null;
    }
  }

  /**
   * Sets ServerToAgent flag ReportAvailableComponents when the agent has the capability and the
   * server lacks the list for the hash it reports: once per hash and connection, and again only
   * after offerRetryMs if the agent has not answered (not on every message).
   */
  #maybeRequestComponents(rec: AgentRecord, conn: AgentConnection, msg: ServerToAgentProps, now: number): void {
    if (!hasBit(rec.capabilities, AgentCapabilities.ReportsAvailableComponents) || componentsKnown(rec)) return;
    const hash = rec.componentsHash ?? '';
    const connectionId = conn.send ? conn.id : null;
    const r = rec.componentsRequested;
    if (r && r.hash === hash && r.connectionId === connectionId && now - r.at < this.#opts.offerRetryMs) return;
    msg.flags = toNumber(msg.flags) | ServerToAgentFlags.ReportAvailableComponents;
    rec.componentsRequested = { hash, firstAt: r && r.hash === hash ? r.firstAt : now, at: now, connectionId };
    this.#log.debug({ instanceUid: rec.uid, componentsHash: hash }, 'Asked the agent for its available components');
  }

  /**
   * True while a config is held for an agent that was asked for its components and has not sent
   * them yet (bounded by offerRetryMs from the first request for this hash; then it is treated
   * like an agent that does not report components).
   */
  #awaitingComponents(rec: AgentRecord, now: number): boolean {
    if (!hasBit(rec.capabilities, AgentCapabilities.ReportsAvailableComponents) || componentsKnown(rec)) return false;
    const r = rec.componentsRequested;
    return r !== null && r.hash === (rec.componentsHash ?? '') && now - r.firstAt < this.#opts.offerRetryMs;
  }

  /**
   * Which component types of the desired config the agent lacks, judged only against the list
   * for the hash it reports now, for agents that accept remote config and do not already run it.
   */
  #judgeComponents(rec: AgentRecord): void {
    const d = rec.desired;
    const list = rec.availableComponents;
    let missing: string[] = [];
    if (
      d &&
      d.issues.length === 0 &&
      list &&
      componentsKnown(rec) &&
      hasBit(rec.capabilities, AgentCapabilities.AcceptsRemoteConfig) &&
      !(rec.reported.hash === d.hashHex && rec.reported.status === 'APPLIED')
    ) {
      missing = missingComponents(this.#componentsOf(d), list.components) ?? [];
    }
    const before = rec.missingComponents;
    if (missing.join('\n') !== before.join('\n')) {
      if (missing.length > 0) {
        this.#log.warn({ instanceUid: rec.uid, configHash: d?.hashHex, collectors: d?.collectors, missing }, 'Remote config not sent: the agent lacks components it uses');
      } else {
        this.#log.info({ instanceUid: rec.uid, configHash: d?.hashHex ?? null }, 'The agent no longer lacks components of its config');
      }
    }
    rec.missingComponents = missing;
  }

  #componentsOf(d: RenderedConfig): string[] {
    let used = this.#usedComponents.get(d.hashHex);
    if (used === undefined) {
      used = componentsUsed(parseConfigBody(d.body.toString('utf8')));
      if (this.#usedComponents.size > 1000) this.#usedComponents.clear();
      this.#usedComponents.set(d.hashHex, used);
    }
    return used;
  }

  /**
   * ConnectionSettingsOffers, only when they change what the agent has: the `opamp` part (the
   * connection: endpoint, the Authorization it should use, heartbeat interval, CA) to agents that
   * accept it when a newer credential is current or the heartbeat interval is not the OpAMP default
   * (30 s) it already runs with; own-telemetry destinations to agents that report that signal.
   * opamp-go-based agents (and the Supervisor) restart their OpAMP client on every `opamp` offer, so
   * one that changes nothing costs a reconnect and a second round of everything.
   *
   * Once offered, an offer is made again only when its content changes (credentials, telemetry or
   * heartbeat: the settings epoch), when the agent reports another settings hash, or when it restarted
   * and lost its state; and not again within offerRetryMs of the last (an agent that restarts its
   * client on every offer would otherwise loop). Every `opamp` part is complete (endpoint, headers,
   * a non-zero heartbeat): a partial one resets fields in Go clients and the Supervisor.
   */
  #maybeAddConnectionSettings(rec: AgentRecord, conn: AgentConnection, msg: ServerToAgentProps, agentMayHaveForgotten: boolean, now = this.#opts.now(), holdTelemetry = false): boolean {
    // Hot path (every heartbeat): nothing can have changed for an agent already judged under the
    // current settings epoch, unless it may have forgotten them or reports another hash.
    const last = rec.offeredSettings;
    const reported = rec.connectionSettingsStatus?.hash ?? null;
    if (!agentMayHaveForgotten && last && last.epoch === this.#settingsEpoch && (reported === null || reported === last.hash)) return true;
    const none = rec.noSettingsOffer;
    if (!agentMayHaveForgotten && !last && none && none.epoch === this.#settingsEpoch && none.capabilities === rec.capabilities) return true;

    // The settings as they should be: an `opamp` part for agents that accept one, and a destination
    // for each own signal the agent reports. The hash names all of them, sent or not.
    const parts: unknown[] = [];
    const offers: NonNullable<ServerToAgentProps['connectionSettings']> = {};
    let opamp: { part: NonNullable<ServerToAgentProps['connectionSettings']>['opamp']; hash: string; changesCredential: boolean } | null = null;
    if (hasBit(rec.capabilities, AgentCapabilities.AcceptsOpAMPConnectionSettings)) {
      // The agent keeps the credential it presented, unless a newer one is current (rotation).
      const replacement = this.#credentials?.replacementFor(conn.authorization);
      const authorization = replacement ?? conn.authorization;
      const headers = authorization ? [{ key: 'Authorization', value: authorization }] : [];
      const ca = this.#serverCa();
      const key = ['opamp', conn.endpoint, headers, this.#opts.heartbeatIntervalSeconds, ca ?? null];
      parts.push(key);
      opamp = {
        part: {
          destinationEndpoint: conn.endpoint,
          headers: { headers },
          heartbeatIntervalSeconds: this.#opts.heartbeatIntervalSeconds,
          ...(ca ? { certificate: { caCert: Buffer.from(ca, 'utf8') } } : {}),
        },
        hash: createHash('sha256').update(JSON.stringify(key)).digest('hex'),
        changesCredential: replacement !== undefined,
      };
    }
    const own = this.#ownTelemetry(conn);
    for (const [signal, bit, field] of OWN_SIGNALS) {
      const d = own[signal];
      if (!d || !hasBit(rec.capabilities, bit)) continue;
      const headers = Object.entries(d.headers).sort(([a], [b]) => (a < b ? -1 : 1)).map(([key, value]) => ({ key, value }));
      offers[field] = { destinationEndpoint: d.endpoint, headers: { headers } };
      parts.push([signal, d.endpoint, headers]);
    }
    const telemetry = Object.keys(offers).length > 0;
    // Own-telemetry destinations wait while the agent starts: the OpAMP Supervisor connects before it
    // composes its first collector config, and an offer handled meanwhile can be overwritten
    // (supervisor.go Start: startOpAMP before loadAndWriteInitialMergedConfig; composeMergedConfig
    // takes no lock), and it reports no settings status that would show the loss. Its first healthy
    // report comes from the collector, after start-up. Judged again with the next message.
    if (telemetry && holdTelemetry) return false;
    const hash = createHash('sha256').update(JSON.stringify(parts)).digest();
    const hashHex = hash.toString('hex');

    // What the agent reports running is the surest word (after a bridge restart too; FAILED included:
    // an offer the agent failed is not made again automatically); else what it was offered last,
    // unless it lost it.
    if (reported === hashHex || (last?.hash === hashHex && reported === null && !agentMayHaveForgotten)) {
      rec.offeredSettings = { hash: hashHex, opamp: opamp?.hash ?? null, at: last?.at ?? 0, epoch: this.#settingsEpoch };
      return true;
    }
    const disagrees = reported !== null;
    // The `opamp` part goes when it changes what the agent runs: the part offered last, or, never
    // offered, what it connected with and the OpAMP default heartbeat.
    let opampHash = last?.opamp ?? null;
    if (opamp) {
      const changes = opampHash !== null ? opampHash !== opamp.hash : opamp.changesCredential || this.#opts.heartbeatIntervalSeconds !== OPAMP_DEFAULT_HEARTBEAT_SECONDS;
      if (changes || ((agentMayHaveForgotten || disagrees) && opampHash !== null)) {
        offers.opamp = opamp.part;
        opampHash = opamp.hash;
      }
    }
    if (!offers.opamp && !telemetry) {
      if (!last) rec.noSettingsOffer = { epoch: this.#settingsEpoch, capabilities: rec.capabilities };
      else rec.offeredSettings = { ...last, epoch: this.#settingsEpoch };
      return true;
    }
    // Never the same offer twice within offerRetryMs: an agent that restarts its client on each
    // offer (supervisor.go onOpampConnectionSettings; opamp-go does not compare hashes) would loop.
    if (last?.hash === hashHex && now - last.at < this.#opts.offerRetryMs) return true;
    msg.connectionSettings = { hash, ...offers };
    rec.offeredSettings = { hash: hashHex, opamp: opampHash, at: now, epoch: this.#settingsEpoch };
    return true;
  }

  /**
   * Whether a remote config sent to the agent is still being applied: not yet reported APPLIED or
   * FAILED (held for at most offerRetryMs). APPLYING counts as in flight: the Supervisor restarts its
   * collector for an own-telemetry offer too, and a second restart within its config-apply timeout
   * can end in FAILED "Config apply timeout exceeded" for a config it runs.
   */
  #configInFlight(rec: AgentRecord, now: number): boolean {
    const o = rec.offered;
    const d = rec.desired;
    if (!o || !d || o.hash !== d.hashHex || now - o.at >= this.#opts.offerRetryMs) return false;
    return !(rec.reported.hash === d.hashHex && (rec.reported.status === 'APPLIED' || rec.reported.status === 'FAILED'));
  }

  /** An agent that reports health and has not reported healthy since its sequence (re)started (at most offerRetryMs). */
  #startingUp(rec: AgentRecord, now: number): boolean {
    return hasBit(rec.capabilities, AgentCapabilities.ReportsHealth) && rec.health?.healthy !== true && now - rec.sequenceStartedAt < this.#opts.offerRetryMs;
  }

  /** A restarted agent that reports no remote config at all has lost what it was offered before. */
  #lostState(rec: AgentRecord): boolean {
    return rec.reported.hash === null && rec.reported.status === 'UNSET';
  }

  /**
   * Custom messages are refused explicitly, never silently: this server serves no custom
   * capability, so a custom message is answered with the server's custom capabilities (none: OpAMP
   * §CustomCapabilities), counted and logged once per connection. An agent that announces custom
   * capabilities is told the same.
   */
  #refuseCustomMessages(rec: AgentRecord, conn: AgentConnection, msg: AgentToServer, response: ServerToAgentProps, now: number): void {
    if (msg.customMessage != null) {
      const capability = msg.customMessage.capability ?? '';
      const message = `custom message of capability "${capability}" (type "${msg.customMessage.type ?? ''}") ignored: this server serves no custom capabilities`;
      response.customCapabilities = { capabilities: [] };
      this.#refused(rec, conn, 'custom_message', message, now);
    } else if (msg.customCapabilities != null && (msg.customCapabilities.capabilities ?? []).length > 0) {
      response.customCapabilities = { capabilities: [] };
    }
  }

  #refused(rec: AgentRecord, conn: AgentConnection, kind: UnsupportedRequest, message: string, now: number): void {
    this.#metrics.unsupportedRequests.inc({ kind });
    this.#metrics.protocolErrors.inc({ transport: conn.transport, code: 'FB_OPAMP_UNSUPPORTED_REQUEST' });
    const r = rec.refused[kind];
    const connectionId = conn.send ? conn.id : null;
    const logIt = !r || r.connectionId !== connectionId || now - r.at > this.#opts.offerRetryMs;
    rec.refused[kind] = { count: (r?.count ?? 0) + 1, at: logIt ? now : r!.at, message, connectionId };
    if (logIt) this.#log.warn({ instanceUid: rec.uid, code: 'FB_OPAMP_UNSUPPORTED_REQUEST', kind, transport: conn.transport }, `Refused an agent request: ${message}`);
  }

  #attach(connId: number, uid: string): void {
    let set = this.#byConnection.get(connId);
    if (!set) this.#byConnection.set(connId, (set = new Set()));
    set.add(uid);
  }

  #detach(connId: number, uid: string): void {
    this.#byConnection.get(connId)?.delete(uid);
  }

  #disconnect(rec: AgentRecord, now: number): void {
    if (rec.connection) this.#detach(rec.connection.id, rec.uid);
    if (rec.connected) rec.disconnectedAt = now;
    rec.connected = false;
    rec.connection = null;
    rec.lastSeen = Math.max(rec.lastSeen, now);
    // The offer was on a connection that is gone: a reconnect may need it again.
    rec.offered = null;
    rec.packagesOffered = null;
  }
}

/** Where an agent stands against its desired config. */
export function configState(rec: AgentRecord): 'applied' | 'applying' | 'failed' | 'readonly' | 'none' {
  const d = rec.desired;
  if (!d) return 'none';
  // An agent that does not accept remote config (e.g. a collector with only the opamp extension)
  // is shown, with its health, but never counted as applying or failed.
  if (!hasBit(rec.capabilities, AgentCapabilities.AcceptsRemoteConfig)) return 'readonly';
  if (d.issues.length > 0) return 'failed';
  if (rec.failedHash === d.hashHex || (rec.reported.hash === d.hashHex && rec.reported.status === 'FAILED')) return 'failed';
  if (rec.missingComponents.length > 0) return 'failed';
  if (rec.reported.hash === d.hashHex && rec.reported.status === 'APPLIED') return 'applied';
  return 'applying';
}

/** Why an agent counts as failed (configState 'failed'), or null when it does not. */
export function configFailure(rec: AgentRecord): { reason: 'InvalidConfig' | 'MissingComponents' | 'ApplyFailed'; message: string } | null {
  const d = rec.desired;
  if (!d || configState(rec) !== 'failed') return null;
  if (d.issues.length > 0) return { reason: 'InvalidConfig', message: `merged config is invalid: ${d.issues.join('; ')}` };
  // Said first even when the agent also reported FAILED for it: it says what to fix.
  if (rec.missingComponents.length > 0) return { reason: 'MissingComponents', message: missingComponentsMessage(rec.missingComponents) };
  return { reason: 'ApplyFailed', message: rec.reported.errorMessage || 'apply failed' };
}

/** Whether a message holds every status field the agent's capabilities say it reports. */
function carriesFullState(msg: AgentToServer): boolean {
  const caps = toNumber(msg.capabilities);
  if (hasBit(caps, AgentCapabilities.ReportsRemoteConfig) && msg.remoteConfigStatus == null) return false;
  if (hasBit(caps, AgentCapabilities.ReportsEffectiveConfig) && msg.effectiveConfig == null) return false;
  if (hasBit(caps, AgentCapabilities.ReportsHealth) && msg.health == null) return false;
  if (hasBit(caps, AgentCapabilities.ReportsPackageStatuses) && msg.packageStatuses == null) return false;
  if (hasBit(caps, AgentCapabilities.ReportsAvailableComponents) && msg.availableComponents == null) return false;
  return true;
}

/** Whether the stored component list is the one for the hash the agent reports now. */
export function componentsKnown(rec: AgentRecord): boolean {
  return rec.availableComponents !== null && rec.availableComponents.hash === rec.componentsHash;
}

function errorResponse(uid: Uint8Array, type: number, message: string): ServerToAgentProps {
  return { instanceUid: uid, errorResponse: { type, errorMessage: message } };
}

const PACKAGE_STATUS_NAMES = ['Installed', 'InstallPending', 'Installing', 'InstallFailed', 'Downloading'] as const;

function packageStatusesView(p: NonNullable<AgentToServer['packageStatuses']>, clean: (s: string) => string): PackageStatusesView {
  const hex = (b: Uint8Array | null | undefined) => (b && b.length > 0 ? Buffer.from(b).toString('hex') : '');
  const packages: PackageStatusesView['packages'] = {};
  for (const [name, s] of Object.entries(p.packages ?? {})) {
    const dd = s.downloadDetails;
    packages[name] = {
      agentHasVersion: s.agentHasVersion ?? '',
      agentHasHash: hex(s.agentHasHash),
      serverOfferedVersion: s.serverOfferedVersion ?? '',
      serverOfferedHash: hex(s.serverOfferedHash),
      status: PACKAGE_STATUS_NAMES[s.status ?? 0] ?? 'InstallPending',
      errorMessage: clean(s.errorMessage ?? ''),
      downloadPercent: dd ? (dd.downloadPercent ?? 0) : null,
      downloadBytesPerSecond: dd ? (dd.downloadBytesPerSecond ?? 0) : null,
    };
  }
  return { serverProvidedAllPackagesHash: hex(p.serverProvidedAllPackagesHash), packages, errorMessage: clean(p.errorMessage ?? '') };
}

type ComponentDetails = { metadata?: Parameters<typeof keyValuesToObject>[0]; subComponentMap?: Record<string, ComponentDetails> | null };

function componentsView(map: Record<string, ComponentDetails> | null | undefined): Record<string, ComponentDetailsView> {
  const out: Record<string, ComponentDetailsView> = {};
  for (const [k, v] of Object.entries(map ?? {})) {
    out[k] = { metadata: keyValuesToObject(v.metadata), components: componentsView(v.subComponentMap) };
  }
  return out;
}

function availableComponentsView(a: NonNullable<AgentToServer['availableComponents']>): AvailableComponentsView {
  return {
    hash: a.hash ? Buffer.from(a.hash).toString('hex') : '',
    components: componentsView(a.components as Record<string, ComponentDetails> | null | undefined),
  };
}

/** How often to sweep the registry: four times per heartbeat interval, at most every 5 s, at least every 250 ms. */
export function sweepEvery(heartbeatIntervalSeconds: number): number {
  return Math.min(5000, Math.max(250, heartbeatIntervalSeconds * 250));
}
