/**
 * Checks shared by the conformance matrices (test/integration/conformance*.test.ts): one agent per
 * row against the bridge process; "converged" is judged where users read it: the agent's view, the
 * row's Collector status counts, the agents list and the /metrics gauges.
 */
import { expect } from 'vitest';
import { metricValue, waitUntil, type AgentView, type BridgeProcess, type CollectorView } from './bridge-process.js';

export interface ConformanceRow {
  name: string;
  transport: 'http' | 'websocket';
  /** Accepts remote config (AcceptsRemoteConfig + ReportsRemoteConfig). */
  remoteConfig: boolean;
}

export interface ConformanceAgent {
  readonly uid: string;
  /** Remote configs the client received. */
  configs(): { hash: string; body: string }[];
  describe(): string;
}

/** The agents gauges of /metrics: connected per transport, and how many are APPLIED. */
export function agentGauges(text: string): { http: number | undefined; websocket: number | undefined; applied: number | undefined } {
  return {
    http: metricValue(text, 'fleetbridge_agents_connected', 'transport="http"'),
    websocket: metricValue(text, 'fleetbridge_agents_connected', 'transport="websocket"'),
    applied: metricValue(text, 'fleetbridge_agents_config_status', 'state="applied"'),
  };
}

/** The agents gauges lines of /metrics, for failure messages. */
export async function agentGaugeLines(bridge: BridgeProcess): Promise<string> {
  return (await bridge.metricsText())
    .split('\n')
    .filter((l) => /^fleetbridge_agents_(connected|config_status)/.test(l))
    .join('\n');
}

export interface ConformanceOptions {
  /** The bridge (a getter: it is started in beforeAll). */
  bridge: () => BridgeProcess;
  /** The label that carries the row's name. */
  rowLabel: string;
  /** The row's Collector (in namespace default). */
  collectorName: (row: string) => string;
  /** Bound on ordinary steps (a new desired hash). */
  stepMs: number;
  /** Bound on the gauges catching up (the grace plus the test's polling slack). */
  gaugesMs: number;
  /** Characters of the agent's describe() tail in failure messages. */
  agentTail: number;
  /** Also print the bridge's log lines about the agent in failure messages. */
  bridgeLogLines?: boolean;
}

