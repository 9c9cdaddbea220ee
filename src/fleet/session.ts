/**
 * The OpAMP session rules (ADR 0001, 0007): what to store from each AgentToServer and in which
 * order, restarts, uid holding and admission, connect and disconnect, requests we do not serve,
 * and the sweep. Adds and removes records, and writes their `session` and `description` groups;
 * every other group is written by its concern's module, called from here.
 */
import {
  AgentCapabilities,
  AgentToServerFlags,
  SERVER_CAPABILITIES,
  ServerErrorResponseType,
  ServerToAgentFlags,
  hasBit,
  toBigInt,
  toNumber,
  type AgentToServer,
  type ServerToAgentProps,
} from '../opamp/messages.js';
import { newUuidV7, sameBytes, uidToString } from '../opamp/uid.js';
import { describe, healthView, labelsOf, newRecord, type AgentConnection, type AgentRecord, type UnsupportedRequest } from './agent.js';
import { CLONE_WINDOW_MS, NewAgentBuckets, evictable, holderOf, isClone, mayHold } from './admission.js';
import { boundText, exceededBound } from './bounds.js';
import type { ComponentNegotiation } from './components.js';
import type { ConnectionSettings } from './connection-settings.js';
import type { FleetContext } from './context.js';
import { sendAll, type Outbox } from './fanout.js';
import { resolveIdentity, setVerified } from './identity.js';
import type { PackageOffers } from './packages.js';
import { configInFlight, lostState, type RemoteConfig } from './remote-config.js';
import { availableComponentsView, packageStatusesView } from './views.js';

/** The concerns a message is handed to. */
export interface Concerns {
  config: RemoteConfig;
  packages: PackageOffers;
  settings: ConnectionSettings;
  components: ComponentNegotiation;
}

export class Sessions {
  /** uids seen on each live WebSocket connection, to forget them when it closes (OpAMP §AgentDisconnect). */
  readonly #byConnection = new Map<number, Set<string>>();
  readonly #buckets: NewAgentBuckets;

  constructor(
    private readonly ctx: FleetContext,
    private readonly c: Concerns,
    private readonly changed: () => void,
  ) {
    this.#buckets = new NewAgentBuckets(ctx);
  }

  /** Who the agent is and what it should run (after its description, identity or presence changed). */
  resolve(rec: AgentRecord, identity: boolean): void {
    if (identity) resolveIdentity(this.ctx, rec);
    this.c.config.computeDesired(rec);
    this.c.packages.computeDesired(rec);
  }

