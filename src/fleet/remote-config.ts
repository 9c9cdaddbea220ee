/**
 * The remote-config offer: what each agent should run, what it reports running (status and
 * effective config), and when the desired config goes to it (ADR 0007 rules 2, 3). Writes the
 * records' `config` group (drift.ts writes `config.drift`).
 */
import { AgentCapabilities, RemoteConfigStatusNames, hasBit, type AgentToServer, type ServerToAgentProps } from '../opamp/messages.js';
import type { RenderedConfig } from '../render/index.js';
import { BoundedMap } from '../lib/bounded-map.js';
import { internShort, type AgentConnection, type AgentRecord } from './agent.js';
import { boundText } from './bounds.js';
import { awaitingComponents, componentsKnown, missingComponentsMessage } from './components.js';
import type { FleetContext } from './context.js';
import { DriftJudge } from './drift.js';
import type { RemoteConfigState } from './view-types.js';

/** Characters of distinct effective-config texts kept for sharing between agents. */
const TEXT_TABLE_CHARS = 32 * 1024 * 1024;

export class RemoteConfig {
  readonly drift: DriftJudge;
  /** Effective config texts agents report, kept once however many agents report the same text (an agent may report a new text with every message). */
  readonly #texts = new BoundedMap<string, string>({ maxEntries: 2000, maxWeight: TEXT_TABLE_CHARS, weigh: (k) => k.length });
  readonly #desiredTexts = new BoundedMap<string, string>({ maxEntries: 100 });

  constructor(private readonly ctx: FleetContext) {
    this.drift = new DriftJudge(ctx, (d) => this.desiredText(d));
  }

  /** What the agent should run, from the desired state, its namespace and labels. */
  computeDesired(rec: AgentRecord): void {
    const ctx = this.ctx;
    const next: RenderedConfig | null =
      ctx.desired && rec.description.reported && !rec.identity.error ? ctx.desired.forAgent(rec.identity.namespace, rec.identity.labels) : null;
    // A new desired config: the previous failure no longer stands in its way.
    if ((next?.hashHex ?? null) !== (rec.config.desired?.hashHex ?? null)) rec.config.failedHash = null;
    if (next && next.secretValues.length > 0) ctx.redactor.add(next.secretValues);
    rec.config.desired = next;
  }

  recordStatus(rec: AgentRecord, s: NonNullable<AgentToServer['remoteConfigStatus']>, now: number): void {
    const c = rec.config;
    const hash = s.lastRemoteConfigHash && s.lastRemoteConfigHash.length > 0 ? Buffer.from(s.lastRemoteConfigHash).toString('hex') : null;
    const status: RemoteConfigState = RemoteConfigStatusNames[s.status ?? 0] ?? 'UNSET';
    const wasFailed = c.reported.status === 'FAILED' && c.reported.hash === hash;
    if (hash !== c.reported.hash || status !== c.reported.status) this.drift.statusChanged(rec, now);
    c.reported = { hash, status, errorMessage: boundText(this.ctx.redactor.redact(s.errorMessage ?? ''), this.ctx.bounds) };
    // The agent runs the desired config after all (a FAILED report was a forgery or is old news).
    if (status === 'APPLIED' && hash !== null && hash === c.failedHash) c.failedHash = null;
    if (status === 'FAILED' && hash !== null) {
      // Never re-push automatically a config the agent reported FAILED.
      if (c.desired && hash === c.desired.hashHex) c.failedHash = hash;
      if (!wasFailed) {
        this.ctx.metrics.configApplyFailures.inc();
        this.ctx.log.warn({ instanceUid: rec.uid, configHash: hash, error: c.reported.errorMessage }, 'Agent failed to apply remote config');
      }
    }
  }

  recordEffective(rec: AgentRecord, ec: NonNullable<AgentToServer['effectiveConfig']>): void {
    const files: Record<string, { body: string; contentType: string }> = {};
    for (const [k, f] of Object.entries(ec.configMap?.configMap ?? {})) {
      const bytes = f.body ?? new Uint8Array();
      // After a push, agents report the config they were sent: reuse its (redacted) text rather
      // than decoding and hashing the same kilobytes once per agent.
      const d = rec.config.desired;
      const text = d && bytes.length === d.body.length && d.body.equals(bytes) ? this.desiredText(d) : this.#intern(this.ctx.redactor.redact(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8')));
      files[k] = { body: text, contentType: internShort(f.contentType ?? '') };
    }
    rec.config.effective = files;
    this.drift.effectiveArrived(rec);
  }

  /** A new client's first message without a config status says it runs no remote config: what the old one reported no longer stands. */
  forgetReported(rec: AgentRecord): void {
    rec.config.reported = { hash: null, status: 'UNSET', errorMessage: '' };
  }

  /** The offer was made to a client or connection that is gone: a reconnect may need it again. */
  forgetOffer(rec: AgentRecord): void {
    rec.config.offered = null;
  }

