#!/usr/bin/env node
// Fleet benchmark for standalone mode, on loopback only, bounded in agents and time.
//
//   npm run bench                     # 2,000 agents
//   BENCH_AGENTS=10000 npm run bench  # at most 15,000 (one generator process; fd limit 20,000)
//
// The server runs as its own process (the built dist/), pinned to CPU 0 when taskset exists;
// this process is the load generator (raw `ws` clients with pre-encoded messages), on CPU 1.
// Phases: connect (full status → config → APPLIED), idle memory, heartbeat CPU, config push
// (manifest edit → every agent APPLIED, as seen by the server's API). Prints a Markdown table.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { opamp } from '../dist/src/opamp/generated/opamp.js';

const pb = opamp.proto.v1;
const N = Math.min(Number(process.env.BENCH_AGENTS ?? 2000), 15000);
const DEADLINE = Date.now() + Number(process.env.BENCH_TIMEOUT_MS ?? 180_000);
const HEARTBEAT_SECONDS = 10;

function check() {
  if (Date.now() > DEADLINE) throw new Error('benchmark deadline passed');
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
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
  const ticks = Number(f[11]) + Number(f[12]);
  const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;
  return { cpuMs: (ticks * 1000) / 100, rss };
}
function manifest(endpoint) {
  return `apiVersion: fleetbridge.dev/v1alpha1
kind: Collector
metadata: { name: bench }
spec:
  selector: { matchLabels: { bench: "yes" } }
  config:
    receivers: { otlp: { protocols: { grpc: {}, http: {} } } }
    processors: { batch: {}, memory_limiter: { check_interval: 1s, limit_percentage: 80 } }
    exporters: { otlphttp: { endpoint: "${endpoint}" } }
    service: { pipelines: { traces: { receivers: [otlp], processors: [memory_limiter, batch], exporters: [otlphttp] }, metrics: { receivers: [otlp], processors: [memory_limiter, batch], exporters: [otlphttp] } } }
`;
}

execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });
const dir = mkdtempSync(join(tmpdir(), 'fleetbridge-bench-'));
writeFileSync(join(dir, 'bench.yaml'), manifest('https://a.example'));
const [opampPort, httpPort] = [await freePort(), await freePort()];
const hasTaskset = (() => { try { execFileSync('taskset', ['-V'], { stdio: 'ignore' }); return true; } catch { return false; } })();
const serverArgs = ['dist/src/main.js', 'standalone', '--manifests', dir, '--opamp-port', String(opampPort), '--http-port', String(httpPort), '--host', '127.0.0.1', '--heartbeat-interval', String(HEARTBEAT_SECONDS)];
const server = hasTaskset
  ? spawn('taskset', ['-c', '0', process.execPath, ...serverArgs], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, FLEETBRIDGE_LOG_LEVEL: 'warn', FLEETBRIDGE_LOG_FORMAT: 'json' } })
  : spawn(process.execPath, serverArgs, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, FLEETBRIDGE_LOG_LEVEL: 'warn', FLEETBRIDGE_LOG_FORMAT: 'json' } });
