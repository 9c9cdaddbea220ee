#!/usr/bin/env node
// The fleet benchmark (issue 8): Fleetbridge side by side with opamp-go's server and a raw `ws`
// floor, under the same load generator, on loopback, bounded in agents and time.
//
//   npm run bench                                  # sizes 1000,5000,10000,19000; 3 runs each; all servers
//   BENCH_SIZES=2000 BENCH_RUNS=1 npm run bench    # a quick look
//
// Env: BENCH_SIZES (agents, each ≤ 19,000), BENCH_RUNS (runs per size and server; the median is
// reported), BENCH_SERVERS (fleetbridge,opamp-go,ws-floor), BENCH_HTTP_SHARE (0.1: that share of
// agents poll over HTTP; the ws floor has no HTTP, its agents are all WebSocket), BENCH_RUN_TIMEOUT_MS
// (240,000 per run), BENCH_OUT (bench/results).
//
// Each run: start the server alone on CPU 0 (taskset), the generator processes (bench/gen) on CPU 1;
// 1. connect storm: all N agents connect at once, send their full state (description with k8s
//    attributes, health, a ~3 KB effective config), get the config and report APPLIED;
// 2. steady state: idle RSS, then every WebSocket agent heartbeats once a second for 10 s;
// 3. fan-out: the desired config changes (Fleetbridge: the manifest file; the peers: PUT /config);
//    time until 50 %, 99 %, 100 % of the WebSocket agents applied it (HTTP agents get it at their
//    next poll, reported apart);
// 4. reconnect storm: the server is killed and started again; time until every agent is connected
//    again and the server counts all of them applied (nothing left behind).
// Writes results.json, results.md (tables and Fleetbridge/opamp-go ratios) and PNG plots
// (gnuplot, when installed) into BENCH_OUT.
//
// BENCH_SCENARIOS (default "fleet"): "soak" runs the soak with hostile clients instead
// (bench/soak.mjs, also `npm run bench:soak`), "fleet,soak" both.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GeneratorPool } from './gen/pool.mjs';
import { ensureOpampGoServer } from './peers/build.mjs';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const SIZES = (process.env.BENCH_SIZES ?? '1000,5000,10000,19000').split(',').map((s) => Math.min(19_000, Math.max(1, Number(s))));
const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 3));
const SERVERS = (process.env.BENCH_SERVERS ?? 'fleetbridge,opamp-go,ws-floor').split(',');
const HTTP_SHARE = Number(process.env.BENCH_HTTP_SHARE ?? 0.1);
const RUN_TIMEOUT = Number(process.env.BENCH_RUN_TIMEOUT_MS ?? 240_000);
const OUT = join(ROOT, process.env.BENCH_OUT ?? 'bench/results');
const HTTP_POLL_SECONDS = 2;
const HEARTBEAT_WINDOW_S = 10;
const NAMESPACE = 'bench';
const SCENARIOS = (process.env.BENCH_SCENARIOS ?? 'fleet').split(',').map((s) => s.trim()).filter(Boolean);
for (const s of SCENARIOS) if (s !== 'fleet' && s !== 'soak') throw new Error(`BENCH_SCENARIOS: unknown scenario ${JSON.stringify(s)} (fleet, soak)`);
/** When the standalone mode takes --admin-token-file, every run uses an admin token (see adminFetch). */
let adminTokenFlag = false;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  return v.length === 0 ? null : v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};
const pct = (sorted, q) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * q) - 1)] : null);
const hasTaskset = spawnSync('taskset', ['-V'], { stdio: 'ignore' }).status === 0;
const twoCpus = cpus().length >= 2;

async function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}
function procStat(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  const cpuMs = ((Number(f[11]) + Number(f[12])) * 1000) / 100;
  const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;
  return { cpuMs, rss };
}