  /**
   * Handles one AgentToServer and returns the ServerToAgent to answer it with (OpAMP: the server
   * answers every message). For WebSocket the caller sends it; for HTTP it is the response body.
   */
  handleMessage(conn: AgentConnection, msg: AgentToServer): ServerToAgentProps {
    const { ctx, c } = this;
    const now = ctx.now();
    ctx.counters[conn.transport].received.inc();
    const uidBytes = msg.instanceUid ?? new Uint8Array();
    if (uidBytes.length !== 16) {
      ctx.metrics.protocolErrors.inc({ transport: conn.transport, code: 'FB_OPAMP_BAD_INSTANCE_UID' });
      ctx.log.warn({ transport: conn.transport, uidLength: uidBytes.length }, 'Refused message with an instance_uid that is not 16 bytes');
      return { instanceUid: uidBytes, errorResponse: { type: ServerErrorResponseType.BadRequest, errorMessage: `instance_uid must be 16 bytes, got ${uidBytes.length}` } };
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
    const over = exceededBound(msg, ctx.bounds);
    if (over) return this.#refuse(conn, uidBytes, uid, 'FB_OPAMP_AGENT_LIMIT', ServerErrorResponseType.BadRequest, `message refused: ${over}`);
    let rec = ctx.agents.get(uid);
    const seq = toBigInt(msg.sequenceNum);
    const flags = toNumber(msg.flags);
    const response: ServerToAgentProps = { instanceUid: uidBytes, capabilities: SERVER_CAPABILITIES };
    let fullState = false;
    /** The agent's sequence started again on a record we know: its process (or its OpAMP client) restarted. */
    let restarted = false;
    const claimant = holderOf(conn);

    if (rec && !mayHold(ctx, rec, conn, claimant, now)) {
      // Another identity claims a uid that is held: refused, the holder untouched.
      return this.#refuse(conn, uidBytes, uid, 'FB_OPAMP_UID_HELD', ServerErrorResponseType.BadRequest, `instance_uid ${uid} is held by another identity; use your own (or set RequestInstanceUid)`);
    }
    let recordUid = uidBytes;
    if (rec && isClone(rec, conn, flags, now)) {
      // Two live connections keep taking one uid from each other (cloned agents): the newcomer gets
      // a uid of its own (OpAMP agent_identification) instead of closing the other again.
      recordUid = newUuidV7(now);
      const fresh = uidToString(recordUid);
      response.agentIdentification = { newInstanceUid: recordUid };
      ctx.metrics.protocolErrors.inc({ transport: conn.transport, code: 'FB_OPAMP_UID_CLONED' });
      ctx.log.warn({ instanceUid: uid, newInstanceUid: fresh, connection: conn.id, code: 'FB_OPAMP_UID_CLONED' }, 'Two live connections keep claiming one instance_uid (cloned agents): gave the newer one a new uid');
      uid = fresh;
      rec = undefined;
    }
    const isNew = !rec;

    if (!rec) {
      if (!this.#buckets.admit(conn, now)) {
        return this.#refuse(conn, uidBytes, uid, 'FB_OPAMP_OVERLOADED', ServerErrorResponseType.Unavailable, 'too many new agents from this address; retry later', 10);
      }
      if (ctx.agents.size >= ctx.settings.maxAgents) {
        // A full registry makes room by forgetting the longest-disconnected record.
        const evict = evictable(ctx);
        if (!evict) return this.#refuse(conn, uidBytes, uid, 'FB_OPAMP_OVERLOADED', ServerErrorResponseType.Unavailable, `this server serves at most ${ctx.settings.maxAgents} agents`, 30);
        ctx.agents.delete(evict.uid);
      }
      rec = newRecord(uid, recordUid, conn, now, ctx.settings.defaultNamespace);
      ctx.agents.set(uid, rec);
      // OpAMP §sequence_num: a server with no state for the agent (new, or we restarted) asks for
      // full state, unless this is plainly a fresh agent's first report, or the message already
      // carries everything full state would (an agent that re-sends its state when it reconnects:
      // asking again would double a reconnect storm after a restart).
      fullState = !(msg.agentDescription != null && (seq === 0n || carriesFullState(msg)));
      ctx.log.info({ instanceUid: uid, transport: conn.transport }, 'Agent connected');
    } else {
      const s = rec.session;
      if (s.connection && s.connection.id !== conn.id && s.connected && !hasBit(flags, AgentToServerFlags.RequestInstanceUid)) {
        // Two live connections claim one instance_uid: the newest wins (an agent that reconnected
        // before its old connection was seen to close).
        const old = s.connection;
        this.#detach(old.id, uid);
        if (old.close) {
          if (now - s.takeovers.since > CLONE_WINDOW_MS) s.takeovers = { count: 0, since: now };
          s.takeovers.count++;
          ctx.log.warn({ instanceUid: uid, oldConnection: old.id, newConnection: conn.id }, 'Closed older connection of an agent that connected again');
          old.close(1008, 'replaced by a newer connection for this instance_uid');
        }
      }
      fullState = s.lastSeq === null || seq !== s.lastSeq + 1n;
      // A sequence that starts again (0, or below the last one; a retried copy repeats the last) is a
      // new client: what was offered to the old one may never have been acted on.
      restarted = s.lastSeq !== null && (seq === 0n || seq < s.lastSeq);
      if (restarted) {
        c.config.forgetOffer(rec);
        c.packages.forgetOffer(rec);
        c.components.forgetRequest(rec);
        // A new client's first message without a config status says it runs no remote config (the
        // Python client starts with none): what the old one reported no longer stands.
        if (seq === 0n && msg.remoteConfigStatus == null) c.config.forgetReported(rec);
      }
      if (!s.connected) ctx.log.info({ instanceUid: uid, transport: conn.transport }, 'Agent reconnected');
    }
    const s = rec.session;
    s.holder = claimant;
    s.holderAuthorization = claimant?.startsWith('bearer|') ? (conn.authorization ?? null) : null;

    // Already recorded on this very connection (every heartbeat): nothing to attach.
    const wasOn = !isNew && s.connected && s.connection ? s.connection.id : null;
    const cameBack = !s.connected;
    s.lastSeq = seq;
    s.lastSeen = now;
    rec.description.capabilities = toNumber(msg.capabilities);
    s.transport = conn.transport;
    s.connection = conn;
    s.connected = true;
    s.disconnectedAt = null;
    s.pastGrace = false;
    const verifiedChanged = setVerified(rec, conn.verified ?? null);
    if (conn.send && wasOn !== conn.id) this.#attach(conn.id, uid);

    // Every field of every message is stored, whatever else the message carries (a message that
    // says agent_disconnect may also carry the agent's full state: opamp-go-based agents that
    // restart their client send both).
    const desc = rec.description;
    let descriptionChanged = false;
    if (msg.agentDescription != null) {
      desc.reported = describe(msg.agentDescription);
      const attributes = labelsOf(desc.reported);
      descriptionChanged = JSON.stringify(attributes) !== JSON.stringify(desc.attributes);
      desc.attributes = attributes;
    }
    // Agent-written text is scrubbed of secret values, then cut to the bound (it only explains).
    const clean = (t: string) => boundText(ctx.redactor.redact(t), ctx.bounds);
    if (msg.health != null) desc.health = healthView(msg.health, clean);
    // The status first: an effective config in the same message belongs to the status it carries.
    if (msg.remoteConfigStatus != null) c.config.recordStatus(rec, msg.remoteConfigStatus, now);
    if (msg.effectiveConfig != null) c.config.recordEffective(rec, msg.effectiveConfig);
    if (msg.packageStatuses != null) c.packages.recordStatuses(rec, packageStatusesView(msg.packageStatuses, clean));
    if (msg.availableComponents != null) c.components.record(rec, availableComponentsView(msg.availableComponents));
    if (msg.customCapabilities != null) desc.customCapabilities = [...(msg.customCapabilities.capabilities ?? [])];
    if (msg.connectionSettingsStatus != null) c.settings.recordStatus(rec, msg.connectionSettingsStatus, clean);

    if (hasBit(flags, AgentToServerFlags.RequestInstanceUid)) {
      const fresh = newUuidV7(now);
      const newUid = uidToString(fresh);
      ctx.agents.delete(uid);
      this.#detach(conn.id, uid);
      rec.uid = newUid;
      rec.uidBytes = fresh;
      ctx.agents.set(newUid, rec);
      if (conn.send) this.#attach(conn.id, newUid);
      response.agentIdentification = { newInstanceUid: fresh };
      ctx.log.info({ instanceUid: uid, newInstanceUid: newUid }, 'Assigned a new instance_uid at the agent\'s request');
      uid = newUid;
    }

    // Who the agent is and what it should run follow from what it says, on every message that
    // changes it: a stored description is always resolved.
    if (descriptionChanged || isNew || verifiedChanged || cameBack) this.resolve(rec, true);
    c.config.drift.judge(rec, now);
    c.components.judge(rec);
    this.#refuseCustomMessages(rec, conn, msg, response, now);

    if (msg.agentDisconnect != null) {
      // Its state is kept (a restarting client reconnects at once); nothing more is offered on a
      // connection the agent is leaving.
      this.disconnect(rec, now);
      ctx.log.info({ instanceUid: uid }, 'Agent disconnected');
      ctx.counters[conn.transport].sent.inc();
      this.changed();
      return response;
    }
    if (msg.connectionSettingsRequest != null) {
      // This server does not issue client certificates (and does not advertise
      // AcceptsConnectionSettingsRequest). OpAMP §CSR: a request that cannot be served is answered
      // with error_response BAD_REQUEST. The error goes alone; what the answer would have carried
      // follows with the next message (asked for again in full if it was due now).
      const message = 'this server does not issue client certificates: ConnectionSettingsRequest is not supported (the server does not advertise AcceptsConnectionSettingsRequest)';
      this.#refused(rec, conn, 'connection_settings_request', message, now);
      if (fullState) s.lastSeq = null;
      ctx.counters[conn.transport].sent.inc();
      this.changed();
      return { instanceUid: response.instanceUid, capabilities: SERVER_CAPABILITIES, errorResponse: { type: ServerErrorResponseType.BadRequest, errorMessage: message } };
    }

    if (fullState) response.flags = ServerToAgentFlags.ReportFullState;
    c.components.maybeRequest(rec, conn, response, now);
    // After asking for full state, wait for the agent's config status before offering config, so
    // an agent that already runs the desired config is not sent it again. A first message (sequence
    // 0) that carries no status says the agent has none.
    const knowsReported = msg.remoteConfigStatus != null || !fullState || seq === 0n;
    const configSent = knowsReported && c.config.add(rec, conn, response, now);
    // Likewise packages: the agent's statuses say whether it already has them.
    if (msg.packageStatuses != null || !fullState) c.packages.add(rec, conn, response, now);
    // Connection settings wait while a config is on its way: agents that restart their OpAMP client
    // on an offer would otherwise drop a config they were about to apply and be sent it again.
    if (isNew || restarted) s.sequenceStartedAt = now;
    if (isNew || (restarted && lostState(rec))) c.settings.mayHaveLost(rec);
    if (!configSent && !configInFlight(ctx, rec, now)) c.settings.offerWithAnswer(rec, conn, response, now);
    ctx.counters[conn.transport].sent.inc();
    this.changed();
    return response;
  }

  /** A refusal: counted under `code`, logged about once a second (with how many were not), answered with error_response only. */
  #refuse(conn: AgentConnection, uidBytes: Uint8Array, uid: string, code: string, type: number, message: string, retryAfterSeconds?: number): ServerToAgentProps {
    const ctx = this.ctx;
    ctx.metrics.protocolErrors.inc({ transport: conn.transport, code });
    const left = ctx.logBudget.take('refusal');
    if (left !== false) ctx.log.warn({ instanceUid: uid, transport: conn.transport, source: conn.remoteAddress, code, alsoRefusedSinceLastLine: left }, `Refused an agent's message: ${message}`);
    return {
      instanceUid: uidBytes,
      errorResponse: { type, errorMessage: message, ...(retryAfterSeconds ? { retryInfo: { retryAfterNanoseconds: retryAfterSeconds * 1_000_000_000 } } : {}) },
    };
  }

