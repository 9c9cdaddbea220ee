// A pool of load-generator processes (bench/gen/agent-gen.mjs), each simulating up to 15,000
// OpAMP agents, so that the generator runs outside the server under test and one process never
// needs more than 20,000 open files.
//
//   const pool = new GeneratorPool();
//   await pool.start({ url: 'ws://127.0.0.1:4320/v1/opamp', count: 30000, httpShare: 0.1, deadlineMs: 300_000 });
//   const ms = await pool.waitConnected(120_000);
//   …  await pool.progress(); await pool.appliedTimes(hashHex); await pool.cpu(); await pool.heartbeat(true);
//   …  await pool.latency({ reset: true });   // heartbeat and poll round trips since the last reset
//   await pool.stop();
import { execFileSync, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const WORKER = fileURLToPath(new URL('./agent-gen.mjs', import.meta.url));
const MAX_PER_WORKER = 15_000;
/** 127.0.0.2 … 127.0.0.254: the whole 127/8 is loopback on Linux, no setup needed. */
const LOOPBACK_SOURCES = Array.from({ length: 253 }, (_, i) => `127.0.0.${i + 2}`);

let tasksetChecked = null;
function hasTaskset() {
  if (tasksetChecked === null) {
    try {
      execFileSync('taskset', ['-V'], { stdio: 'ignore' });
      tasksetChecked = true;
    } catch {
      tasksetChecked = false;
    }
  }
  return tasksetChecked;
}

export class GeneratorPool {
  /**
   * @param {object} [o]
   * @param {number} [o.perWorker]      agents per process (default 10,000, at most 15,000)
   * @param {string} [o.cpus]           taskset CPU list for the workers (e.g. "1" or "1-3"), when taskset exists
   * @param {number} [o.uidPrefixBase]  first byte of worker 0's instance uids; worker k uses base + k (default 0xb0)
   * @param {string[]} [o.localAddresses] source addresses to share out (default 127.0.0.2 … 127.0.0.254)
   */
  constructor(o = {}) {
    this.opts = { perWorker: 10_000, uidPrefixBase: 0xb0, localAddresses: LOOPBACK_SOURCES, ...o };
    this.workers = [];
    this.t0 = 0;
    this.nextId = 1;
    this.failure = null;
    this.exitHook = () => {
      for (const w of this.workers) if (!w.exited) w.child.kill('SIGKILL');
    };
  }

  /**
   * Forks the workers and starts every agent connecting. Options are those of the worker's
   * 'start' message (bench/gen/agent-gen.mjs), with `count` the total N, `concurrency` the total
   * connects in flight (shared out) and `deadlineMs` relative to now. Resolves once every worker
   * has started; `waitConnected` then waits for the agents.
   */
  async start(o) {
    if (this.workers.length) throw new Error('GeneratorPool already started');
    const opts = { ...this.opts, ...o };
    const N = Math.floor(opts.count ?? 0);
    const perWorker = Math.min(MAX_PER_WORKER, Math.max(1, opts.perWorker));
    const K = Math.max(1, Math.ceil(N / perWorker));
    const sources = opts.localAddresses;
    if (sources.length < K) throw new Error(`${K} workers need at least ${K} source addresses, have ${sources.length}`);
    const perSource = Math.floor(sources.length / K);
    const deadline = Date.now() + (opts.deadlineMs ?? 600_000);
    const concurrency = Math.max(1, Math.ceil((opts.concurrency ?? 200) / K));
    process.once('exit', this.exitHook);

    let first = 0;
    for (let k = 0; k < K; k++) {
      const count = Math.floor(N / K) + (k < N % K ? 1 : 0);
      const child = fork(WORKER, [], { stdio: ['ignore', 2, 2, 'ipc'], execArgv: [] });
      const w = {
        k,
        child,
        count,
        firstIndex: first,
        localAddresses: sources.slice(k * perSource, (k + 1) * perSource),
        uidPrefix: (opts.uidPrefixBase + k) & 0xff,
        pending: new Map(),
        ready: null,
        connectedAt: null,
        connectedMs: null,
        lastProgress: null,
        exited: false,
        exitCode: null,
        stoppedReason: null,
      };
      first += count;
      w.ready = new Promise((resolve, reject) => {
        w.onReady = resolve;
        w.onReadyFail = reject;
      });
      child.on('message', (m) => this.#onMessage(w, m));
      child.on('exit', (code, signal) => {
        w.exited = true;
        w.exitCode = code ?? signal;
        const err = new Error(`generator worker ${k} (pid ${child.pid}) exited (${code ?? signal})${w.stoppedReason ? `: ${w.stoppedReason}` : ''}`);
        if (!this.stopping && !this.failure) this.failure = err;
        w.onReadyFail(err);
        for (const p of w.pending.values()) p.reject(err);
        w.pending.clear();
      });
      if (opts.cpus && hasTaskset()) {
        try {
          execFileSync('taskset', ['-cp', String(opts.cpus), String(child.pid)], { stdio: 'ignore' });
        } catch {
          /* pinning is best effort */
        }
      }
      this.workers.push(w);
    }
    await Promise.all(this.workers.map((w) => w.ready));
    this.t0 = performance.now();
    const started = await Promise.all(
      this.workers.map((w) =>
        this.#request(w, {
          type: 'start',
          url: opts.url,
          httpUrl: opts.httpUrl,
          count: w.count,
          firstIndex: w.firstIndex,
          httpShare: opts.httpShare ?? 0,
          localAddresses: w.localAddresses,
          heartbeatSeconds: opts.heartbeatSeconds ?? 30,
          heartbeat: opts.heartbeat ?? false,
          httpPollSeconds: opts.httpPollSeconds ?? opts.heartbeatSeconds ?? 30,
          concurrency,
          effectiveConfigBytes: opts.effectiveConfigBytes ?? 3000,
          uidPrefix: w.uidPrefix,
          deadlineMs: deadline,
          namespace: opts.namespace,
          labels: opts.labels,
          reconnectBaseMs: opts.reconnectBaseMs,
          reconnectMaxMs: opts.reconnectMaxMs,
        }),
      ),
    );
    return { workers: K, counts: this.workers.map((w) => w.count), httpAgents: started.reduce((n, m) => n + m.http, 0), pids: this.workers.map((w) => w.child.pid) };
  }

  #onMessage(w, m) {
    if (!m || typeof m !== 'object') return;
    if (m.type === 'ready') return w.onReady();
    if (m.type === 'progress') w.lastProgress = m;
    if (m.type === 'connected-all') {
      w.connectedAt = performance.now();
      w.connectedMs = m.ms;
    }
    if (m.type === 'stopped') w.stoppedReason = m.reason;
    if (m.id !== undefined && w.pending.has(m.id)) {
      const p = w.pending.get(m.id);
      w.pending.delete(m.id);
      if (m.type === 'error') p.reject(new Error(`generator worker ${w.k}: ${m.message}`));
      else p.resolve(m);
    }
  }

  #request(w, msg, timeoutMs = 30_000) {
    if (w.exited) return Promise.reject(new Error(`generator worker ${w.k} has exited`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        w.pending.delete(id);
        reject(new Error(`generator worker ${w.k}: no answer to ${msg.type} in ${timeoutMs} ms`));
      }, timeoutMs);
      w.pending.set(id, {
        resolve: (v) => (clearTimeout(t), resolve(v)),
        reject: (e) => (clearTimeout(t), reject(e)),
      });
      w.child.send({ ...msg, id });
    });
  }

  #all(msg) {
    return Promise.all(this.workers.map((w) => this.#request(w, msg)));
  }

  /**
   * Resolves with the ms from start() until every agent of every worker had the answer to its
   * first message; rejects after timeoutMs (with the progress so far) or when a worker dies.
   */
  async waitConnected(timeoutMs = 120_000) {
    const until = performance.now() + timeoutMs;
    for (;;) {
      if (this.failure) throw this.failure;
      if (this.workers.every((w) => w.connectedAt !== null)) {
        return Math.max(...this.workers.map((w) => w.connectedAt)) - this.t0;
      }
      if (performance.now() > until) {
        const p = this.latest();
        throw new Error(`not all agents connected in ${timeoutMs} ms: ${p.everConnected}/${p.count} connected, ${p.errors} errors ${JSON.stringify(p.errorKinds)}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Fresh counts from every worker, summed (applied: hashHex → agents whose current config it is). */
  async progress() {
    return sum(await this.#all({ type: 'progress?' }));
  }

  /** The counts of the last 250 ms reports, summed, without asking. */
  latest() {
    return sum(this.workers.map((w) => w.lastProgress).filter(Boolean));
  }

  /**
   * When each agent received config `hashHex` and answered APPLIED: wall-clock ms (epoch), sorted.
   * `transport` ('websocket' | 'http') keeps only those agents.
   */
  async appliedTimes(hashHex, transport) {
    const parts = await this.#all({ type: 'report', hash: hashHex, transport });
    const all = new Float64Array(parts.reduce((n, p) => n + p.times.length, 0));
    let off = 0;
    for (const p of parts) {
      all.set(p.times, off);
      off += p.times.length;
    }
    return Array.from(all.sort());
  }

  /**
   * Generator CPU since the previous cpu() call (the first: since the workers started), summed
   * over workers: { ms, userMs, systemMs, wallMs, share } — share is in cores (1 = one core busy).
   */
  async cpu() {
    const parts = await this.#all({ type: 'cpu?' });
    const userMs = parts.reduce((n, p) => n + p.user, 0);
    const systemMs = parts.reduce((n, p) => n + p.system, 0);
    const wallMs = Math.max(...parts.map((p) => p.wallMs));
    return { ms: userMs + systemMs, userMs, systemMs, wallMs, share: wallMs > 0 ? (userMs + systemMs) / wallMs : 0, perWorker: parts.map((p) => p.user + p.system) };
  }

  /**
   * Round trips since the previous latency({ reset: true }), all workers merged: for WebSocket
   * heartbeats (sent → answered) and HTTP polls (request → response), { count, p50Ms, p90Ms, p99Ms,
   * p999Ms, maxMs } (the upper bound of the histogram bucket: at most 9 % high); outstandingMaxMs: the oldest heartbeat
   * still unanswered when asked.
   */
  async latency({ reset = false } = {}) {
    const parts = await this.#all({ type: 'latency?', reset });
    const merge = (key) => {
      const h = new Float64Array(parts[0][key].length);
      for (const p of parts) for (let i = 0; i < h.length; i++) h[i] += p[key][i];
      return summarizeHistogram(h, parts[0].bucketsPerOctave);
    };
    return { websocket: merge('websocket'), http: merge('http'), outstandingMaxMs: Math.max(0, ...parts.map((p) => p.outstandingMaxMs)) };
  }

  /** WebSocket agents' heartbeats on or off (HTTP agents always poll every httpPollSeconds). */
  async heartbeat(on, seconds) {
    await this.#all({ type: 'heartbeat', on, seconds });
  }

  /** Closes every agent's connection (with agent_disconnect when `disconnect`) and ends the workers. */
  async stop({ disconnect = false, timeoutMs = 10_000 } = {}) {
    this.stopping = true;
    await Promise.all(
      this.workers.map(async (w) => {
        if (w.exited) return;
        const exited = new Promise((r) => w.child.once('exit', r));
        try {
          w.child.send({ type: 'stop', disconnect });
        } catch {
          /* already gone */
        }
        const t = setTimeout(() => w.child.kill('SIGKILL'), timeoutMs);
        await exited;
        clearTimeout(t);
      }),
    );
    process.off('exit', this.exitHook);
  }
}

/** Percentiles of a log-scale µs histogram (bucket i: [2^(i/B), 2^((i+1)/B)) µs), as each bucket's upper bound in ms. */
export function summarizeHistogram(h, bucketsPerOctave) {
  const count = h.reduce((n, c) => n + c, 0);
  const upperMs = (i) => 2 ** ((i + 1) / bucketsPerOctave) / 1000;
  const at = (q) => {
    if (count === 0) return null;
    const rank = Math.max(1, Math.ceil(count * q));
    let seen = 0;
    for (let i = 0; i < h.length; i++) {
      seen += h[i];
      if (seen >= rank) return upperMs(i);
    }
    return upperMs(h.length - 1);
  };
  let last = -1;
  for (let i = h.length - 1; i >= 0; i--) if (h[i] > 0) { last = i; break; }
  return { count, p50Ms: at(0.5), p90Ms: at(0.9), p99Ms: at(0.99), p999Ms: at(0.999), maxMs: last < 0 ? null : upperMs(last) };
}

function sum(parts) {
  const out = { workers: parts.length, count: 0, connected: 0, everConnected: 0, errors: 0, errorKinds: {}, reconnects: 0, disconnects: 0, sent: 0, received: 0, heartbeats: 0, fullStateRequests: 0, configsReceived: 0, applied: {}, loopLagP99Ms: 0, loopLagMaxMs: 0 };
  for (const p of parts) {
    for (const k of ['count', 'connected', 'everConnected', 'errors', 'reconnects', 'disconnects', 'sent', 'received', 'heartbeats', 'fullStateRequests', 'configsReceived']) out[k] += p[k] ?? 0;
    for (const [h, n] of Object.entries(p.applied ?? {})) out.applied[h] = (out.applied[h] ?? 0) + n;
    for (const [h, n] of Object.entries(p.errorKinds ?? {})) out.errorKinds[h] = (out.errorKinds[h] ?? 0) + n;
    out.loopLagP99Ms = Math.max(out.loopLagP99Ms, p.loopLagP99Ms ?? 0);
    out.loopLagMaxMs = Math.max(out.loopLagMaxMs, p.loopLagMaxMs ?? 0);
  }
  return out;
}
