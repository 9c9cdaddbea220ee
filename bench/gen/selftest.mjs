#!/usr/bin/env node
// Self-check of the load generator against the real server, on loopback, bounded in count and time:
//
//   node bench/gen/selftest.mjs                 # 2,000 agents, 10 % over HTTP, 60 s deadline
//   SELFTEST_AGENTS=10000 SELFTEST_TIMEOUT_MS=120000 node bench/gen/selftest.mjs
//
// Starts `node dist/src/main.js standalone` (built first when dist/ is missing) in its own process
// with one Collector manifest selecting the agents (bench=yes, namespace bench), then runs the
// agents through connect → config → APPLIED → heartbeats → a manifest edit → APPLIED again →
// a server restart (reconnect storm), printing timings, the generator's and the server's CPU.
// Env: SELFTEST_AGENTS (≤ 15,000), SELFTEST_HTTP_SHARE (0.1), SELFTEST_PER_WORKER (10,000),
// SELFTEST_TIMEOUT_MS (60,000, at most 300,000), SELFTEST_RESTART (1; 0 skips the restart).
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GeneratorPool } from './pool.mjs';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const N = Math.min(Number(process.env.SELFTEST_AGENTS ?? 2000), 15_000);
const HTTP_SHARE = Number(process.env.SELFTEST_HTTP_SHARE ?? 0.1);
const TIMEOUT = Math.min(Number(process.env.SELFTEST_TIMEOUT_MS ?? 60_000), 300_000);
const RESTART = process.env.SELFTEST_RESTART !== '0';
const DEADLINE = Date.now() + TIMEOUT;
const HTTP_POLL_SECONDS = 2;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const left = () => DEADLINE - Date.now();
function check(what) {
  if (Date.now() > DEADLINE) throw new Error(`selftest deadline passed (${what})`);
}
async function until(what, fn, everyMs = 20) {
  for (;;) {
    check(what);
    const v = await fn();
    if (v) return v;
    await sleep(everyMs);
  }
}
async function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}
function cpuMsOf(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
}
function rssMiB(pid) {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
}
const pct = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))];
const fmt = (ms) => `${ms.toFixed(0)} ms`;

function manifest(endpoint) {
  return `apiVersion: fleetbridge.dev/v1alpha1
kind: Collector
metadata: { name: bench, namespace: bench }
spec:
  selector: { matchLabels: { bench: "yes" } }
  config:
    receivers: { otlp: { protocols: { grpc: {}, http: {} } } }
    processors: { batch: {}, memory_limiter: { check_interval: 1s, limit_percentage: 80 } }
    exporters: { otlphttp: { endpoint: "${endpoint}" } }
    service: { pipelines: { traces: { receivers: [otlp], processors: [memory_limiter, batch], exporters: [otlphttp] }, metrics: { receivers: [otlp], processors: [memory_limiter, batch], exporters: [otlphttp] } } }
`;
}

if (!existsSync(join(ROOT, 'dist/src/main.js')) || !existsSync(join(ROOT, 'dist/src/opamp/generated/opamp.js'))) {
  execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.json')], { stdio: 'inherit' });
}
const dir = mkdtempSync(join(tmpdir(), 'fleetbridge-gen-selftest-'));
writeFileSync(join(dir, 'bench.yaml'), manifest('https://a.example'));
const [opampPort, httpPort] = [await freePort(), await freePort()];
const twoCores = cpus().length >= 2;
let taskset = false;
try {
  execFileSync('taskset', ['-V'], { stdio: 'ignore' });
  taskset = twoCores;
} catch { /* no taskset */ }