  /** A WebSocket closed: every agent last seen on it is disconnected (OpAMP §AgentDisconnect). */
  connectionClosed(conn: AgentConnection): void {
    const uids = this.#byConnection.get(conn.id);
    this.#byConnection.delete(conn.id);
    if (!uids) return;
    const now = this.ctx.now();
    for (const uid of uids) {
      const rec = this.ctx.agents.get(uid);
      if (rec && rec.session.connection?.id === conn.id) {
        this.disconnect(rec, now);
        this.ctx.log.info({ instanceUid: uid }, 'Agent connection closed');
      }
    }
    this.changed();
  }

  /**
   * Marks HTTP agents that stopped polling on time disconnected, ends the grace in which disconnected
   * agents are counted as recently disconnected, judges drift whose settle has passed (pushing a
   * config once more where that is due), and forgets long-disconnected agents.
   */
  sweep(): void {
    const { ctx, c } = this;
    const now = ctx.now();
    const t = ctx.settings;
    let changed = false;
    const outbox: Outbox = [];
    for (const [uid, rec] of ctx.agents) {
      const s = rec.session;
      const cfg = rec.config;
      if (rec.description.reported === null && now - s.firstSeen > t.unidentifiedTtlMs) {
        // Never completed a first report: not an agent we know (one that comes back is asked for its state).
        ctx.agents.delete(uid);
        if (s.connection) this.#detach(s.connection.id, uid);
        changed = true;
      } else if (s.connected && s.transport === 'http' && now - s.lastSeen > t.offlineAfterMs) {
        this.disconnect(rec, now);
        ctx.log.info({ instanceUid: uid }, 'HTTP agent stopped polling; marked disconnected');
        changed = true;
      } else if (!s.connected && !s.pastGrace && now - (s.disconnectedAt ?? s.lastSeen) > t.disconnectedGraceMs) {
        s.pastGrace = true;
        changed = true;
      } else if (!s.connected && now - s.lastSeen > t.retainDisconnectedMs) {
        ctx.agents.delete(uid);
        changed = true;
      } else if (s.connected && cfg.drift.verdict === null && !cfg.drift.effectiveFresh && cfg.reported.status === 'APPLIED' && cfg.desired?.hashHex === cfg.reported.hash) {
        ctx.isolated('sweep', rec, () => {
          c.config.drift.judge(rec, now);
          if (cfg.drift.verdict !== null || cfg.drift.repushDue) changed = true;
          const conn = s.connection;
          if (cfg.drift.repushDue && conn?.send) {
            const msg: ServerToAgentProps = { instanceUid: rec.uidBytes, capabilities: SERVER_CAPABILITIES };
            if (c.config.add(rec, conn, msg, now)) outbox.push({ rec, conn, msg });
          }
        }, undefined);
      }
    }
    if (outbox.length > 0) sendAll(ctx, outbox);
    if (changed) this.changed();
  }

