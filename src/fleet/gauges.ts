/**
 * The gauges derived from the registry (refreshed before a metrics scrape): agents by transport,
 * config and package state, and per-Collector sums and maxima of the process figures agents report
 * in their own metrics. Writes the records' `resources` (the newest figures).
 */
import type { AgentRecord } from './agent.js';
import type { Metrics } from '../telemetry/metrics.js';
import { mergeFigures, type ProcessFigures } from '../otlp/metrics.js';
import type { FleetContext } from './context.js';
import { packageState } from './packages.js';
import { configState } from './remote-config.js';

/** Keeps the newest process figures an agent's own metrics report. */
export function recordResources(rec: AgentRecord, figures: ProcessFigures): void {
  rec.resources = mergeFigures(rec.resources, figures);
}

/** Refreshes every gauge derived from the registry. */
export function updateGauges(ctx: FleetContext): void {
  const m = ctx.metrics;
  const connected = { websocket: 0, http: 0 };
  const states = { applied: 0, applying: 0, failed: 0, readonly: 0, none: 0 };
  let unbound = 0;
  const packages = { installed: 0, installing: 0, failed: 0, unsupported: 0, held: 0 };
  let recent = 0;
  for (const rec of ctx.agents.values()) {
    if (!rec.session.connected) {
      if (!rec.session.pastGrace) recent++;
      continue;
    }
    connected[rec.session.transport]++;
    const ps = packageState(rec);
    if (ps) packages[ps.state]++;
    if (rec.identity.error) unbound++;
    states[configState(rec)]++;
  }
  m.agentsRecentlyDisconnected.set(recent);
  for (const [t, n] of Object.entries(connected)) m.agentsConnected.set({ transport: t }, n);
  for (const [s, n] of Object.entries(states)) m.configStatus.set({ state: s }, n);
  m.agentsUnbound.set(unbound);
  for (const [s, n] of Object.entries(packages)) m.packageStates.set({ state: s }, n);
  updateResourceGauges(m, ctx.agents.values());
}

interface Agg { sum: number; max: number }

/** Recomputes the gauges from the records (before a scrape); Collectors no agent reports for have none. */
function updateResourceGauges(metrics: Pick<Metrics, 'agentsRssBytes' | 'agentsCpuSeconds'>, agents: Iterable<AgentRecord>): void {
  const rss = new Map<string, Agg>();
  const cpu = new Map<string, Agg>();
  for (const rec of agents) {
    const r = rec.resources;
    if (!r || !rec.session.connected || !rec.config.desired) continue;
    for (const key of rec.config.desired.collectors) {
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
