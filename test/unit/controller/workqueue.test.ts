import { describe, expect, it, vi } from 'vitest';
import { pino } from 'pino';
import { TerminalError, WorkQueue } from '../../../src/controller/workqueue.js';

const logger = pino({ level: 'silent' });

describe('WorkQueue', () => {
  it('dedupes a key added many times while it waits', async () => {
    const runs: string[] = [];
    const q = new WorkQueue({ name: 't', logger, process: async (k) => void runs.push(k), minIntervalMs: 0 });
    q.addAfter('a', 20);
    for (let i = 0; i < 10; i++) q.addAfter('a', 20);
    q.add('b');
    await vi.waitFor(() => expect(runs.sort()).toEqual(['a', 'b']));
    await q.idle();
    expect(runs).toHaveLength(2);
  });

  it('never runs one key twice at once, and runs it again when it was added during a run', async () => {
    let running = 0;
    let maxRunning = 0;
    let runs = 0;
    let release!: () => void;
    const q = new WorkQueue({
      name: 't',
      logger,
      concurrency: 4,
      process: async () => {
        running++;
        runs++;
        maxRunning = Math.max(maxRunning, running);
        if (runs === 1) await new Promise<void>((r) => (release = r));
        running--;
      },
    });
    q.add('k');
    await vi.waitFor(() => expect(runs).toBe(1));
    q.add('k');
    q.add('k');
    release();
    await q.idle();
    expect(runs).toBe(2);
    expect(maxRunning).toBe(1);
  });

  it('retries a failing key with growing delays, and stops after success', async () => {
    const at: number[] = [];
    const q = new WorkQueue({
      name: 't',
      logger,
      baseDelayMs: 20,
      process: async () => {
        at.push(Date.now());
        if (at.length < 4) throw new Error('apiserver unavailable');
      },
    });
    q.add('k');
    await vi.waitFor(() => expect(at).toHaveLength(4), { timeout: 2000 });
    await q.idle();
    const gaps = at.slice(1).map((t, i) => t - at[i]!);
    expect(gaps[0]).toBeGreaterThanOrEqual(18);
    expect(gaps[1]).toBeGreaterThanOrEqual(38);
    expect(gaps[2]).toBeGreaterThanOrEqual(78);
    expect(at).toHaveLength(4);
  });

  it('does not retry a TerminalError', async () => {
    let runs = 0;
    const outcomes: string[] = [];
    const q = new WorkQueue({ name: 't', logger, baseDelayMs: 5, process: async () => { runs++; throw new TerminalError('bad spec'); }, onResult: (_k, outcome) => void outcomes.push(outcome) });
    q.add('k');
    // idle() waits for scheduled retries too: it resolves once no key has a retry pending.
    await q.idle();
    expect(outcomes).toEqual(['terminal']);
    expect(runs).toBe(1);
  });

  it('runs one key at most once per minIntervalMs, coalescing adds in between', async () => {
    const at: number[] = [];
    const q = new WorkQueue({ name: 't', logger, minIntervalMs: 150, process: async () => void at.push(Date.now()) });
    q.add('k');
    await vi.waitFor(() => expect(at).toHaveLength(1));
    for (let i = 0; i < 20; i++) q.add('k');
    await vi.waitFor(() => expect(at).toHaveLength(2), { timeout: 1000 });
    await q.idle();
    expect(at).toHaveLength(2);
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(145);
  });

  it('honours requeueAfterMs', async () => {
    let runs = 0;
    const q = new WorkQueue({ name: 't', logger, process: async () => (++runs < 3 ? { requeueAfterMs: 10 } : undefined) });
    q.add('k');
    await vi.waitFor(() => expect(runs).toBe(3));
  });
});