  disconnect(rec: AgentRecord, now: number): void {
    const s = rec.session;
    if (s.connection) this.#detach(s.connection.id, rec.uid);
    if (s.connected) s.disconnectedAt = now;
    s.connected = false;
    s.connection = null;
    s.lastSeen = Math.max(s.lastSeen, now);
    // The offer was on a connection that is gone: a reconnect may need it again.
    this.c.config.forgetOffer(rec);
    this.c.packages.forgetOffer(rec);
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
    const ctx = this.ctx;
    ctx.metrics.unsupportedRequests.inc({ kind });
    ctx.metrics.protocolErrors.inc({ transport: conn.transport, code: 'FB_OPAMP_UNSUPPORTED_REQUEST' });
    const refused = rec.session.refused;
    const r = refused[kind];
    const connectionId = conn.send ? conn.id : null;
    const logIt = !r || r.connectionId !== connectionId || now - r.at > ctx.settings.offerRetryMs;
    refused[kind] = { count: (r?.count ?? 0) + 1, at: logIt ? now : r!.at, message, connectionId };
    if (logIt) ctx.log.warn({ instanceUid: rec.uid, code: 'FB_OPAMP_UNSUPPORTED_REQUEST', kind, transport: conn.transport }, `Refused an agent request: ${message}`);
  }

  #attach(connId: number, uid: string): void {
    let set = this.#byConnection.get(connId);
    if (!set) this.#byConnection.set(connId, (set = new Set()));
    set.add(uid);
  }

  #detach(connId: number, uid: string): void {
    this.#byConnection.get(connId)?.delete(uid);
  }
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
