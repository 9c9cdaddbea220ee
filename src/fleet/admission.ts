/**
 * Who may speak for a uid, and who gets a record: a uid belongs to the identity holding it, cloned
 * agents are told apart, new uids per source address are rate-limited, and a full registry makes
 * room from disconnected records. Decides only: session.ts writes what follows.
 */
import { createHash } from 'node:crypto';
import { AgentToServerFlags, hasBit } from '../opamp/messages.js';
import { BoundedMap } from '../lib/bounded-map.js';
import type { AgentConnection, AgentRecord } from './agent.js';
import type { FleetContext } from './context.js';

/** A uid taken over between live connections this often within CLONE_WINDOW_MS is held by clones. */
export const CLONE_TAKEOVERS = 3;
export const CLONE_WINDOW_MS = 60_000;

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

/**
 * Whether `conn` may speak for the record: a uid is bound to the identity that holds it (its
 * ServiceAccount token's pod, its certificate, its bearer token) while the holder is connected or
 * within the grace after. A bearer token that replaces the holder's (a rotation) may take over.
 */
export function mayHold(ctx: FleetContext, rec: AgentRecord, conn: AgentConnection, claimant: string | null, now: number): boolean {
  const s = rec.session;
  if (s.holder === null || claimant === s.holder) return true;
  if (!s.connected && (s.pastGrace || now - (s.disconnectedAt ?? s.lastSeen) > ctx.settings.disconnectedGraceMs)) return true;
  const held = s.holderAuthorization;
  return held !== null && conn.authorization !== undefined && ctx.credentials?.replacementFor(held) === conn.authorization;
}

/** Whether a second live WebSocket connection keeps taking this uid from a live one (cloned agents). */
export function isClone(rec: AgentRecord, conn: AgentConnection, flags: number, now: number): boolean {
  const s = rec.session;
  if (!s.connected || !s.connection?.send || !conn.send || s.connection.id === conn.id) return false;
  if (hasBit(flags, AgentToServerFlags.RequestInstanceUid)) return false;
  return now - s.takeovers.since <= CLONE_WINDOW_MS && s.takeovers.count >= CLONE_TAKEOVERS;
}

/** New-uid buckets per source address (the oldest source is dropped when full). */
export class NewAgentBuckets {
  readonly #buckets = new BoundedMap<string, { tokens: number; at: number }>({ maxEntries: 10_000, evict: 'oldest' });

  constructor(private readonly ctx: FleetContext) {}

  /** A new uid from this source address, within its bucket (a flood of fresh uids from one address is refused). */
  admit(conn: AgentConnection, now: number): boolean {
    const source = conn.remoteAddress ?? '';
    const burst = this.ctx.settings.newAgentsPerSourceBurst;
    let b = this.#buckets.get(source);
    if (!b) this.#buckets.set(source, (b = { tokens: burst, at: now }));
    b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * this.ctx.settings.newAgentsPerSourcePerSecond);
    b.at = now;
    if (b.tokens < 1) return false;
    b.tokens--;
    return true;
  }
}

/** The longest-disconnected record, to make room for a new agent; null when every record is connected. */
export function evictable(ctx: FleetContext): AgentRecord | null {
  let oldest: AgentRecord | null = null;
  for (const rec of ctx.agents.values()) {
    if (!rec.session.connected && (oldest === null || rec.session.lastSeen < oldest.session.lastSeen)) oldest = rec;
  }
  return oldest;
}