/** The collector config every server pushes: ~2.5 KB of realistic YAML; `marker` makes a new version. */
function configYaml(marker) {
  const attrs = Array.from({ length: 12 }, (_, i) => `          - { key: team.attr${i}, value: "value-${i}-${marker}", action: upsert }`).join('\n');
  return `receivers:
  otlp:
    protocols:
      grpc: { endpoint: 0.0.0.0:4317 }
      http: { endpoint: 0.0.0.0:4318 }
  hostmetrics:
    collection_interval: 30s
    scrapers: { cpu: {}, memory: {}, disk: {}, filesystem: {}, network: {}, load: {} }
processors:
  memory_limiter: { check_interval: 1s, limit_percentage: 80, spike_limit_percentage: 20 }
  batch: { send_batch_size: 8192, timeout: 5s }
  resource:
    attributes:
${attrs}
  k8sattributes:
    extract: { metadata: [k8s.namespace.name, k8s.pod.name, k8s.pod.uid, k8s.deployment.name, k8s.node.name] }
exporters:
  otlphttp:
    endpoint: https://otlp-gateway.observability.svc:4318
    compression: gzip
    retry_on_failure: { enabled: true, initial_interval: 5s, max_interval: 30s, max_elapsed_time: 300s }
    sending_queue: { enabled: true, num_consumers: 10, queue_size: 5000 }
  debug: { verbosity: basic }
service:
  pipelines:
    traces: { receivers: [otlp], processors: [memory_limiter, k8sattributes, resource, batch], exporters: [otlphttp] }
    metrics: { receivers: [otlp, hostmetrics], processors: [memory_limiter, k8sattributes, resource, batch], exporters: [otlphttp] }
    logs: { receivers: [otlp], processors: [memory_limiter, k8sattributes, resource, batch], exporters: [otlphttp, debug] }
`;
}

function collectorManifest(marker) {
  const indented = configYaml(marker).split('\n').map((l) => (l ? `    ${l}` : l)).join('\n');
  return `apiVersion: fleetbridge.dev/v1alpha1
kind: Collector
metadata: { name: bench, namespace: ${NAMESPACE} }
spec:
  selector: { matchLabels: { bench: "yes" } }
  configYaml: |
${indented}
`;
}
const BRIDGE_MANIFEST = `apiVersion: fleetbridge.dev/v1alpha1
kind: OpAMPBridge
metadata: { name: bench, namespace: ${NAMESPACE} }
spec:
  auth: { mode: none }
  limits: { maxAgents: 20000, maxMessagesPerSecond: 50 }
`;

/** The floor's config message: an encoded ServerToAgent carrying the remote config (the floor sends it as is). */
let pb;
function floorConfigMessage(marker) {
  const body = Buffer.from(configYaml(marker));
  const hash = createHash('sha256').update(body).digest();
  return { bytes: Buffer.from(pb.ServerToAgent.encode({ remoteConfig: { config: { configMap: { '': { body, contentType: 'text/yaml' } } }, configHash: hash } }).finish()), hash: hash.toString('hex') };
}

/**
 * One server under test: start(), stop(), kill(), setConfig(marker) → hash, applied() → what the
 * server itself counts as applied (for "nothing left behind").
 */
