/**
 * The agent registry and the OpAMP session rules, behind one facade: one record per instance_uid,
 * what to store from each AgentToServer, and what each ServerToAgent carries (full-state requests,
 * remote config, packages, connection settings). Transport-agnostic: WebSocket and HTTP call the
 * same methods. Pure logic apart from the injected clock, logger and metrics; no sockets, no
 * Kubernetes. The concerns live in their own modules: session.ts (with admission.ts),
 * remote-config.ts, drift.ts, packages.ts, connection-settings.ts, components.ts, identity.ts,
 * views.ts, gauges.ts, fanout.ts, totals.ts.
 */
import { SERVER_CAPABILITIES, type AgentToServer, type ServerToAgentProps } from '../opamp/messages.js';
import type { DesiredState } from '../render/index.js';
import type { Redactor } from '../render/redact.js';
import type { ProcessFigures } from '../otlp/metrics.js';
import type { AgentConnection, AgentRecord } from './agent.js';
import { ComponentNegotiation } from './components.js';
import { ConnectionSettings } from './connection-settings.js';
import { FleetContext, type FleetOptions, type FleetSettingsChange } from './context.js';
import { sendAll, type Outbox } from './fanout.js';
import { recordResources, updateGauges } from './gauges.js';
import { credentialStale } from './identity.js';
import { PackageOffers } from './packages.js';
import { RemoteConfig } from './remote-config.js';
import { Sessions } from './session.js';
import { view, viewOf, views } from './views.js';
import type { AgentView } from './view-types.js';

export type { FleetOptions, FleetSettingsChange, OwnTelemetry, TelemetryDestination } from './context.js';
export { holderOf } from './admission.js';
export { configFailure, configState } from './remote-config.js';
export { bridgeTotals, type BridgeTotals } from './totals.js';

export class Fleet {
  readonly #ctx: FleetContext;
  readonly #config: RemoteConfig;
  readonly #packages: PackageOffers;
  readonly #settings: ConnectionSettings;
  readonly #components: ComponentNegotiation;
  readonly #sessions: Sessions;
  readonly #listeners = new Set<() => void>();
  /**
   * Scrubs secret values out of everything agents report (effective configs, error messages,
   * health) before it is stored: what is stored is what logs, status, events and the API show.
   */
  readonly redactor: Redactor;