export function conformanceChecks<R extends ConformanceRow, A extends ConformanceAgent>(o: ConformanceOptions) {
  const bridge = o.bridge;

  async function rowState(row: R): Promise<{ collector: CollectorView | undefined; connected: AgentView[] }> {
    const [collector, agents] = await Promise.all([bridge().getCollector(o.collectorName(row.name)), bridge().getAgents()]);
    return { collector, connected: agents.filter((a) => a.connected && a.labels[o.rowLabel] === row.name) };
  }

  /** The fields of an agent view that matter here (views carry health, components, ...). */
  function brief(v: AgentView | undefined): unknown {
    if (!v) return v;
    return {
      uid: v.instanceUid,
      transport: v.transport,
      connected: v.connected,
      presence: v.presence,
      firstSeen: v.firstSeen,
      lastSeen: v.lastSeen,
      seq: v.sequenceNum,
      verified: v.verified?.method ?? null,
      row: v.labels[o.rowLabel],
      described: v.description !== null,
      remoteConfig: { ...v.remoteConfig, desiredHash: v.remoteConfig.desiredHash?.slice(0, 12), reportedHash: v.remoteConfig.reportedHash?.slice(0, 12) },
    };
  }

  /** Bridge log lines (this incarnation and before) about one agent. */
  function bridgeLogFor(uid: string, max = 15): string {
    return bridge()
      .logs.filter((l) => JSON.stringify(l).includes(uid))
      .slice(-max)
      .map((l) => `  ${JSON.stringify(l).slice(0, 400)}`)
      .join('\n');
  }

  async function describeRow(row: R, agent?: A): Promise<string> {
    const name = o.collectorName(row.name);
    const [collector, agents] = await Promise.all([bridge().getCollector(name), bridge().getAgents()]).catch((err: Error) => [err.message, []] as const);
    const { failing, agentVersions, ...counts } = typeof collector === 'object' && collector ? collector.status : ({} as Partial<CollectorView['status']>);
    return [
      `Collector ${name} status: ${JSON.stringify({ ...counts, failing })}`,
      `agents with ${o.rowLabel}=${row.name}:`,
      ...(agents as AgentView[]).filter((a) => a.labels[o.rowLabel] === row.name).map((a) => `  ${JSON.stringify(brief(a))}`),
      agent ? agent.describe().slice(-o.agentTail) : '',
      agent && o.bridgeLogLines ? `bridge log lines about ${agent.uid}:\n${bridgeLogFor(agent.uid)}` : '',
      `bridge: ${bridge().describe().slice(-1500)}`,
    ].join('\n');
  }

  /**
   * The row's agent is up to date in the bridge: connected (heard from at or after `since`),
   * described, authenticated by its token, matched by the row's Collector; with remote config, the
   * client itself received the desired config (optionally `hash`) and the bridge shows it APPLIED.
   */
  function ready(row: R, agent: A, opts: { hash?: string; since?: number } = {}) {
    return async (): Promise<AgentView | undefined> => {
      const view = await bridge().getAgent(agent.uid);
      if (!view?.connected || !view.description || view.transport !== row.transport) return undefined;
      if (opts.since !== undefined && Date.parse(view.lastSeen) < opts.since) return undefined;
      if (view.verified?.method !== 'bearerToken') return undefined;
      if (view.remoteConfig.collectors.join() !== `default/${o.collectorName(row.name)}`) return undefined;
      if (row.remoteConfig) {
        const rc = view.remoteConfig;
        if (rc.status !== 'APPLIED' || !rc.inSync || (opts.hash && rc.reportedHash !== opts.hash)) return undefined;
        if (!agent.configs().some((c) => c.hash === rc.desiredHash)) return undefined;
      }
      return view;
    };
  }

  /** ready(), and the agent is the one and only agent of its row that is counted (Collector status counts and the agents list). */
  function converged(row: R, agent: A, opts: { hash?: string; since?: number } = {}) {
    const isReady = ready(row, agent, opts);
    return async (): Promise<AgentView | undefined> => {
      const view = await isReady();
      if (!view) return undefined;
      const { collector, connected } = await rowState(row);
      const st = collector?.status;
      if (!st || st.matched !== 1 || st.connected !== 1 || st.failed !== 0) return undefined;
      if (row.remoteConfig && st.applied !== 1) return undefined;
      if (connected.length !== 1 || connected[0]!.instanceUid !== agent.uid) return undefined;
      return view;
    };
  }

  const what = (row: R, agent: A) => `${row.name}: agent ${agent.uid} connected, matched${row.remoteConfig ? ', configured and APPLIED' : ''}`;

  const waitReady = (row: R, agent: A, timeoutMs: number, opts: { hash?: string; since?: number } = {}) =>
    waitUntil(ready(row, agent, opts), { timeoutMs, what: what(row, agent), describe: () => describeRow(row, agent) });

  const waitConverged = (row: R, agent: A, timeoutMs: number, opts: { hash?: string; since?: number } = {}) =>
    waitUntil(converged(row, agent, opts), {
      timeoutMs,
      what: `${what(row, agent)}, and the only agent of its row counted (matched=1, connected=1${row.remoteConfig ? ', applied=1' : ''}, failed=0)`,
      describe: () => describeRow(row, agent),
    });

  /** The desired hash for the row's agent once it differs from `not`. */
  const waitDesired = (row: R, agent: A, not: string | null) =>
    waitUntil(
      async () => {
        const h = (await bridge().getAgent(agent.uid))?.remoteConfig.desiredHash;
        return h && h !== not ? h : undefined;
      },
      { timeoutMs: o.stepMs, what: `${row.name}: a new desired hash (not ${not})`, describe: () => describeRow(row, agent) },
    );

  /** Waits until nothing of the row is counted any more; resolves with the ms since `t0`. */
  const waitUncounted = (row: R, t0: number, timeoutMs: number) =>
    waitUntil(
      async () => {
        const { collector, connected } = await rowState(row);
        const st = collector?.status;
        return st && st.matched === 0 && st.connected === 0 && st.applied === 0 && connected.length === 0 ? Date.now() - t0 : undefined;
      },
      { timeoutMs, what: `${row.name}: no agent counted`, describe: () => describeRow(row) },
    );

  /** The /metrics gauges agree with the agents the test keeps running (no one counted twice or after it left). */
  async function expectGauges(live: R[]): Promise<void> {
    const want = {
      http: live.filter((r) => r.transport === 'http').length,
      websocket: live.filter((r) => r.transport === 'websocket').length,
      applied: live.filter((r) => r.remoteConfig).length,
    };
    const got = await waitUntil(
      async () => {
        const g = agentGauges(await bridge().metricsText());
        return g.http === want.http && g.websocket === want.websocket && g.applied === want.applied ? g : undefined;
      },
      {
        timeoutMs: o.gaugesMs,
        what: `gauges fleetbridge_agents_connected{http=${want.http}, websocket=${want.websocket}} and fleetbridge_agents_config_status{applied=${want.applied}}`,
        describe: () => agentGaugeLines(bridge()),
      },
    );
    expect(got).toEqual(want);
  }

  return { rowState, describeRow, ready, converged, waitReady, waitConverged, waitDesired, waitUncounted, expectGauges };
}