function makeServer(kind, ports, goBinary) {
  const dir = mkdtempSync(join(tmpdir(), `fleet-bench-${kind}-`));
  // The admin token file lives beside the manifest folder, not in it (the folder is watched).
  const tokenDir = kind === 'fleetbridge' && adminTokenFlag ? mkdtempSync(join(tmpdir(), 'fleet-bench-admin-')) : null;
  const adminToken = tokenDir ? randomBytes(24).toString('hex') : null;
  if (tokenDir) writeFileSync(join(tokenDir, 'admin-token'), adminToken + '\n', { mode: 0o600 });
  const adminHeaders = adminToken ? { Authorization: `Bearer ${adminToken}` } : {};
  let child = null;
  const spawnPinned = (cmd, args, env = {}) => {
    const full = hasTaskset && twoCpus ? ['taskset', ['-c', '0', cmd, ...args]] : [cmd, args];
    const c = spawn(full[0], full[1], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
    let err = '';
    c.stderr.on('data', (d) => {
      err = (err + d.toString()).slice(-4000);
    });
    c.stderrTail = () => err;
    return c;
  };
  const admin = `http://127.0.0.1:${ports.admin}`;
  const s = {
    kind,
    dir,
    adminUrl: admin,
    /** fetch() on the admin endpoint, with the admin token when there is one. */
    adminFetch: (path, init = {}) => fetch(`${admin}${path}`, { ...init, headers: { ...adminHeaders, ...(init.headers ?? {}) } }),
    get pid() {
      return child?.pid;
    },
    stderrTail: () => child?.stderrTail?.() ?? '',
    async start() {
      if (kind === 'fleetbridge') {
        child = spawnPinned(process.execPath, [
          join(ROOT, 'dist/src/main.js'), 'standalone', '--manifests', dir, '--opamp-port', String(ports.opamp), '--http-port', String(ports.admin),
          '--host', '127.0.0.1', '--heartbeat-interval', String(HTTP_POLL_SECONDS), '--watch-debounce-ms', '0',
          ...(tokenDir ? ['--admin-token-file', join(tokenDir, 'admin-token')] : []),
        ], { FLEETBRIDGE_LOG_LEVEL: 'warn', FLEETBRIDGE_LOG_FORMAT: 'json' });
      } else if (kind === 'opamp-go') {
        child = spawnPinned(goBinary, ['-listen', `127.0.0.1:${ports.opamp}`, '-admin', `127.0.0.1:${ports.admin}`, '-heartbeat-seconds', String(HTTP_POLL_SECONDS), '-config', join(dir, 'config.yaml')]);
      } else {
        child = spawnPinned(process.execPath, [join(ROOT, 'bench/peers/ws-floor.mjs'), '--listen', `127.0.0.1:${ports.opamp}`, '--admin', `127.0.0.1:${ports.admin}`]);
      }
      const exited = new Promise((r) => child.once('exit', r));
      child.exited = exited;
      const until = Date.now() + 30_000;
      for (;;) {
        if (child.exitCode !== null) throw new Error(`${kind} exited at start: ${child.stderrTail()}`);
        try {
          if ((await fetch(`${admin}/readyz`)).ok) break;
        } catch {
          /* not up yet */
        }
        if (Date.now() > until) throw new Error(`${kind} not ready in 30 s: ${child.stderrTail()}`);
        await sleep(25);
      }
      if (kind === 'ws-floor' && s.floorConfig) await fetch(`${admin}/config`, { method: 'PUT', body: s.floorConfig.bytes });
    },
    /** Installs config version `marker` and resolves with the hash agents will report. */
    async setConfig(marker) {
      if (kind === 'fleetbridge') {
        writeFileSync(join(dir, 'bridge.yaml'), BRIDGE_MANIFEST);
        writeFileSync(join(dir, '.collector.tmp'), collectorManifest(marker));
        renameSync(join(dir, '.collector.tmp'), join(dir, 'collector.yaml'));
        if (!child) return null;
        // The hash is the API's configHash once the watcher applied the file.
        for (const until = Date.now() + 10_000; Date.now() < until; ) {
          const c = (await (await s.adminFetch('/api/v1/collectors')).json()).collectors.find((x) => x.name === 'bench');
          if (c && c.configHash && c.configHash !== s.hash) return (s.hash = c.configHash);
          await sleep(2);
        }
        throw new Error('fleetbridge did not apply the manifest edit in 10 s');
      }
      if (kind === 'opamp-go') {
        const body = configYaml(marker);
        writeFileSync(join(dir, 'config.yaml'), body);
        if (child) await fetch(`${admin}/config`, { method: 'PUT', body });
        return (s.hash = createHash('sha256').update(body).digest('hex'));
      }
      s.floorConfig = floorConfigMessage(marker);
      if (child) await fetch(`${admin}/config`, { method: 'PUT', body: s.floorConfig.bytes });
      return (s.hash = s.floorConfig.hash);
    },
    /** The server's own count of agents that applied the current config (the floor: connections that answered after it). */
    async applied() {
      if (kind === 'fleetbridge') {
        const c = (await (await s.adminFetch('/api/v1/collectors')).json()).collectors.find((x) => x.name === 'bench');
        return c?.status?.applied ?? 0;
      }
      const st = await (await fetch(`${admin}/stats`)).json();
      return kind === 'ws-floor' ? st.agents : st.applied;
    },
    kill() {
      child?.kill('SIGKILL');
      return child?.exited;
    },
    async stop() {
      if (child && child.exitCode === null) {
        child.kill('SIGTERM');
        await Promise.race([child.exited, sleep(5000)]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
      if (tokenDir) rmSync(tokenDir, { recursive: true, force: true });
    },
  };
  return s;
}

async function until(what, deadline, fn, everyMs = 10) {
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`run deadline passed waiting for ${what}`);
    await sleep(everyMs);
  }
}

async function runOnce(kind, N, goBinary) {
  const deadline = Date.now() + RUN_TIMEOUT;
  const ports = { opamp: await freePort(), admin: await freePort() };
  const server = makeServer(kind, ports, goBinary);
  const pool = new GeneratorPool({ cpus: hasTaskset && twoCpus ? '1' : undefined });
  const httpShare = kind === 'ws-floor' ? 0 : HTTP_SHARE;
  const r = { server: kind, agents: N, httpAgents: 0 };
  let peak = 0;
  let sampler = null;
  try {
    const hash1 = await server.setConfig('v1');
    await server.start();
    if (kind === 'fleetbridge') server.hash = hash1 ?? (await server.setConfig('v1'));
    const hash = server.hash;
    await sleep(300);
    const base = procStat(server.pid);
    r.baseRssMiB = base.rss / 2 ** 20;
    sampler = setInterval(() => {
      try {
        peak = Math.max(peak, procStat(server.pid).rss);
      } catch {
        /* restarting */
      }
    }, 50);

    // 1. Connect storm: every agent at once.
    const t0 = Date.now();
    const started = await pool.start({
      url: `ws://127.0.0.1:${ports.opamp}/v1/opamp`,
      httpUrl: `http://127.0.0.1:${ports.opamp}/v1/opamp`,
      count: N,
      httpShare,
      heartbeatSeconds: 1,
      httpPollSeconds: HTTP_POLL_SECONDS,
      concurrency: N,
      effectiveConfigBytes: 3000,
      namespace: NAMESPACE,
      labels: { bench: 'yes' },
      deadlineMs: RUN_TIMEOUT,
    });
    await pool.cpu();
    r.httpAgents = started.httpAgents;
    r.connectMs = (await pool.waitConnected(deadline - Date.now())) + (t0 ? 0 : 0);
    await until('the first config applied by every agent', deadline, async () => ((await pool.progress()).applied[hash] ?? 0) >= N);
    r.convergeMs = Date.now() - t0;
    const afterConnect = await pool.progress();
    r.connectErrors = afterConnect.errors;
    r.connectErrorKinds = afterConnect.errorKinds;
    r.genCpuConnect = (await pool.cpu()).share;
    r.peakRssConnectMiB = peak / 2 ** 20;

    // 2. Steady state: idle memory, then heartbeats.
    await sleep(2000);
    const idle = procStat(server.pid);
    r.idleRssMiB = idle.rss / 2 ** 20;
    r.rssPerAgentKiB = (idle.rss - base.rss) / N / 1024;
    await pool.heartbeat(true, 1);
    await sleep(1000);
    const s0 = await pool.progress();
    const c0 = procStat(server.pid);
    await pool.cpu();
    const w0 = Date.now();
    await sleep(HEARTBEAT_WINDOW_S * 1000);
    const s1 = await pool.progress();
    const c1 = procStat(server.pid);
    const wallS = (Date.now() - w0) / 1000;
    r.genCpuHeartbeat = (await pool.cpu()).share;
    await pool.heartbeat(false);
    const messages = s1.sent - s0.sent;
    r.messagesPerSecond = messages / wallS;
    r.cpuPerMessageUs = ((c1.cpuMs - c0.cpuMs) * 1000) / messages;
    r.serverCpuShareHeartbeat = (c1.cpuMs - c0.cpuMs) / 1000 / wallS;
    r.cpuPer1kMsgPerSecPct = (r.serverCpuShareHeartbeat * 100) / (r.messagesPerSecond / 1000);
    await sleep(1500);

    // 3. Fan-out: a new config for every agent.
    const tPush = Date.now();
    const hash2 = await server.setConfig('v2');
    const wsCount = N - r.httpAgents;
    // Counts (small) while waiting; the times (one per agent) are fetched once at the end, so the
    // wait does not load the generator while it is being measured.
    await until('every agent to apply the new config', deadline, async () => ((await pool.progress()).applied[hash2] ?? 0) >= wsCount, 20);
    await until('every WebSocket agent to apply the new config', deadline, async () => (await pool.appliedTimes(hash2, 'websocket')).length >= wsCount, 50);
    const times = (await pool.appliedTimes(hash2, 'websocket')).map((t) => t - tPush);
    r.fanoutP50Ms = pct(times, 0.5);
    r.fanoutP99Ms = pct(times, 0.99);
    r.fanoutAllMs = times[times.length - 1];
    if (r.httpAgents > 0) {
      await until('every HTTP agent to apply the new config', deadline, async () => (await pool.appliedTimes(hash2, 'http')).length >= r.httpAgents, 50);
      r.fanoutHttpAllMs = (await pool.appliedTimes(hash2, 'http')).at(-1) - tPush;
    }
    r.peakRssMiB = peak / 2 ** 20;

    // 4. Reconnect storm: kill, start again, wait until every agent is back and counted applied.
    await sleep(1000);
    const tKill = Date.now();
    await server.kill();
    await server.start();
    const tUp = Date.now();
    await until('every agent to reconnect after the restart', deadline, async () => {
      const p = await pool.progress();
      // WebSocket agents all saw their connection drop; HTTP agents only if a poll fell in the gap.
      return p.connected >= N && p.reconnects >= N - r.httpAgents ? p : null;
    }, 20);
    r.reconnectMs = Date.now() - tUp;
    await until('the restarted server to count every agent applied', deadline, async () => (await server.applied()) >= N, 20);
    r.reconnectConvergedMs = Date.now() - tUp;
    r.restartMs = tUp - tKill;
    const after = await pool.progress();
    r.reconnectErrors = after.errors - afterConnect.errors;
    r.genCpuReconnect = (await pool.cpu()).share;
    r.fullStateRequests = after.fullStateRequests;
    return r;
  } catch (err) {
    r.error = err.message;
    try {
      r.progressAtError = await pool.progress();
    } catch {
      /* workers gone */
    }
    return r;
  } finally {
    if (sampler) clearInterval(sampler);
    await pool.stop().catch(() => {});
    await server.stop().catch(() => {});
  }
}

const FIGURES = [
  ['convergeMs', 'connect storm: all connected and APPLIED (ms)', 'lower'],
  ['connectErrors', 'connect storm: errors', 'lower'],
  ['peakRssMiB', 'peak RSS (MiB)', 'lower'],
  ['rssPerAgentKiB', 'RSS per idle agent over the empty server (KiB)', 'lower'],
  ['cpuPerMessageUs', 'server CPU per heartbeat (µs)', 'lower'],
  ['cpuPer1kMsgPerSecPct', 'server CPU per 1k heartbeats/s (% of a core)', 'lower'],
  ['fanoutP50Ms', 'fan-out: 50 % APPLIED (ms)', 'lower'],
  ['fanoutP99Ms', 'fan-out: 99 % APPLIED (ms)', 'lower'],
  ['fanoutAllMs', 'fan-out: 100 % APPLIED (ms)', 'lower'],
  ['reconnectMs', 'reconnect storm: all back after the restart (ms)', 'lower'],
  ['reconnectConvergedMs', 'reconnect storm: server counts all applied (ms)', 'lower'],
  ['genCpuHeartbeat', 'generator CPU during heartbeats (cores)', 'info'],
];

function fmt(key, v) {
  if (v === null || v === undefined) return '–';
  if (key === 'connectErrors') return String(Math.round(v));
  if (key.startsWith('genCpu')) return v.toFixed(2);
  return v >= 100 ? v.toFixed(0) : v.toFixed(1);
}

function plot(results) {
  if (spawnSync('gnuplot', ['--version'], { stdio: 'ignore' }).status !== 0) {
    console.error('[bench] gnuplot not found: plots skipped (apt-get install gnuplot-nox)');
    return [];
  }
  const charts = [
    ['convergeMs', 'Connect storm: all connected and APPLIED', 'ms', 'connect-storm.png'],
    ['rssPerAgentKiB', 'RSS per idle connected agent', 'KiB', 'rss-per-agent.png'],
    ['cpuPerMessageUs', 'Server CPU per heartbeat', 'µs', 'cpu-per-heartbeat.png'],
    ['fanoutAllMs', 'Fan-out: every WebSocket agent APPLIED', 'ms', 'fanout.png'],
    ['reconnectConvergedMs', 'Reconnect storm after a restart: all back and applied', 'ms', 'reconnect-storm.png'],
  ];
  const made = [];
  for (const [key, title, unit, file] of charts) {
    const data = join(OUT, `${key}.dat`);
    const lines = ['# agents ' + SERVERS.join(' ')];
    for (const n of SIZES) lines.push([n, ...SERVERS.map((s) => results.summary[`${s}/${n}`]?.[key] ?? 'NaN')].join(' '));
    writeFileSync(data, lines.join('\n') + '\n');
    const script = [
      'set terminal pngcairo size 800,480 font "sans,10"',
      `set output "${join(OUT, file)}"`,
      `set title "${title}"`,
      `set xlabel "connected agents"`,
      `set ylabel "${unit}"`,
      'set key top left',
      'set grid',
      'set yrange [0:*]',
      `plot ${SERVERS.map((s, i) => `"${data}" using 1:${i + 2} with linespoints lw 2 pt 7 title "${s}"`).join(', ')}`,
    ].join('\n');
    const r = spawnSync('gnuplot', [], { input: script });
    if (r.status === 0) made.push(file);
    else console.error(`[bench] gnuplot failed for ${file}: ${r.stderr}`);
    rmSync(data, { force: true });
  }
  return made;
}

async function main() {
  execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.json')], { stdio: 'inherit' });
  ({ opamp: { proto: { v1: pb } } } = await import(join(ROOT, 'dist/src/opamp/generated/opamp.js')));
  // What the standalone mode of this build offers (its usage text, printed for an unknown option).
  const usage = spawnSync(process.execPath, [join(ROOT, 'dist/src/main.js'), 'standalone', '--help'], { encoding: 'utf8', timeout: 10_000 });
  adminTokenFlag = /--admin-token-file\b/.test(`${usage.stdout}${usage.stderr}`);
  if (SCENARIOS.includes('fleet')) await fleetScenario();
  if (SCENARIOS.includes('soak')) {
    const { runSoak } = await import('./soak.mjs');
    await runSoak({ ROOT, OUT, NAMESPACE, HTTP_SHARE, HTTP_POLL_SECONDS, pinned: hasTaskset && twoCpus, adminTokenFlag, makeServer, freePort, procStat, sleep, until, pct });
  }
}

async function fleetScenario() {
  console.error(`[bench] sizes ${SIZES.join(', ')}; ${RUNS} run(s) each; servers ${SERVERS.join(', ')}; ${HTTP_SHARE * 100} % HTTP agents`);
  const goBinary = SERVERS.includes('opamp-go') ? await ensureOpampGoServer() : null;
  mkdirSync(OUT, { recursive: true });
  const runs = [];
  for (const N of SIZES) {
    for (let i = 0; i < RUNS; i++) {
      for (const kind of SERVERS) {
        const t = Date.now();
        const r = await runOnce(kind, N, goBinary);
        runs.push(r);
        console.error(`[bench] ${kind} ${N} run ${i + 1}${r.error ? ' FAILED' : ''}: ${JSON.stringify(r)} (${((Date.now() - t) / 1000).toFixed(0)} s)`);
        await sleep(2000); // let TIME_WAIT sockets and the kernel settle between runs
      }
    }
  }
  const summary = {};
  for (const N of SIZES) {
    for (const kind of SERVERS) {
      const ok = runs.filter((r) => r.server === kind && r.agents === N && !r.error);
      const s = { runs: ok.length, failed: runs.filter((r) => r.server === kind && r.agents === N && r.error).length };
      for (const [key] of FIGURES) s[key] = median(ok.map((r) => r[key]));
      for (const key of ['fanoutHttpAllMs', 'genCpuConnect', 'genCpuReconnect', 'restartMs', 'reconnectErrors', 'messagesPerSecond', 'baseRssMiB', 'idleRssMiB']) s[key] = median(ok.map((r) => r[key]));
      summary[`${kind}/${N}`] = s;
    }
  }
  const meta = { date: new Date().toISOString(), cpu: cpus()[0]?.model, cores: cpus().length, node: process.version, taskset: hasTaskset && twoCpus, sizes: SIZES, runs: RUNS, httpShare: HTTP_SHARE };
  const results = { meta, summary, runs };
  writeFileSync(join(OUT, 'results.json'), JSON.stringify(results, null, 2));
  const pngs = plot(results);

  const md = [];
  md.push(`Run ${meta.date} on ${meta.cpu} (${meta.cores} cores), Node ${meta.node}; median of ${RUNS} run(s); ${HTTP_SHARE * 100} % of agents on HTTP polling (${HTTP_POLL_SECONDS} s) except for ws-floor.\n`);
  for (const N of SIZES) {
    md.push(`### ${N.toLocaleString('en-US')} agents\n`);
    md.push(`| figure | ${SERVERS.join(' | ')} | Fleetbridge / opamp-go |`);
    md.push(`|---|${SERVERS.map(() => '---').join('|')}|---|`);
    for (const [key, label] of FIGURES) {
      const vals = SERVERS.map((s) => fmt(key, summary[`${s}/${N}`]?.[key]));
      const fb = summary[`fleetbridge/${N}`]?.[key];
      const go = summary[`opamp-go/${N}`]?.[key];
      const ratio = typeof fb === 'number' && typeof go === 'number' && go > 0 && !key.startsWith('genCpu') ? (fb / go).toFixed(2) : '–';
      md.push(`| ${label} | ${vals.join(' | ')} | ${ratio} |`);
    }
    md.push('');
  }
  if (pngs.length) md.push(pngs.map((p) => `![${p}](${p})`).join('\n'));
  writeFileSync(join(OUT, 'results.md'), md.join('\n') + '\n');
  console.log(md.join('\n'));
}

await main();