  constructor(opts: FleetOptions) {
    const ctx = (this.#ctx = new FleetContext(opts));
    this.redactor = ctx.redactor;
    this.#config = new RemoteConfig(ctx);
    this.#packages = new PackageOffers(ctx);
    this.#settings = new ConnectionSettings(ctx);
    this.#components = new ComponentNegotiation(ctx);
    const concerns = { config: this.#config, packages: this.#packages, settings: this.#settings, components: this.#components };
    this.#sessions = new Sessions(ctx, concerns, () => this.#changed());
  }

  /**
   * Applies settings while the fleet runs; returns whether anything changed. A new heartbeat
   * re-derives the timings derived from it (unless the constructor was given them) and is offered
   * to connected agents under the rules of reofferConnectionSettings; bounds apply to the next
   * messages, maxAgents and the new-agent buckets to the next admissions; `credentials: null`
   * clears the credential policy.
   */
  configure(settings: FleetSettingsChange): boolean {
    const { changed, heartbeat } = this.#ctx.configure(settings);
    if (heartbeat) this.reofferConnectionSettings();
    return changed;
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
    return this.#ctx.agents.size;
  }

  get(uid: string): AgentRecord | undefined {
    return this.#ctx.agents.get(uid);
  }

  records(): IterableIterator<AgentRecord> {
    return this.#ctx.agents.values();
  }

  /**
   * Handles one AgentToServer and returns the ServerToAgent to answer it with (OpAMP: the server
   * answers every message). For WebSocket the caller sends it; for HTTP it is the response body.
   */
  handleMessage(conn: AgentConnection, msg: AgentToServer): ServerToAgentProps {
    return this.#sessions.handleMessage(conn, msg);
  }

  /** A WebSocket closed: every agent last seen on it is disconnected (OpAMP §AgentDisconnect). */
  connectionClosed(conn: AgentConnection): void {
    this.#sessions.connectionClosed(conn);
  }

  /**
   * Installs a new desired state and pushes, over WebSocket, every config that changed; HTTP agents
   * get theirs in the response to their next poll. Level-triggered: recomputes every agent.
   */
  setDesiredState(state: DesiredState): void {
    this.#ctx.desired = state;
    this.refresh();
  }

  /**
   * Re-resolves every agent's identity (its pod may have been relabelled or deleted) and desired
   * config, and pushes what changed. Level-triggered: call it after any change of inputs.
   */
  refresh(): void {
    const ctx = this.#ctx;
    const end = ctx.metrics.renderDuration.startTimer();
    const now = ctx.now();
    const outbox: Outbox = [];
    for (const rec of ctx.agents.values()) {
      // One agent's failure never stops the others' fan-out.
      ctx.isolated('refresh', rec, () => {
        const before = rec.config.desired?.hashHex ?? null;
        const packagesBefore = rec.packages.desired?.allHashHex ?? null;
        this.#sessions.resolve(rec, rec.description.reported !== null);
        this.#config.drift.judge(rec, now);
        this.#components.judge(rec);
        const configChanged = (rec.config.desired?.hashHex ?? null) !== before || rec.config.drift.repushDue;
        const packagesChanged = (rec.packages.desired?.allHashHex ?? null) !== packagesBefore;
        if (!configChanged && !packagesChanged) return;
        const conn = rec.session.connection;
        if (!rec.session.connected || !conn?.send) return;
        const msg: ServerToAgentProps = { instanceUid: rec.uidBytes, capabilities: SERVER_CAPABILITIES };
        const withConfig = configChanged && this.#config.add(rec, conn, msg, now, 'debug');
        const withPackages = packagesChanged && this.#packages.add(rec, conn, msg, now);
        if (withConfig || withPackages) outbox.push({ rec, conn, msg });
      }, undefined);
    }
    end();
    if (outbox.length > 0) {
      ctx.log.info({ pushed: outbox.length, configs: new Set(outbox.map((o) => o.rec.config.desired?.hashHex)).size }, 'Pushing remote config to connected agents');
      sendAll(ctx, outbox);
    }
    this.#changed();
  }

  /**
   * Offers connection settings again to connected WebSocket agents whose offer changed (e.g. a
   * rotated bearer token); HTTP agents get theirs with their next poll. Returns how many were sent.
   */
  reofferConnectionSettings(): number {
    const ctx = this.#ctx;
    // What offers are made of (credentials, telemetry destinations, CA, heartbeat) may have changed.
    ctx.settingsEpoch++;
    let sent = 0;
    for (const rec of ctx.agents.values()) {
      const conn = rec.session.connection;
      if (!rec.session.connected || !conn?.send) continue;
      const msg: ServerToAgentProps = { instanceUid: rec.uidBytes, capabilities: SERVER_CAPABILITIES };
      ctx.isolated('reoffer', rec, () => this.#settings.offer(rec, conn, msg, false), undefined);
      if (!msg.connectionSettings) continue;
      ctx.isolated('send', rec, () => conn.send!(msg), undefined);
      ctx.metrics.messagesSent.inc({ transport: conn.transport });
      sent++;
    }
    if (sent > 0) ctx.log.info({ agents: sent }, 'Offered new connection settings');
    return sent;
  }

  /**
   * Closes the WebSocket connections of agents whose credential is no longer accepted (a revoked
   * token): they must reconnect, and authenticate again. HTTP agents authenticate on every request.
   */
  closeConnections(revoked: (conn: AgentConnection) => boolean, reason: string): number {
    let closed = 0;
    for (const rec of this.#ctx.agents.values()) {
      const conn = rec.session.connection;
      if (!rec.session.connected || !conn?.close || !revoked(conn)) continue;
      conn.close(1008, reason);
      closed++;
    }
    if (closed > 0) this.#ctx.log.warn({ agents: closed, reason }, 'Closed connections of agents whose credential was revoked');
    return closed;
  }

  /** Whether a connected agent still uses a credential that is no longer current (rotation pending). */
  credentialStale(rec: AgentRecord): boolean {
    return credentialStale(this.#ctx, rec);
  }

  /**
   * Call periodically (at least twice per heartbeat interval). Marks HTTP agents that stopped polling
   * on time disconnected, ends the grace in which disconnected agents are counted as recently
   * disconnected, judges drift whose settle has passed (pushing a config once more where that is
   * due), and forgets long-disconnected agents.
   */
  sweep(): void {
    this.#sessions.sweep();
  }

  /** Whether a disconnected agent is still within the grace in which it counts as recently disconnected. */
  recentlyDisconnected(rec: AgentRecord): boolean {
    return !rec.session.connected && !rec.session.pastGrace;
  }

  /** Refreshes the gauges derived from the registry (call before a metrics scrape). */
  updateGauges(): void {
    updateGauges(this.#ctx);
  }

  /** Every known agent as the API shows it. */
  views(): AgentView[] {
    return views(this.#ctx);
  }

  /** One agent by canonical UUID or 32 hex digits; undefined when unknown or malformed. */
  viewOf(uid: string): AgentView | undefined {
    return viewOf(this.#ctx, uid);
  }

  view(rec: AgentRecord): AgentView {
    return view(this.#ctx, rec);
  }

  /** Keeps the newest process figures an agent's own metrics report (src/otlp); false for an unknown agent. */
  recordResources(uid: string, figures: ProcessFigures | null): boolean {
    const rec = this.#ctx.agents.get(uid);
    if (!rec) return false;
    if (figures) recordResources(rec, figures);
    return true;
  }
}

/** How often to sweep the registry: four times per heartbeat interval, at most every 5 s, at least every 250 ms. */
export function sweepEvery(heartbeatIntervalSeconds: number): number {
  return Math.min(5000, Math.max(250, heartbeatIntervalSeconds * 250));
}
