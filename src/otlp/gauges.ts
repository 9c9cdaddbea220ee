/**
 * Per-Collector gauges of the process figures agents report in their own metrics: sum and max of
 * resident memory and of CPU seconds over each Collector's connected agents that reported them.
 */
import type { AgentRecord } from '../fleet/agent.js';
import type { Metrics } from '../telemetry/metrics.js';

interface Agg { sum: number; max: number }

/** Recomputes the gauges from the records (before a scrape); Collectors no agent reports for have none. */
export function updateResourceGauges(metrics: Pick<Metrics, 'agentsRssBytes' | 'agentsCpuSeconds'>, agents: Iterable<AgentRecord>): void {
  const rss = new Map<string, Agg>();
  const cpu = new Map<string, Agg>();
  for (const rec of agents) {
    const r = rec.resources;
    if (!r || !rec.connected || !rec.desired) continue;
    for (const key of rec.desired.collectors) {
      if (r.rssBytes !== null) add(rss, key, r.rssBytes);
      if (r.cpuSeconds !== null) add(cpu, key, r.cpuSeconds);
    }
  }
  for (const [gauge, aggs] of [[metrics.agentsRssBytes, rss], [metrics.agentsCpuSeconds, cpu]] as const) {
    gauge.reset();
    for (const [key, a] of aggs) {
      const slash = key.indexOf('/');
      const labels = { namespace: key.slice(0, slash), collector: key.slice(slash + 1) };
      gauge.set({ ...labels, stat: 'sum' }, a.sum);
      gauge.set({ ...labels, stat: 'max' }, a.max);
    }
  }
}

function add(m: Map<string, Agg>, key: string, v: number): void {
  const a = m.get(key);
  if (!a) m.set(key, { sum: v, max: v });
  else {
    a.sum += v;
    a.max = Math.max(a.max, v);
  }
}
