/**
 * Aggregates the fleet's truth into per-Collector counts: the same numbers feed the Collector's
 * `status` in Kubernetes and the standalone API. Counts, plus a capped list of failing agents:
 * status must stay small at 10,000 agents.
 */
import type { CollectorStatusCounts, FailingAgentView } from '../api/views.js';
import { configState } from '../fleet/fleet.js';
import type { AgentRecord } from '../fleet/agent.js';

export const MAX_FAILING_LISTED = 20;

export interface CollectorFleetStatus extends CollectorStatusCounts {
  failing: FailingAgentView[];
}

export function emptyStatus(): CollectorFleetStatus {
  return { matched: 0, connected: 0, applied: 0, applying: 0, failed: 0, healthy: 0, unhealthy: 0, failing: [] };
}

/** One pass over the agents; returns counts keyed by "namespace/name". */
export function aggregateCollectorStatus(agents: Iterable<AgentRecord>): Map<string, CollectorFleetStatus> {
  const out = new Map<string, CollectorFleetStatus>();
  for (const rec of agents) {
    const d = rec.desired;
    if (!d) continue;
    const state = configState(rec);
    for (const key of d.collectors) {
      let s = out.get(key);
      if (!s) out.set(key, (s = emptyStatus()));
      s.matched++;
      if (rec.connected) s.connected++;
      if (state === 'applied') s.applied++;
      else if (state === 'applying') s.applying++;
      else if (state === 'failed') {
        s.failed++;
        if (s.failing.length < MAX_FAILING_LISTED) {
          const message = d.issues.length > 0 ? `merged config is invalid: ${d.issues.join('; ')}` : rec.reported.errorMessage || 'apply failed';
          s.failing.push({ instanceUid: rec.uid, name: agentName(rec), message });
        }
      }
      if (rec.health) {
        if (rec.health.healthy) s.healthy++;
        else s.unhealthy++;
      }
    }
  }
  return out;
}

/** A name a person recognises: the pod, else the host, else the uid. */
export function agentName(rec: AgentRecord): string {
  const l = rec.labels;
  if (l['k8s.pod.name']) return `${l['k8s.namespace.name'] ?? rec.namespace}/${l['k8s.pod.name']}`;
  return l['host.name'] ?? l['service.instance.id'] ?? rec.uid;
}
