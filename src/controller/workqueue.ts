/**
 * A work queue in the controller-runtime mould: keys, not events. Adding a key that is already
 * waiting does nothing (dedupe); a key is never processed twice at once (a key added while it is
 * being processed runs once more afterwards); a failing key is retried with exponential backoff;
 * and a key runs at most once per `minIntervalMs` (coalescing, e.g. one status write per object
 * per second).
 */
import type { Logger } from 'pino';

export type ReconcileResult = void | { requeueAfterMs?: number };

/** Thrown by a reconciler for an error that retrying cannot fix: recorded, not retried. */
export class TerminalError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'TerminalError';
  }
}

export interface WorkQueueOptions {
  name: string;
  logger: Logger;
  process: (key: string) => Promise<ReconcileResult>;
  /** Workers processing different keys at once. Default 2. */
  concurrency?: number;
  /** First retry delay after a failure, ms; doubles per consecutive failure. Default 200. */
  baseDelayMs?: number;
  /** Longest retry delay, ms. Default 30,000. */
  maxDelayMs?: number;
  /** Least time between two runs of one key, ms. Default 0. */
  minIntervalMs?: number;
  onResult?: (key: string, outcome: 'success' | 'error' | 'terminal', seconds: number) => void;
}

interface KeyState {
  timer: NodeJS.Timeout | null;
  dueAt: number;
  running: boolean;
  dirty: boolean;
  failures: number;
  lastRunAt: number;
}

export class WorkQueue {
  readonly #o: Required<Omit<WorkQueueOptions, 'onResult'>> & Pick<WorkQueueOptions, 'onResult'>;
  readonly #keys = new Map<string, KeyState>();
  readonly #ready: string[] = [];
  readonly #readySet = new Set<string>();
  #active = 0;
  #stopped = false;
  #idleWaiters: (() => void)[] = [];

  constructor(opts: WorkQueueOptions) {
    this.#o = { concurrency: 2, baseDelayMs: 200, maxDelayMs: 30_000, minIntervalMs: 0, ...opts };
  }

  /** Keys waiting or running. */
  get depth(): number {
    let waiting = 0;
    for (const s of this.#keys.values()) if (s.timer) waiting++;
    return this.#ready.length + waiting;
  }

  add(key: string): void {
    this.#schedule(key, 0);
  }

  addAfter(key: string, delayMs: number): void {
    this.#schedule(key, delayMs);
  }

  /** Resolves when nothing is waiting or running (for tests and orderly shutdown). */
  idle(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((r) => this.#idleWaiters.push(r));
  }

  shutdown(): void {
    this.#stopped = true;
    for (const s of this.#keys.values()) if (s.timer) clearTimeout(s.timer);
    this.#keys.clear();
    this.#ready.length = 0;
    this.#readySet.clear();
  }

  #state(key: string): KeyState {
    let s = this.#keys.get(key);
    if (!s) this.#keys.set(key, (s = { timer: null, dueAt: 0, running: false, dirty: false, failures: 0, lastRunAt: -Infinity }));
    return s;
  }

  #schedule(key: string, delayMs: number): void {
    if (this.#stopped) return;
    const s = this.#state(key);
    if (s.running) {
      // Processed once more after the current run; the run re-reads current state.
      s.dirty = true;
      return;
    }
    if (this.#readySet.has(key)) return;
    const now = Date.now();
    const due = Math.max(now + delayMs, s.lastRunAt + this.#o.minIntervalMs);
    if (s.timer) {
      if (s.dueAt <= due) return;
      clearTimeout(s.timer);
      s.timer = null;
    }
    if (due <= now) {
      this.#enqueue(key);
      return;
    }
    s.dueAt = due;
    s.timer = setTimeout(() => {
      s.timer = null;
      this.#enqueue(key);
    }, due - now);
    s.timer.unref?.();
  }

  #enqueue(key: string): void {
    if (this.#readySet.has(key)) return;
    this.#ready.push(key);
    this.#readySet.add(key);
    this.#pump();
  }

  #pump(): void {
    while (!this.#stopped && this.#active < this.#o.concurrency) {
      const idx = this.#ready.findIndex((k) => !this.#keys.get(k)?.running);
      if (idx === -1) break;
      const [key] = this.#ready.splice(idx, 1);
      this.#readySet.delete(key!);
      void this.#run(key!);
    }
    if (this.#isIdle()) for (const w of this.#idleWaiters.splice(0)) w();
  }

  async #run(key: string): Promise<void> {
    const s = this.#state(key);
    s.running = true;
    s.dirty = false;
    s.lastRunAt = Date.now();
    this.#active++;
    const start = process.hrtime.bigint();
    let next: number | null = null;
    try {
      const r = await this.#o.process(key);
      s.failures = 0;
      this.#o.onResult?.(key, 'success', seconds(start));
      if (r && r.requeueAfterMs !== undefined) next = r.requeueAfterMs;
    } catch (err) {
      if (err instanceof TerminalError) {
        s.failures = 0;
        this.#o.onResult?.(key, 'terminal', seconds(start));
        this.#o.logger.error({ queue: this.#o.name, key, err: err.message }, 'Reconcile failed and will not be retried');
      } else {
        s.failures++;
        next = Math.min(this.#o.baseDelayMs * 2 ** (s.failures - 1), this.#o.maxDelayMs);
        this.#o.onResult?.(key, 'error', seconds(start));
        this.#o.logger.warn({ queue: this.#o.name, key, err: (err as Error).message, retryInMs: next, failures: s.failures }, 'Reconcile failed; retrying');
      }
    } finally {
      s.running = false;
      this.#active--;
    }
    if (this.#stopped) return;
    if (s.dirty) this.#schedule(key, 0);
    if (next !== null) this.#schedule(key, next);
    if (!s.timer && !this.#readySet.has(key) && s.failures === 0 && !s.dirty) {
      // Forget idle keys, but keep lastRunAt while it still limits the next run.
      if (this.#o.minIntervalMs === 0) this.#keys.delete(key);
    }
    this.#pump();
  }

  #isIdle(): boolean {
    if (this.#active > 0 || this.#ready.length > 0) return false;
    for (const s of this.#keys.values()) if (s.timer || s.running) return false;
    return true;
  }
}

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}
