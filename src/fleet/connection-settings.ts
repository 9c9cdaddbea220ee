/**
 * The connection-settings offer (ADR 0007 rule 6): the `opamp` part (endpoint, Authorization,
 * heartbeat, CA) and own-telemetry destinations, offered only when they change what the agent
 * runs. Writes the records' `settings` group.
 */
import { createHash } from 'node:crypto';
import { AgentCapabilities, hasBit, type AgentToServer, type ServerToAgentProps } from '../opamp/messages.js';
import type { AgentConnection, AgentRecord } from './agent.js';
import type { FleetContext } from './context.js';

/** The heartbeat interval OpAMP clients use until told otherwise (opamp-go, the Supervisor: 30 s). */
const OPAMP_DEFAULT_HEARTBEAT_SECONDS = 30;

const OWN_SIGNALS = [
  ['metrics', AgentCapabilities.ReportsOwnMetrics, 'ownMetrics'],
  ['traces', AgentCapabilities.ReportsOwnTraces, 'ownTraces'],
  ['logs', AgentCapabilities.ReportsOwnLogs, 'ownLogs'],
] as const;

const SETTINGS_STATUS = ['UNSET', 'APPLIED', 'APPLYING', 'FAILED'] as const;

export class ConnectionSettings {
  constructor(private readonly ctx: FleetContext) {}

  recordStatus(rec: AgentRecord, st: NonNullable<AgentToServer['connectionSettingsStatus']>, clean: (s: string) => string): void {
    rec.settings.reported = {
      hash: st.lastConnectionSettingsHash?.length ? Buffer.from(st.lastConnectionSettingsHash).toString('hex') : null,
      status: SETTINGS_STATUS[st.status ?? 0] ?? 'UNSET',
      errorMessage: clean(st.errorMessage ?? ''),
    };
  }

  /** The agent is new to us, or restarted without state: it may have lost what it was offered. */
  mayHaveLost(rec: AgentRecord): void {
    rec.settings.mayBeForgotten = true;
  }

  /**
   * The offer judged with an agent's message (its answer is `msg`). Own-telemetry destinations wait
   * while the agent starts (see offer); once judged, the agent is no longer taken to have lost them.
   */
  offerWithAnswer(rec: AgentRecord, conn: AgentConnection, msg: ServerToAgentProps, now: number): void {
    if (this.offer(rec, conn, msg, rec.settings.mayBeForgotten, now, startingUp(this.ctx, rec, now))) rec.settings.mayBeForgotten = false;
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
   * False when the offer is held (judged again with the next message).
   */
  offer(rec: AgentRecord, conn: AgentConnection, msg: ServerToAgentProps, agentMayHaveForgotten: boolean, now = this.ctx.now(), holdTelemetry = false): boolean {
    const ctx = this.ctx;
    const s = rec.settings;
    const caps = rec.description.capabilities;
    const epoch = ctx.settingsEpoch;
    const heartbeat = ctx.settings.heartbeatIntervalSeconds;
    // Hot path (every heartbeat): nothing can have changed for an agent already judged under the
    // current settings epoch, unless it may have forgotten them or reports another hash.
    const last = s.offered;
    const reported = s.reported?.hash ?? null;
    if (!agentMayHaveForgotten && last && last.epoch === epoch && (reported === null || reported === last.hash)) return true;
    const none = s.noOffer;
    if (!agentMayHaveForgotten && !last && none && none.epoch === epoch && none.capabilities === caps) return true;

    // The settings as they should be: an `opamp` part for agents that accept one, and a destination
    // for each own signal the agent reports. The hash names all of them, sent or not.
    const parts: unknown[] = [];
    const offers: NonNullable<ServerToAgentProps['connectionSettings']> = {};
    let opamp: { part: NonNullable<ServerToAgentProps['connectionSettings']>['opamp']; hash: string; changesCredential: boolean } | null = null;
    if (hasBit(caps, AgentCapabilities.AcceptsOpAMPConnectionSettings)) {
      // The agent keeps the credential it presented, unless a newer one is current (rotation).
      const replacement = ctx.credentials?.replacementFor(conn.authorization);
      const authorization = replacement ?? conn.authorization;
      const headers = authorization ? [{ key: 'Authorization', value: authorization }] : [];
      const ca = ctx.serverCa();
      const key = ['opamp', conn.endpoint, headers, heartbeat, ca ?? null];
      parts.push(key);
      opamp = {
        part: {
          destinationEndpoint: conn.endpoint,
          headers: { headers },
          heartbeatIntervalSeconds: heartbeat,
          ...(ca ? { certificate: { caCert: Buffer.from(ca, 'utf8') } } : {}),
        },
        hash: createHash('sha256').update(JSON.stringify(key)).digest('hex'),
        changesCredential: replacement !== undefined,
      };
    }
    const own = ctx.ownTelemetry(conn);
    for (const [signal, bit, field] of OWN_SIGNALS) {
      const d = own[signal];
      if (!d || !hasBit(caps, bit)) continue;
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
      s.offered = { hash: hashHex, opamp: opamp?.hash ?? null, at: last?.at ?? 0, epoch };
      return true;
    }
    const disagrees = reported !== null;
    // The `opamp` part goes when it changes what the agent runs: the part offered last, or, never
    // offered, what it connected with and the OpAMP default heartbeat.
    let opampHash = last?.opamp ?? null;
    if (opamp) {
      const changes = opampHash !== null ? opampHash !== opamp.hash : opamp.changesCredential || heartbeat !== OPAMP_DEFAULT_HEARTBEAT_SECONDS;
      if (changes || ((agentMayHaveForgotten || disagrees) && opampHash !== null)) {
        offers.opamp = opamp.part;
        opampHash = opamp.hash;
      }
    }
    if (!offers.opamp && !telemetry) {
      if (!last) s.noOffer = { epoch, capabilities: caps };
      else s.offered = { ...last, epoch };
      return true;
    }
    // Never the same offer twice within offerRetryMs: an agent that restarts its client on each
    // offer (supervisor.go onOpampConnectionSettings; opamp-go does not compare hashes) would loop.
    if (last?.hash === hashHex && now - last.at < ctx.settings.offerRetryMs) return true;
    msg.connectionSettings = { hash, ...offers };
    s.offered = { hash: hashHex, opamp: opampHash, at: now, epoch };
    return true;
  }
}

/** An agent that reports health and has not reported healthy since its sequence (re)started (at most offerRetryMs). */
function startingUp(ctx: FleetContext, rec: AgentRecord, now: number): boolean {
  return hasBit(rec.description.capabilities, AgentCapabilities.ReportsHealth) && rec.description.health?.healthy !== true && now - rec.session.sequenceStartedAt < ctx.settings.offerRetryMs;
}