if (hasTaskset) execFileSync('taskset', ['-cp', '1', String(process.pid)], { stdio: 'ignore' });
const serverPid = () => {
  // With taskset, the node process replaces taskset (exec), so the pid is the same.
  return server.pid;
};
const api = `http://127.0.0.1:${httpPort}`;
const results = [];
const agents = [];
try {
  for (;;) {
    check();
    try {
      if ((await fetch(`${api}/readyz`)).ok) break;
    } catch { /* not up yet */ }
    await sleep(50);
  }
  const base = procStat(serverPid());

  // Phase 1: connect N agents; each sends its full status, takes the config, reports APPLIED.
  const url = `ws://127.0.0.1:${opampPort}/v1/opamp`;
  const t0 = performance.now();
  let applied = 0;
  const connectOne = (i) => new Promise((resolve, reject) => {
    const uid = Buffer.alloc(16);
    uid.writeUInt32BE(i, 12);
    uid[0] = 0xbe;
    const a = { uid, seq: 0, ws: null, configs: 0, lastHash: null };
    const send = (fields) => a.ws.send(Buffer.concat([Buffer.from([0]), pb.AgentToServer.encode({ instanceUid: uid, sequenceNum: a.seq++, capabilities: 0x1003, ...fields }).finish()]));
    a.send = send;
    const ws = new WebSocket(url, { perMessageDeflate: false });
    a.ws = ws;
    ws.on('open', () => {
      send({ agentDescription: { identifyingAttributes: [{ key: 'service.name', value: { stringValue: 'bench' } }], nonIdentifyingAttributes: [{ key: 'bench', value: { stringValue: 'yes' } }, { key: 'host.name', value: { stringValue: `h${i}` } }] }, remoteConfigStatus: {} });
    });
    ws.on('message', (data) => {
      const m = pb.ServerToAgent.decode(data.subarray(1));
      if (m.remoteConfig) {
        a.configs++;
        a.lastHash = m.remoteConfig.configHash;
        a.gotAt = performance.now();
        send({ remoteConfigStatus: { lastRemoteConfigHash: m.remoteConfig.configHash, status: 1 } });
        if (a.configs === 1) {
          applied++;
          resolve(a);
        }
      }
    });
    ws.on('error', reject);
  });
  const CONCURRENCY = 200;
  let next = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < N) {
      check();
      agents.push(await connectOne(next++));
    }
  }));
  const connectMs = performance.now() - t0;
  results.push(['connect + first config + APPLIED', `${N} agents in ${(connectMs / 1000).toFixed(2)} s (${Math.round(N / (connectMs / 1000))}/s)`]);
  await sleep(2000);

  // Phase 2: idle memory.
  const idle = procStat(serverPid());
  results.push(['server RSS, idle', `${(idle.rss / 2 ** 20).toFixed(0)} MiB; ${((idle.rss - base.rss) / N / 1024).toFixed(1)} KiB per agent over the empty server (${(base.rss / 2 ** 20).toFixed(0)} MiB)`]);

  // Phase 3: heartbeats, every agent once a second for 10 s.
  const hb0 = procStat(serverPid());
  const hbStart = performance.now();
  let beats = 0;
  for (let s = 0; s < 10; s++) {
    const tick = performance.now();
    for (const a of agents) { a.send({}); beats++; }
    check();
    await sleep(Math.max(0, 1000 - (performance.now() - tick)));
  }
  await sleep(500);
  const hb1 = procStat(serverPid());
  const hbCpu = hb1.cpuMs - hb0.cpuMs;
  results.push(['heartbeat CPU', `${beats} heartbeats in ${((performance.now() - hbStart) / 1000).toFixed(1)} s: ${((hbCpu * 1000) / beats).toFixed(1)} µs server CPU each (${((hbCpu / (performance.now() - hbStart)) * 100).toFixed(0)} % of one core at ${N}/s)`]);

  // Phase 4: config push: edit the manifest, wait until every agent received it and the API shows all applied.
  const pushStart = performance.now();
  writeFileSync(join(dir, '.bench.tmp'), manifest('https://b.example'));
  renameSync(join(dir, '.bench.tmp'), join(dir, 'bench.yaml'));
  const target = agents.map((a) => a.configs + 1);
  while (agents.some((a, i) => a.configs < target[i])) { check(); await sleep(5); }
  const lastReceived = Math.max(...agents.map((a) => a.gotAt)) - pushStart;
  const times = agents.map((a) => a.gotAt - pushStart).sort((x, y) => x - y);
  for (;;) {
    check();
    const c = (await (await fetch(`${api}/api/v1/collectors`)).json()).collectors[0];
    if (c.status.applied === N) break;
    await sleep(20);
  }
  const allApplied = performance.now() - pushStart;
  results.push(['config push (file edit → agent has it)', `p50 ${times[Math.floor(N / 2)].toFixed(0)} ms, p99 ${times[Math.floor(N * 0.99)].toFixed(0)} ms, last ${lastReceived.toFixed(0)} ms (includes the watcher's 100 ms debounce)`]);
  results.push(['config push → API shows all APPLIED', `${allApplied.toFixed(0)} ms`]);
  const peak = procStat(serverPid());
  results.push(['server RSS after push', `${(peak.rss / 2 ** 20).toFixed(0)} MiB`]);

  console.log(`\n### Standalone, ${N} WebSocket agents (${cpus()[0]?.model ?? 'cpu'}, ${cpus().length} cores, Node ${process.version}${hasTaskset ? ', server on CPU 0, generator on CPU 1' : ''})\n`);
  console.log('| phase | result |\n|---|---|');
  for (const [k, v] of results) console.log(`| ${k} | ${v} |`);
} finally {
  for (const a of agents) a.ws.terminate();
  server.kill('SIGTERM');
  await new Promise((r) => { server.once('exit', r); setTimeout(r, 3000).unref(); });
  rmSync(dir, { recursive: true, force: true });
}
