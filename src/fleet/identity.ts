/**
 * Who an agent is: the identity its connection was verified as, and the namespace, labels and pod
 * the identity resolver gives it. Writes the records' `identity` group.
 */
import type { VerifiedIdentity } from '../opamp/connection.js';
import type { AgentRecord } from './agent.js';
import type { FleetContext } from './context.js';

/** Stores the identity the connection was verified as; true when it differs from the one stored. */
export function setVerified(rec: AgentRecord, verified: VerifiedIdentity | null): boolean {
  const id = rec.identity;
  const changed = verified !== id.verified && JSON.stringify(verified) !== JSON.stringify(id.verified);
  id.verified = verified;
  return changed;
}

export function resolveIdentity(ctx: FleetContext, rec: AgentRecord): void {
  const resolved = ctx.identity(rec);
  const id = rec.identity;
  const before = id.error;
  if (resolved.ok) {
    id.namespace = resolved.namespace;
    id.labels = resolved.labels;
    id.pod = resolved.pod ?? null;
    id.error = null;
  } else {
    id.labels = {};
    id.pod = null;
    id.error = resolved.error;
    if (before !== resolved.error) ctx.log.warn({ instanceUid: rec.uid, reason: resolved.error }, 'Agent gets no config: its identity is not accepted');
  }
}

/** Whether a connected agent still uses a credential that is no longer current (rotation pending). */
export function credentialStale(ctx: FleetContext, rec: AgentRecord): boolean {
  return !!ctx.credentials && rec.session.connected && ctx.credentials.replacementFor(rec.session.connection?.authorization) !== undefined;
}
