/** The fleet's totals as the OpAMPBridge status shows them: counts of connected agents. */
import type { AgentRecord } from './agent.js';
import { configState } from './remote-config.js';

export interface BridgeTotals {
  connected: number;
  healthy: number;
  unhealthy: number;
  applied: number;
  failed: number;
  /** Agents whose identity is not accepted (no pod bound, a namespace not served). */
  unbound: number;
  /** Agents that still connect with a credential that is no longer current (rotation pending). */
  staleCredentials: number;
}

/** What the totals read of the fleet (Fleet implements it). */
export interface TotalsSource {
  records(): Iterable<AgentRecord>;
  credentialStale(rec: AgentRecord): boolean;
}

export function bridgeTotals(fleet: TotalsSource): BridgeTotals {
  const t = { connected: 0, healthy: 0, unhealthy: 0, applied: 0, failed: 0, unbound: 0, staleCredentials: 0 };
  for (const rec of fleet.records()) {
    if (!rec.session.connected) continue;
    t.connected++;
    const health = rec.description.health;
    if (health) health.healthy ? t.healthy++ : t.unhealthy++;
    const s = configState(rec);
    if (s === 'applied') t.applied++;
    if (s === 'failed') t.failed++;
    if (rec.identity.error) t.unbound++;
    if (fleet.credentialStale(rec)) t.staleCredentials++;
  }
  return t;
}
