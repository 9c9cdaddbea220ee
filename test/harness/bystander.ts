/**
 * A well-behaved agent that heartbeats while a test attacks the bridge, and records how long each
 * answer took: the abuse tests assert that it keeps being answered (within 2 s) whatever the
 * attackers do. Run the bridge as a child process (test/harness/bridge-process.ts) so that the
 * attackers' own work in the test process does not delay the bystander's clock.
 */
import { RawWsAgent } from './raw-agent.js';

export interface Bystander {
  readonly agent: RawWsAgent;
  /** Round-trip times of every heartbeat answered so far, ms. */
  readonly latencies: number[];
  /** The longest wait for an answer so far, including a heartbeat still unanswered now. */
  worstMs(): number;
  /** Stops heartbeating; resolves with the latencies. Throws if the connection closed meanwhile. */
  stop(): Promise<number[]>;
}

/**
 * Connects to `wsUrl` with `headers`, reports a description, and sends a heartbeat every
 * `intervalMs` (default 250), one at a time: the next goes when the last was answered or the
 * interval passed, whichever is later.
 */
export async function startBystander(wsUrl: string, opts: { headers?: Record<string, string>; intervalMs?: number; attributes?: Record<string, string> } = {}): Promise<Bystander> {
  const agent = await RawWsAgent.connect(wsUrl, undefined, opts.headers ?? {});
  const interval = opts.intervalMs ?? 250;
  const latencies: number[] = [];
  const attrs = Object.entries({ 'service.name': 'bystander', ...(opts.attributes ?? {}) }).map(([key, v]) => ({ key, value: { stringValue: v } }));
  agent.send({ agentDescription: { identifyingAttributes: attrs }, capabilities: 1 });
  await agent.waitForMessages(1, 10_000);
  let stopped = false;
  let pendingSince: number | null = null;
  const loop = (async () => {
    while (!stopped) {
      const n = agent.received.length;
      pendingSince = Date.now();
      agent.send({ capabilities: 1 });
      await agent.waitForMessages(n + 1, 30_000);
      latencies.push(Date.now() - pendingSince);
      pendingSince = null;
      const wait = interval - latencies[latencies.length - 1]!;
      if (wait > 0 && !stopped) await new Promise((r) => setTimeout(r, wait));
    }
  })();
  return {
    agent,
    latencies,
    worstMs() {
      const open = pendingSince === null ? 0 : Date.now() - pendingSince;
      return Math.max(open, ...latencies, 0);
    },
    async stop() {
      stopped = true;
      await loop;
      agent.close();
      return latencies;
    },
  };
}
