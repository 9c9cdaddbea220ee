/**
 * A well-behaved agent that heartbeats while a test attacks the bridge, and records how long each
 * answer took: the abuse tests assert that it keeps being answered (within 2 s) whatever the
 * attackers do. It runs in its own process (bystander-child.mjs), so that the attackers' work in the
 * test process (encoding megabytes, sending thousands of requests) never delays its clock; run the
 * bridge as a child process too (test/harness/bridge-process.ts).
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnJsonLines, type JsonLinesChild } from './child-process.js';

const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'bystander-child.mjs');

export interface Bystander {
  readonly child: JsonLinesChild;
  /** Round-trip times of every heartbeat answered so far, ms. */
  latencies(): number[];
  /** The longest wait for an answer so far, including a heartbeat still unanswered now. */
  worstMs(): number;
  /** Stops heartbeating and closes; resolves with the latencies. */
  stop(): Promise<number[]>;
}

/**
 * Connects to `wsUrl` with `headers`, reports a description (service.name bystander), and sends a
 * heartbeat every `intervalMs` (default 250), one at a time. Resolves after its first answer.
 */
export async function startBystander(wsUrl: string, opts: { headers?: Record<string, string>; intervalMs?: number } = {}): Promise<Bystander> {
  const child = spawnJsonLines(process.execPath, [CHILD, wsUrl, JSON.stringify(opts.headers ?? {}), String(opts.intervalMs ?? 250)], { name: 'bystander' });
  await child.waitFor((e) => e['event'] === 'answer', { timeoutMs: 10_000 });
  const latencies = () => child.events.filter((e) => e['event'] === 'answer').map((e) => e['ms'] as number);
  return {
    child,
    latencies,
    worstMs() {
      const closed = child.events.find((e) => e['event'] === 'closed');
      if (closed) return Number.POSITIVE_INFINITY;
      const last = child.events.at(-1);
      const open = last?.['event'] === 'sent' ? Date.now() - (last['at'] as number) : 0;
      return Math.max(open, ...latencies(), 0);
    },
    async stop() {
      await child.stop();
      return latencies();
    },
  };
}
