/**
 * Admission guards of the OpAMP server: connection caps, identified agents and connections
 * without a first message per source address (with their deadlines), and the message and byte
 * rates of each connection. All read the server's live options: a change applies to the next
 * connection, message or request.
 */
import type { ResolvedOptions } from './options.js';

function monotonicNow(): number {
  return performance.now();
}

/** A token bucket: `rate` tokens a second, at most `burst` saved up. */
export class TokenBucket {
  #tokens: number;
  #last: number;
  #rate: number;
  #burst: number;
  constructor(
    rate: number,
    burst: number,
    private readonly now: () => number = monotonicNow,
  ) {
    this.#rate = rate;
    this.#burst = burst;
    this.#tokens = burst;
    this.#last = now();
  }

  take(n = 1): boolean {
    this.#refill();
    if (this.#tokens < n) return false;
    this.#tokens -= n;
    return true;
  }

  /** From now on, `rate` tokens a second and at most `burst` saved up; what was saved is kept up to `burst`. */
  setRate(rate: number, burst: number): void {
    if (rate === this.#rate && burst === this.#burst) return;
    this.#refill();
    this.#rate = rate;
    this.#burst = burst;
    this.#tokens = Math.min(this.#tokens, burst);
  }

  #refill(): void {
    const t = this.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((t - this.#last) / 1000) * this.#rate);
    this.#last = t;
  }
}

/** A bucket at `rate` (null for no limit), the same one when there was one. */
function follow(b: TokenBucket | null, rate: number, burst: number): TokenBucket | null {
  if (!(rate > 0)) return null;
  if (!b) return new TokenBucket(rate, burst);
  b.setRate(rate, burst);
  return b;
}

/**
 * One connection's message and byte rates (maxMessagesPerSecond, burst twice that;
 * maxBytesPerSecond, burst one largest message), following the current limits.
 */
export class ConnectionBudget {
  #messages: TokenBucket | null = null;
  #bytes: TokenBucket | null = null;
  #generation = -1;
  constructor(private readonly admission: Admission) {}

  /** False when one more message would exceed the message rate. */
  takeMessage(): boolean {
    this.#sync();
    return this.#messages === null || this.#messages.take();
  }

  /** False when `n` more bytes would exceed the byte rate. */
  takeBytes(n: number): boolean {
    this.#sync();
    return this.#bytes === null || this.#bytes.take(n);
  }

  #sync(): void {
    const a = this.admission;
    if (this.#generation === a.generation) return;
    this.#generation = a.generation;
    const { maxMessagesPerSecond: m, maxBytesPerSecond: b, maxMessageBytes } = a.opts;
    this.#messages = follow(this.#messages, m, Math.max(2 * m, 1));
    this.#bytes = follow(this.#bytes, b, Math.max(maxMessageBytes, 2 * b));
  }
}

/** A connection that has not sent a valid first message yet. */
export interface PendingEntry {
  readonly source: string;
  /** When it was accepted (performance.now()). */
  readonly openedAt: number;
  /** The first-message deadline, while pending. */
  deadline: NodeJS.Timeout | null;
}

export interface PendingActions<T extends PendingEntry> {
  /** `oldest` was taken off the pending list for a newcomer of its address past `cap`: close it. */
  evict(oldest: T, cap: number): void;
  /** `entry`'s deadline passed (`timeoutMs` after it was accepted). */
  expire(entry: T, timeoutMs: number): void;
}

export class Admission<T extends PendingEntry = PendingEntry> {
  /** Bumped by `limitsChanged`: budgets catch up on their next take. */
  generation = 0;
  /** Identified agents per source address. */
  readonly #agents = new Map<string, number>();
  /** Connections without a valid first message yet, per source address, oldest first. */
  readonly #pending = new Map<string, Set<T>>();
  #pendingCount = 0;
  readonly #httpBudgets = new WeakMap<object, ConnectionBudget>();

  constructor(
    readonly opts: ResolvedOptions,
    private readonly actions: PendingActions<T>,
  ) {}

  /** The limits in `opts` changed: rates apply from the next message, deadlines are re-armed. */
  limitsChanged(): void {
    this.generation++;
    const timeout = this.opts.firstMessageTimeoutMs;
    const now = monotonicNow();
    for (const set of this.#pending.values()) {
      for (const e of set) {
        if (e.deadline) clearTimeout(e.deadline);
        e.deadline = null;
        if (timeout > 0) this.#arm(e, Math.max(0, e.openedAt + timeout - now), timeout);
      }
    }
  }

  get pendingCount(): number {
    return this.#pendingCount;
  }

  /** True when `open` WebSocket connections are as many as maxConnections. */
  atConnectionCap(open: number): boolean {
    return open >= this.opts.maxConnections;
  }

  /** True when `source` holds maxConnectionsPerSource identified agents. */
  atSourceCap(source: string): boolean {
    const perSource = this.opts.maxConnectionsPerSource;
    return perSource > 0 && (this.#agents.get(source) ?? 0) >= perSource;
  }

  /** Counts an agent against its address; false (nothing counted) when the address is at maxConnectionsPerSource. */
  addAgent(source: string): boolean {
    if (this.atSourceCap(source)) return false;
    this.#agents.set(source, (this.#agents.get(source) ?? 0) + 1);
    return true;
  }

  removeAgent(source: string): void {
    const n = (this.#agents.get(source) ?? 1) - 1;
    if (n <= 0) this.#agents.delete(source);
    else this.#agents.set(source, n);
  }

  /** Counts a new connection as pending, with its deadline; evicts its source's oldest pending ones past the per-source cap. */
  addPending(entry: T): void {
    let set = this.#pending.get(entry.source);
    if (!set) this.#pending.set(entry.source, (set = new Set()));
    const cap = this.opts.maxPendingConnectionsPerSource;
    // Evict rather than refuse the newcomer: a peer that holds sockets open without speaking
    // cannot lock a well-behaved agent (which speaks at once) out of its address.
    while (cap > 0 && set.size >= cap) {
      const oldest = set.values().next().value!;
      this.removePending(oldest);
      this.actions.evict(oldest, cap);
    }
    if (set.size === 0) this.#pending.set(entry.source, set);
    set.add(entry);
    this.#pendingCount++;
    const timeout = this.opts.firstMessageTimeoutMs;
    if (timeout > 0) this.#arm(entry, timeout, timeout);
  }

  removePending(entry: T): void {
    if (entry.deadline) {
      clearTimeout(entry.deadline);
      entry.deadline = null;
    }
    const set = this.#pending.get(entry.source);
    if (!set?.delete(entry)) return;
    this.#pendingCount--;
    if (set.size === 0) this.#pending.delete(entry.source);
  }

  /** The budget of an HTTP keep-alive socket: one agent's poll loop, never another agent's. */
  httpBudget(socket: object): ConnectionBudget {
    let b = this.#httpBudgets.get(socket);
    if (!b) this.#httpBudgets.set(socket, (b = new ConnectionBudget(this)));
    return b;
  }

  #arm(entry: T, delayMs: number, timeoutMs: number): void {
    entry.deadline = setTimeout(() => {
      entry.deadline = null;
      this.actions.expire(entry, timeoutMs);
    }, delayMs);
    entry.deadline.unref();
  }
}