let server = null;
function startServer() {
  const args = [join(ROOT, 'dist/src/main.js'), 'standalone', '--manifests', dir, '--opamp-port', String(opampPort), '--http-port', String(httpPort), '--host', '127.0.0.1', '--heartbeat-interval', '30'];
  const env = { ...process.env, FLEETBRIDGE_LOG_LEVEL: 'warn', FLEETBRIDGE_LOG_FORMAT: 'json' };
  server = taskset
    ? spawn('taskset', ['-c', '0', process.execPath, ...args], { stdio: ['ignore', 'ignore', 'inherit'], env })
    : spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'], env });
  server.exited = new Promise((r) => server.once('exit', r));
}
async function stopServer() {
  if (!server || server.exitCode !== null || server.signalCode !== null) return;
  server.kill('SIGTERM');
  const t = setTimeout(() => server.kill('SIGKILL'), 5000);
  await server.exited;
  clearTimeout(t);
}
const api = `http://127.0.0.1:${httpPort}`;
async function ready() {
  await until('server ready', async () => {
    try {
      return (await fetch(`${api}/readyz`)).ok;
    } catch {
      return false;
    }
  }, 50);
}
async function collector() {
  const body = await (await fetch(`${api}/api/v1/collectors`)).json();
  return body.collectors.find((c) => c.name === 'bench' || c.metadata?.name === 'bench') ?? body.collectors[0];
}