  /** A desired config's text as agents' reports of it are stored (redacted), once per config. */
  desiredText(d: RenderedConfig): string {
    let t = this.#desiredTexts.get(d.hashHex);
    if (t === undefined) this.#desiredTexts.set(d.hashHex, (t = this.#intern(this.ctx.redactor.redact(d.body.toString('utf8')))));
    return t;
  }

  /** The one stored copy of `text` (a fleet reports a few distinct effective configs, each thousands of times). */
  #intern(text: string): string {
    const known = this.#texts.get(text);
    if (known !== undefined) return known;
    this.#texts.set(text, text);
    return text;
  }

  /** Adds `remote_config` when the agent accepts config, lacks the desired one, and it is not a known failure. */
  add(rec: AgentRecord, conn: AgentConnection, msg: ServerToAgentProps, now: number, level: 'info' | 'debug' = 'info'): boolean {
    const c = rec.config;
    const d = c.desired;
    if (!d || d.issues.length > 0) return false;
    const caps = rec.description.capabilities;
    if (!hasBit(caps, AgentCapabilities.AcceptsRemoteConfig)) return false;
    if (c.drift.repushDue && c.drift.repushedHash === d.hashHex) {
      this.drift.repushSent(rec);
    } else if (c.reported.hash === d.hashHex) return false;
    else if (!this.#offerDue(rec, d, conn, now)) return false;
    msg.remoteConfig = {
      config: { configMap: { '': { body: d.body, contentType: d.contentType } } },
      configHash: d.hash,
    };
    c.offered = { hash: d.hashHex, at: now, connectionId: conn.send ? conn.id : null };
    this.ctx.metrics.configPushes.inc({ transport: conn.transport });
    const log = this.ctx.log;
    if (log.isLevelEnabled(level)) log[level]({ instanceUid: rec.uid, configHash: d.hashHex, collectors: d.collectors }, 'Sent remote config');
    if (hasBit(caps, AgentCapabilities.ReportsAvailableComponents) && !componentsKnown(rec)) {
      log.warn({ instanceUid: rec.uid, configHash: d.hashHex }, 'Sent remote config without checking components: the agent did not send the list it was asked for');
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
    if (rec.config.failedHash === d.hashHex) return false;
    // A config naming component types the agent lacks would only fail (or stop its collector).
    if (rec.components.missing.length > 0) return false;
    if (awaitingComponents(this.ctx, rec, now)) return false;
    const connectionId = conn.send ? conn.id : null;
    const o = rec.config.offered;
    if (!o || o.hash !== d.hashHex || o.connectionId !== connectionId) return true;
    return connectionId === null && now - o.at >= this.ctx.settings.offerRetryMs;
  }
}

/**
 * Whether a remote config sent to the agent is still being applied: not yet reported APPLIED or
 * FAILED (held for at most offerRetryMs). APPLYING counts as in flight: the Supervisor restarts its
 * collector for an own-telemetry offer too, and a second restart within its config-apply timeout
 * can end in FAILED "Config apply timeout exceeded" for a config it runs.
 */
export function configInFlight(ctx: FleetContext, rec: AgentRecord, now: number): boolean {
  const { offered: o, desired: d, reported } = rec.config;
  if (!o || !d || o.hash !== d.hashHex || now - o.at >= ctx.settings.offerRetryMs) return false;
  return !(reported.hash === d.hashHex && (reported.status === 'APPLIED' || reported.status === 'FAILED'));
}

/** A restarted agent that reports no remote config at all has lost what it was offered before. */
export function lostState(rec: AgentRecord): boolean {
  return rec.config.reported.hash === null && rec.config.reported.status === 'UNSET';
}

/** Where an agent stands against its desired config. */
export function configState(rec: AgentRecord): 'applied' | 'applying' | 'failed' | 'readonly' | 'none' {
  const { desired: d, reported, failedHash } = rec.config;
  if (!d) return 'none';
  // An agent that does not accept remote config (e.g. a collector with only the opamp extension)
  // is shown, with its health, but never counted as applying or failed.
  if (!hasBit(rec.description.capabilities, AgentCapabilities.AcceptsRemoteConfig)) return 'readonly';
  if (d.issues.length > 0) return 'failed';
  if (failedHash === d.hashHex || (reported.hash === d.hashHex && reported.status === 'FAILED')) return 'failed';
  if (rec.components.missing.length > 0) return 'failed';
  if (reported.hash === d.hashHex && reported.status === 'APPLIED') return 'applied';
  return 'applying';
}

/** Why an agent counts as failed (configState 'failed'), or null when it does not. */
export function configFailure(rec: AgentRecord): { reason: 'InvalidConfig' | 'MissingComponents' | 'ApplyFailed'; message: string } | null {
  const d = rec.config.desired;
  if (!d || configState(rec) !== 'failed') return null;
  if (d.issues.length > 0) return { reason: 'InvalidConfig', message: `merged config is invalid: ${d.issues.join('; ')}` };
  // Said first even when the agent also reported FAILED for it: it says what to fix.
  if (rec.components.missing.length > 0) return { reason: 'MissingComponents', message: missingComponentsMessage(rec.components.missing) };
  return { reason: 'ApplyFailed', message: rec.config.reported.errorMessage || 'apply failed' };
}