const pool = new GeneratorPool({ perWorker: Number(process.env.SELFTEST_PER_WORKER ?? 10_000), ...(taskset ? { cpus: '1' } : {}) });
const rows = [];
const row = (k, v) => {
  rows.push([k, v]);
  console.log(`${k}: ${v}`);
};
let failed = false;
try {
  startServer();
  await ready();
  const srvCpu0 = cpuMsOf(server.pid);

  // 1. Connect: full state → config → APPLIED.
  const startWall = Date.now();
  const info = await pool.start({
    url: `ws://127.0.0.1:${opampPort}/v1/opamp`,
    httpUrl: `http://127.0.0.1:${opampPort}/v1/opamp`,
    count: N,
    httpShare: HTTP_SHARE,
    heartbeatSeconds: 10,
    httpPollSeconds: HTTP_POLL_SECONDS,
    concurrency: 200,
    effectiveConfigBytes: 3000,
    deadlineMs: left() + 2000,
  });
  row('generator', `${info.workers} worker(s) ${JSON.stringify(info.counts)}, ${info.httpAgents} HTTP agents (poll ${HTTP_POLL_SECONDS} s), ${taskset ? 'server on CPU 0, generator on CPU 1' : 'no CPU pinning'}`);
  const connectMs = await pool.waitConnected(left());
  row('connect (first message answered)', `${N} agents in ${fmt(connectMs)} (${Math.round(N / (connectMs / 1000))}/s)`);
  const first = await until('first config applied by all', async () => {
    const p = await pool.progress();
    const e = Object.entries(p.applied).find(([, n]) => n === N);
    return e ? { hash: e[0], p } : null;
  });
  const t1 = await pool.appliedTimes(first.hash);
  row('first config APPLIED by all', `${fmt(t1[t1.length - 1] - startWall)} after start (p50 ${fmt(pct(t1, 0.5) - startWall)}), hash ${first.hash.slice(0, 12)}…`);
  await until('API shows all applied', async () => (await collector())?.status?.applied === N);
  row('API status.applied', `${N} after ${fmt(Date.now() - startWall)}`);
  const c1 = await pool.cpu();
  const s1 = cpuMsOf(server.pid);
  row('CPU, connect phase', `generator ${fmt(c1.ms)} (${(c1.share * 100).toFixed(0)} % of a core over ${fmt(c1.wallMs)}), server ${fmt(s1 - srvCpu0)}; server RSS ${rssMiB(server.pid).toFixed(0)} MiB`);

  // 2. Heartbeats: every WebSocket agent once a second for 5 s.
  await pool.heartbeat(true, 1);
  const hbS0 = cpuMsOf(server.pid);
  await pool.cpu();
  const hbP0 = await pool.progress();
  await sleep(Math.min(5000, Math.max(0, left() - 25_000)));
  const hbC = await pool.cpu();
  const hbP1 = await pool.progress();
  await pool.heartbeat(false);
  const beats = hbP1.heartbeats - hbP0.heartbeats;
  const hbSrv = cpuMsOf(server.pid) - hbS0;
  const polls = hbP1.sent - hbP0.sent - beats;
  row('heartbeats (1/s per WebSocket agent; HTTP agents keep polling)', `${beats} heartbeats + ${polls} HTTP polls in ${fmt(hbC.wallMs)}: generator ${(hbC.share * 100).toFixed(0)} % of a core, server ${((hbSrv / hbC.wallMs) * 100).toFixed(0)} % (${((hbSrv * 1000) / Math.max(1, beats + polls)).toFixed(1)} µs per message); generator loop lag p99 ${hbP1.loopLagP99Ms.toFixed(1)} ms`);

  // 3. Config edit: manifest change → every agent APPLIED the new hash.
  await pool.cpu();
  const editS0 = cpuMsOf(server.pid);
  const tEdit = Date.now();
  writeFileSync(join(dir, '.bench.tmp'), manifest('https://b.example'));
  renameSync(join(dir, '.bench.tmp'), join(dir, 'bench.yaml'));
  const second = await until('edited config applied by all', async () => {
    const p = await pool.progress();
    const e = Object.entries(p.applied).find(([h, n]) => h !== first.hash && n === N);
    return e ? { hash: e[0], p } : null;
  });
  const t2 = (await pool.appliedTimes(second.hash)).map((t) => t - tEdit);
  const t2ws = (await pool.appliedTimes(second.hash, 'websocket')).map((t) => t - tEdit);
  const t2http = (await pool.appliedTimes(second.hash, 'http')).map((t) => t - tEdit);
  const dist = (t) => (t.length ? `p50 ${fmt(pct(t, 0.5))}, p99 ${fmt(pct(t, 0.99))}, last ${fmt(t[t.length - 1])}` : 'none');
  row('config edit → APPLIED', `all ${t2.length}: ${dist(t2)}; WebSocket ${t2ws.length}: ${dist(t2ws)}; HTTP ${t2http.length}: ${dist(t2http)} (HTTP agents get it at their next poll; all include the 100 ms watcher debounce)`);
  await until('API shows all applied after the edit', async () => {
    const c = await collector();
    return c?.status?.applied === N;
  });
  row('config edit → API status.applied', `${N} after ${fmt(Date.now() - tEdit)}`);
  const eC = await pool.cpu();
  row('CPU, config edit', `generator ${fmt(eC.ms)}, server ${fmt(cpuMsOf(server.pid) - editS0)}`);

  // 4. Server restart: every agent reconnects (backoff 1 s ± 50 %) and sends its full state.
  if (RESTART && left() > 15_000) {
    const before = await pool.progress();
    const tKill = Date.now();
    await stopServer();
    startServer();
    await ready();
    const tUp = Date.now();
    await until('all reconnected', async () => {
      const p = await pool.progress();
      // WebSocket agents all reconnect; HTTP agents just poll again (a new server asks them for full state).
      return p.connected === N && p.reconnects - before.reconnects >= N - info.httpAgents ? p : null;
    }, 50);
    const after = await pool.progress();
    row('server restart', `down ${fmt(tUp - tKill)}; all ${N} reconnected ${fmt(Date.now() - tUp)} after it was ready; ${after.reconnects - before.reconnects} reconnects, ${after.fullStateRequests - before.fullStateRequests} ReportFullState, ${after.errors - before.errors} connect errors ${JSON.stringify(Object.fromEntries(Object.entries(after.errorKinds).map(([k, v]) => [k, v - (before.errorKinds[k] ?? 0)]).filter(([, v]) => v > 0)))}`);
    await until('API shows all applied after the restart', async () => (await collector())?.status?.applied === N, 50);
    row('after restart, API status.applied', `${N} (no config re-push: ${after.configsReceived - before.configsReceived} configs received)`);
  }

  const end = await pool.progress();
  row('totals', `${end.sent} sent, ${end.received} received, ${end.errors} errors ${JSON.stringify(end.errorKinds)}`);
} catch (err) {
  failed = true;
  console.error(`selftest FAILED: ${err.stack ?? err}`);
  try {
    console.error('progress:', JSON.stringify(pool.latest()));
  } catch { /* no workers */ }
} finally {
  await pool.stop().catch(() => {});
  await stopServer();
  rmSync(dir, { recursive: true, force: true });
}
console.log(`\n| ${N} agents (${cpus()[0]?.model ?? 'cpu'}, ${cpus().length} cores, Node ${process.version}) | |\n|---|---|`);
for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);
process.exit(failed ? 1 : 0);
