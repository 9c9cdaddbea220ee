// The soak with hostile clients: Fleetbridge (standalone, alone on CPU 0) serving a fleet of
// normal agents (bench/gen, heartbeats every second, a share polling over HTTP) while hostile
// clients (bench/gen/hostile.mjs) push at every limit for a bounded time, and a bystander agent in
// its own process (bench/gen/bystander.mjs) times every answer. Run from bench/fleet.mjs:
//
//   npm run bench:soak                                  # 5,000 agents, 60 s of attacks
//   BENCH_SOAK_SECONDS=20 BENCH_SOAK_AGENTS=2000 npm run bench:soak
//
// Phases: connect storm (every agent APPLIED), baseline (BENCH_SOAK_BASELINE_SECONDS, 15: heartbeats
// and the bystander, no attack), soak (BENCH_SOAK_SECONDS, 60, at most 300: the attacks too), cooldown
// (15 s: the attacks stopped; is every agent still there?). Reports the bystander's round trips, the
// normal agents' heartbeat and poll round trips, the bridge's peak RSS and CPU, the refusals by code
// (/metrics fleetbridge_opamp_protocol_errors_total, soak minus baseline) and what the attackers got.
// Env (besides fleet.mjs's BENCH_HTTP_SHARE, BENCH_OUT): BENCH_SOAK_AGENTS (5,000, at most 15,000),
// BENCH_SOAK_HEAVY_SOCKETS (4), BENCH_SOAK_FLOOD_SOCKETS (32), BENCH_SOAK_SILENT_SOCKETS (500),
// BENCH_SOAK_BYSTANDER_MS (100), BENCH_SOAK_HOSTILE_NICE (5: the attackers yield the generator's CPU
// to the agents and the bystander, so that what these measure is the bridge, not their own CPU).
import { fork, execFileSync } from 'node:child_process';
import { writeFileSync, mkdirSync } from 'node:fs';
import { cpus, setPriority } from 'node:os';
import { join } from 'node:path';
import { GeneratorPool } from './gen/pool.mjs';

const num = (name, def, max = Infinity) => Math.min(max, Math.max(0, Number(process.env[name] ?? def)));
const AGENTS = Math.max(1, num('BENCH_SOAK_AGENTS', 5000, 15_000));
const SOAK_S = Math.max(1, num('BENCH_SOAK_SECONDS', 60, 300));
const BASELINE_S = Math.max(1, num('BENCH_SOAK_BASELINE_SECONDS', 15, 120));
const COOLDOWN_S = 15;
const HEAVY_SOCKETS = num('BENCH_SOAK_HEAVY_SOCKETS', 4, 16);
const FLOOD_SOCKETS = num('BENCH_SOAK_FLOOD_SOCKETS', 32, 256);
const SILENT_SOCKETS = num('BENCH_SOAK_SILENT_SOCKETS', 500, 2000);
const BYSTANDER_MS = Math.max(10, num('BENCH_SOAK_BYSTANDER_MS', 100, 1000));
const HOSTILE_NICE = num('BENCH_SOAK_HOSTILE_NICE', 5, 19);
const ATTACKS = new Set((process.env.BENCH_SOAK_ATTACKS ?? 'heavy,flood,overBound,oversize,silent').split(',').map((s) => s.trim()));
for (const a of ATTACKS) if (!['heavy', 'flood', 'overBound', 'oversize', 'silent'].includes(a)) throw new Error(`BENCH_SOAK_ATTACKS: unknown attack ${JSON.stringify(a)}`);
/** The bridge's limits the attackers go to (the bench's OpAMPBridge and the defaults). */
const RATE_LIMIT = 50; // limits.maxMessagesPerSecond in fleet.mjs's BRIDGE_MANIFEST
const MAX_MESSAGE_BYTES = 4 * 1024 * 1024; // limits.maxMessageBytes default
/** Source addresses: the generator keeps 127.0.0.2–254; attackers and the bystander use 127.0.1.x. */
const SOURCES = { heavy: '127.0.1.1', flood: '127.0.1.2', overBound: '127.0.1.3', oversize: '127.0.1.4', silent: '127.0.1.5', bystander: '127.0.1.10', newcomers: '127.0.1.11' };
const NEWCOMER_EVERY_MS = 1000;

const q = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(sorted.length * p) - 1))] : null);
function summary(xs) {
  const v = [...xs].sort((a, b) => a - b);
  return { count: v.length, p50Ms: q(v, 0.5), p90Ms: q(v, 0.9), p99Ms: q(v, 0.99), p999Ms: q(v, 0.999), maxMs: v.at(-1) ?? null, over100Ms: v.filter((x) => x > 100).length, over1sMs: v.filter((x) => x > 1000).length };
}

/** A forked helper process driven by { type, id } requests (bystander.mjs, hostile.mjs). */
function helper(script, cpu, nice = 0) {
  const child = fork(script, [], { stdio: ['ignore', 2, 2, 'ipc'], execArgv: [] });
  let nextId = 1;
  const pending = new Map();
  let ready;
  const readyP = new Promise((r) => (ready = r));
  child.on('message', (m) => {
    if (m?.type === 'ready') return ready();
    const p = pending.get(m?.id);
    if (!p) return;
    pending.delete(m.id);
    if (m.type === 'error') p.reject(new Error(m.message));
    else p.resolve(m);
  });
  const exited = new Promise((r) => child.once('exit', r));
  child.once('exit', (code) => {
    for (const p of pending.values()) p.reject(new Error(`${script} exited (${code})`));
    pending.clear();
  });
  if (cpu !== null) {
    try {
      execFileSync('taskset', ['-cp', String(cpu), String(child.pid)], { stdio: 'ignore' });
    } catch {
      /* best effort */
    }
  }
  if (nice) setPriority(child.pid, nice);
  const request = (msg, timeoutMs = 30_000) =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      const t = setTimeout(() => (pending.delete(id), reject(new Error(`${script}: no answer to ${msg.type} in ${timeoutMs} ms`))), timeoutMs);
      pending.set(id, { resolve: (v) => (clearTimeout(t), resolve(v)), reject: (e) => (clearTimeout(t), reject(e)) });
      child.send({ ...msg, id });
    });
  return {
    child,
    ready: readyP,
    request,
    async stop() {
      if (child.exitCode !== null) return;
      try {
        child.send({ type: 'stop' });
      } catch {
        /* gone */
      }
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Connections waiting in the listening socket's accept queue (ss: Recv-Q of the LISTEN socket); 0 when unknown. */
function acceptQueue(port) {
  try {
    const out = execFileSync('ss', ['-Hltn', `sport = :${port}`], { encoding: 'utf8', timeout: 2000 });
    return Math.max(0, ...out.trim().split('\n').filter(Boolean).map((l) => Number(l.trim().split(/\s+/)[1]) || 0));
  } catch {
    return 0;
  }
}

/** fleetbridge_opamp_protocol_errors_total by "transport/code". */
function protocolErrors(text) {
  const out = {};
  for (const line of text.split('\n')) {
    if (!line.startsWith('fleetbridge_opamp_protocol_errors_total{')) continue;
    const labels = Object.fromEntries([...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    out[`${labels.transport}/${labels.code}`] = Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return out;
}
function gauge(text, name) {
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(name + ' ') || line.startsWith(name + '{')) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}
const diff = (a, b) => Object.fromEntries(Object.keys({ ...a, ...b }).map((k) => [k, (b[k] ?? 0) - (a[k] ?? 0)]).filter(([, v]) => v !== 0).sort());

export async function runSoak(ctx) {
  const { ROOT, OUT, NAMESPACE, HTTP_SHARE, HTTP_POLL_SECONDS, pinned, makeServer, freePort, procStat, sleep, until } = ctx;
  const genCpu = pinned ? '1' : null;
  const wallLimit = Date.now() + 240_000 + (BASELINE_S + SOAK_S + COOLDOWN_S) * 1000;
  console.error(`[soak] ${AGENTS} agents (${HTTP_SHARE * 100} % HTTP), baseline ${BASELINE_S} s, soak ${SOAK_S} s, cooldown ${COOLDOWN_S} s; admin token: ${ctx.adminTokenFlag ? 'yes' : 'no'}`);
  const ports = { opamp: await freePort(), admin: await freePort() };
  console.error(`[soak] OpAMP port ${ports.opamp}, admin port ${ports.admin}`);
  const server = makeServer('fleetbridge', ports, null);
  const pool = new GeneratorPool({ cpus: genCpu ?? undefined });
  const wsUrl = `ws://127.0.0.1:${ports.opamp}/v1/opamp`;
  const httpUrl = `http://127.0.0.1:${ports.opamp}/v1/opamp`;
  let bystander = null;
  let hostile = null;
  const r = {
    meta: { attacks: [...ATTACKS], date: new Date().toISOString(), cpu: cpus()[0]?.model, cores: cpus().length, node: process.version, pinned, agents: AGENTS, httpShare: HTTP_SHARE, baselineSeconds: BASELINE_S, soakSeconds: SOAK_S, cooldownSeconds: COOLDOWN_S, bystanderIntervalMs: BYSTANDER_MS, hostileNice: HOSTILE_NICE, adminToken: ctx.adminTokenFlag, sources: SOURCES },
  };
  let peak = 0;
  let sampler = null;
  const metrics = async () => (await server.adminFetch('/metrics')).text();
  try {
    await server.setConfig('v1');
    await server.start();
    const hash = await server.setConfig('v1');
    await sleep(300);
    r.baseRssMiB = procStat(server.pid).rss / 2 ** 20;
    sampler = setInterval(() => {
      try {
        peak = Math.max(peak, procStat(server.pid).rss);
      } catch {
        /* gone */
      }
    }, 50);

    // Connect storm: every agent APPLIED.
    const t0 = Date.now();
    const started = await pool.start({ url: wsUrl, httpUrl, count: AGENTS, httpShare: HTTP_SHARE, heartbeatSeconds: 1, httpPollSeconds: HTTP_POLL_SECONDS, concurrency: AGENTS, effectiveConfigBytes: 3000, namespace: NAMESPACE, labels: { bench: 'yes' }, deadlineMs: wallLimit - Date.now() });
    r.httpAgents = started.httpAgents;
    await pool.waitConnected(120_000);
    await until('every agent APPLIED', Math.min(wallLimit, Date.now() + 120_000), async () => ((await pool.progress()).applied[hash] ?? 0) >= AGENTS, 20);
    r.convergeMs = Date.now() - t0;
    r.peakRssConnectMiB = peak / 2 ** 20;
    const afterConnect = await pool.progress();
    r.connectErrors = afterConnect.errors;

    // Heartbeats, and the bystander.
    await pool.heartbeat(true, 1);
    bystander = helper(join(ROOT, 'bench/gen/bystander.mjs'), genCpu);
    await bystander.ready;
    await bystander.request({ type: 'start', url: wsUrl, httpUrl, localAddress: SOURCES.bystander, intervalMs: BYSTANDER_MS, newcomerEveryMs: NEWCOMER_EVERY_MS, newcomerAddress: SOURCES.newcomers }, 15_000);
    await sleep(3000);

    // Baseline: no attack.
    const phase = async (seconds, during) => {
      await pool.latency({ reset: true });
      await pool.cpu();
      const p0 = await pool.progress();
      const c0 = procStat(server.pid);
      const w0 = Date.now();
      peak = procStat(server.pid).rss;
      let minConnected = Infinity;
      let acceptQueueMax = 0;
      const watch = setInterval(() => {
        const l = pool.latest();
        if (l.workers) minConnected = Math.min(minConnected, l.connected);
        acceptQueueMax = Math.max(acceptQueueMax, acceptQueue(ports.opamp));
      }, 250);
      try {
        await (during ? during() : sleep(seconds * 1000));
      } finally {
        clearInterval(watch);
      }
      const w1 = Date.now();
      const c1 = procStat(server.pid);
      const p1 = await pool.progress();
      const lat = await pool.latency();
      const gen = await pool.cpu();
      const by = await bystander.request({ type: 'report?' });
      const inWindow = by.rttMs.filter((_, i) => by.sentAt[i] >= w0 && by.sentAt[i] < w1);
      const stillWaiting = by.outstanding.filter((t) => t < w1).map((t) => Date.now() - t);
      // Newcomers that started in the window; the last few may still be waiting: wait for them (≤ 31 s).
      const started = by.newcomers.filter((n) => n.at >= w0 && n.at < w1);
      let newcomers = started;
      for (const until = Date.now() + 31_000; newcomers.some((n) => n.ms === null && !n.error) && Date.now() < until; ) {
        await sleep(250);
        const again = await bystander.request({ type: 'report?' });
        newcomers = again.newcomers.filter((n) => n.at >= w0 && n.at < w1);
      }
      const admitted = (t) => newcomers.filter((n) => n.transport === t && n.ms !== null).map((n) => n.ms);
      const failed = (t) => newcomers.filter((n) => n.transport === t && n.ms === null).reduce((o, n) => ((o[n.error ?? 'pending'] = (o[n.error ?? 'pending'] ?? 0) + 1), o), {});
      return {
        seconds: (w1 - w0) / 1000,
        newcomers: { websocket: { ...summary(admitted('websocket')), failed: failed('websocket') }, http: { ...summary(admitted('http')), failed: failed('http') } },
        acceptQueueMax,
        bystander: { ...summary(inWindow), unansweredNow: stillWaiting.length, oldestUnansweredMs: stillWaiting.length ? Math.max(...stillWaiting) : 0, closes: by.closes, skipped: by.skipped },
        heartbeats: lat.websocket,
        httpPolls: lat.http,
        oldestHeartbeatUnansweredMs: lat.outstandingMaxMs,
        serverCpuCores: (c1.cpuMs - c0.cpuMs) / (w1 - w0),
        peakRssMiB: peak / 2 ** 20,
        rssEndMiB: c1.rss / 2 ** 20,
        agentMessagesPerSecond: (p1.sent - p0.sent) / ((w1 - w0) / 1000),
        generatorCpuCores: gen.share,
        generatorLoopLagP99Ms: p1.loopLagP99Ms,
        connected: { min: minConnected, end: p1.connected, of: AGENTS },
        disconnects: p1.disconnects - p0.disconnects,
        reconnects: p1.reconnects - p0.reconnects,
        agentErrors: p1.errors - p0.errors,
        agentErrorKinds: diff(p0.errorKinds, p1.errorKinds),
      };
    };
    const m0 = protocolErrors(await metrics());
    r.baseline = await phase(BASELINE_S);
    console.error(`[soak] baseline: ${JSON.stringify(r.baseline)}`);

    // Soak: the attacks, bounded to SOAK_S.
    const m1 = protocolErrors(await metrics());
    hostile = helper(join(ROOT, 'bench/gen/hostile.mjs'), genCpu, HOSTILE_NICE);
    await hostile.ready;
    const hostileStart = {
      type: 'start', wsUrl, httpUrl, durationMs: SOAK_S * 1000, sources: SOURCES,
      heavySockets: ATTACKS.has('heavy') ? HEAVY_SOCKETS : 0, heavyRate: RATE_LIMIT,
      floodSockets: ATTACKS.has('flood') ? FLOOD_SOCKETS : 0, floodRate: RATE_LIMIT,
      overBoundRate: ATTACKS.has('overBound') ? RATE_LIMIT : 0, overBoundHttpRate: ATTACKS.has('overBound') ? 10 : 0,
      oversizeEveryMs: ATTACKS.has('oversize') ? 1000 : 0, maxMessageBytes: MAX_MESSAGE_BYTES,
      silentSockets: ATTACKS.has('silent') ? SILENT_SOCKETS : 0, silentMaxTotal: 20_000,
    };
    r.attack = { ...hostileStart, type: undefined, wsUrl: undefined, httpUrl: undefined, sources: undefined };
    r.soak = await phase(SOAK_S, async () => {
      const h = await hostile.request(hostileStart, 60_000);
      r.attack.heavyMessageBytes = h.heavyMessageBytes;
      await sleep(SOAK_S * 1000);
      // The attacks end by themselves at SOAK_S after they started.
      await until('the attacks to end', wallLimit, async () => (await hostile.request({ type: 'report?' })).ended, 100);
    });
    r.hostile = (await hostile.request({ type: 'report?' })).report;
    const m2 = protocolErrors(await metrics());
    r.refusalsBaseline = diff(m0, m1);
    r.refusals = diff(m1, m2);
    await hostile.stop();
    hostile = null;
    console.error(`[soak] soak: ${JSON.stringify(r.soak)}`);
    console.error(`[soak] attackers: ${JSON.stringify(r.hostile)}`);

    // Cooldown: attacks over, silent sockets past their deadline.
    r.cooldown = await phase(COOLDOWN_S);
    const m3 = await metrics();
    r.refusalsCooldown = diff(m2, protocolErrors(m3));
    r.agentsConnectedGauge = gauge(m3, 'fleetbridge_agents_connected');
    const end = await pool.progress();
    r.allStayedConnected = end.connected === AGENTS && end.disconnects - afterConnect.disconnects === 0 && end.reconnects - afterConnect.reconnects === 0;
    r.normalAgents = { connected: end.connected, of: AGENTS, disconnects: end.disconnects - afterConnect.disconnects, reconnects: end.reconnects - afterConnect.reconnects, errors: end.errors - afterConnect.errors, errorKinds: diff(afterConnect.errorKinds, end.errorKinds), appliedCurrentConfig: end.applied[hash] ?? 0 };
    console.error(`[soak] cooldown: ${JSON.stringify(r.cooldown)}; normal agents ${JSON.stringify(r.normalAgents)}`);
  } catch (err) {
    r.error = err.stack ?? String(err);
    console.error(`[soak] FAILED: ${r.error}`);
    try {
      r.progressAtError = await pool.progress();
    } catch {
      /* gone */
    }
  } finally {
    if (sampler) clearInterval(sampler);
    await hostile?.stop().catch(() => {});
    await bystander?.stop().catch(() => {});
    await pool.stop().catch(() => {});
    r.serverStderrTail = server.stderrTail?.();
    await server.stop().catch(() => {});
  }
  mkdirSync(OUT, { recursive: true });
  // All attacks: soak.md/json; a chosen set (BENCH_SOAK_ATTACKS): soak-<attacks>.md/json.
  const base = process.env.BENCH_SOAK_ATTACKS ? `soak-${[...ATTACKS].join('-')}` : 'soak';
  writeFileSync(join(OUT, `${base}.json`), JSON.stringify(r, null, 2) + '\n');
  const md = soakMarkdown(r);
  writeFileSync(join(OUT, `${base}.md`), md);
  console.log(md);
  if (r.error) process.exitCode = 1;
}

const f = (v, d = 1) => (v === null || v === undefined || Number.isNaN(v) ? '–' : typeof v === 'number' ? (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(d)) : String(v));
const obj = (o) => (o && Object.keys(o).length ? Object.entries(o).map(([k, v]) => `${k}: ${v}`).join(', ') : 'none');

export function soakMarkdown(r) {
  const m = r.meta;
  const out = [];
  out.push(`# Soak with hostile clients\n`);
  out.push(`Attacks: ${m.attacks.join(', ')}.\n`);
  out.push(`Run ${m.date} on ${m.cpu} (${m.cores} cores), Node ${m.node}; the bridge alone on CPU 0${m.pinned ? '' : ' (not pinned: no taskset or one CPU)'}, agents, bystander and attackers on CPU 1 (attackers at nice ${m.hostileNice}); ${m.agents.toLocaleString('en-US')} agents (${r.httpAgents ?? '–'} polling over HTTP every 2 s, the others heartbeating over WebSocket every 1 s); bystander heartbeat every ${m.bystanderIntervalMs} ms; baseline ${m.baselineSeconds} s, attacks ${m.soakSeconds} s, cooldown ${m.cooldownSeconds} s.\n`);
  if (r.error) out.push(`**The run failed:** \`${r.error.split('\n')[0]}\`\n`);
  const phases = [['baseline', r.baseline], ['soak (attacks)', r.soak], ['cooldown', r.cooldown]].filter(([, p]) => p);
  if (phases.length) {
    out.push(`| figure | ${phases.map(([n]) => n).join(' | ')} |`);
    out.push(`|---|${phases.map(() => '---').join('|')}|`);
    const row = (label, fn) => out.push(`| ${label} | ${phases.map(([, p]) => fn(p)).join(' | ')} |`);
    row('bystander answers', (p) => f(p.bystander.count, 0));
    row('bystander round trip p50 / p99 / max (ms)', (p) => `${f(p.bystander.p50Ms, 2)} / ${f(p.bystander.p99Ms, 2)} / ${f(p.bystander.maxMs, 2)}`);
    row('bystander answers over 100 ms / over 1 s', (p) => `${p.bystander.over100Ms} / ${p.bystander.over1sMs}`);
    row('agents\' WebSocket heartbeat round trip p50 / p99 / max (ms)', (p) => `${f(p.heartbeats.p50Ms, 2)} / ${f(p.heartbeats.p99Ms, 2)} / ${f(p.heartbeats.maxMs, 2)}`);
    row('agents\' HTTP poll round trip p50 / p99 / max (ms)', (p) => `${f(p.httpPolls.p50Ms, 2)} / ${f(p.httpPolls.p99Ms, 2)} / ${f(p.httpPolls.maxMs, 2)}`);
    row('new agent (fresh uid, new connection) admitted: WebSocket connect → first answer, p50 / max (ms)', (p) => `${f(p.newcomers.websocket.p50Ms)} / ${f(p.newcomers.websocket.maxMs)} (${p.newcomers.websocket.count} admitted${Object.keys(p.newcomers.websocket.failed).length ? `; not in 30 s: ${obj(p.newcomers.websocket.failed)}` : ''})`);
    row('new agent admitted: HTTP first POST on a new connection, p50 / max (ms)', (p) => `${f(p.newcomers.http.p50Ms)} / ${f(p.newcomers.http.maxMs)} (${p.newcomers.http.count} admitted${Object.keys(p.newcomers.http.failed).length ? `; not in 30 s: ${obj(p.newcomers.http.failed)}` : ''})`);
    row('connections waiting to be accepted (listen queue), most seen', (p) => f(p.acceptQueueMax, 0));
    row('agent messages per second', (p) => f(p.agentMessagesPerSecond, 0));
    row('bridge peak RSS (MiB)', (p) => f(p.peakRssMiB));
    row('bridge RSS at the end (MiB)', (p) => f(p.rssEndMiB));
    row('bridge CPU (cores)', (p) => f(p.serverCpuCores, 2));
    row('normal agents connected: lowest / at the end', (p) => `${p.connected.min} / ${p.connected.end} of ${p.connected.of}`);
    row('normal agents disconnected / reconnected', (p) => `${p.disconnects} / ${p.reconnects}`);
    row('generator CPU (cores) / event-loop lag p99 (ms)', (p) => `${f(p.generatorCpuCores, 2)} / ${f(p.generatorLoopLagP99Ms)}`);
    out.push('');
  }
  if (r.normalAgents) out.push(`Every normal agent stayed connected: **${r.allStayedConnected ? 'yes' : 'no'}** (${r.normalAgents.connected} of ${r.normalAgents.of} connected at the end, ${r.normalAgents.disconnects} disconnects, ${r.normalAgents.reconnects} reconnects, ${r.normalAgents.appliedCurrentConfig} running the desired config; agent-side errors: ${obj(r.normalAgents.errorKinds)}). The bridge's connected-agents gauge after the cooldown: ${r.agentsConnectedGauge}. Connect storm before it: ${f(r.convergeMs, 0)} ms to all APPLIED, peak RSS ${f(r.peakRssConnectMiB)} MiB (empty: ${f(r.baseRssMiB)} MiB).\n`);
  if (r.refusals) {
    out.push(`Refusals during the attacks (\`fleetbridge_opamp_protocol_errors_total\`, transport/code): ${obj(r.refusals)}. During the baseline: ${obj(r.refusalsBaseline)}; during the cooldown: ${obj(r.refusalsCooldown)}.\n`);
  }
  const h = r.hostile;
  if (h) {
    const a = r.attack;
    const s = m.soakSeconds;
    out.push('What the attackers sent and got:\n');
    if (h.process) out.push(`The attackers' process used ${f(h.process.cpuCores, 2)} cores (event-loop lag p99 ${f(h.process.loopLagP99Ms)} ms, max ${f(h.process.loopLagMaxMs)} ms).\n`);
    if (m.attacks.includes('heavy')) out.push(`- **largest accepted reports**: ${a.heavySockets} WebSockets, messages of ${f(a.heavyMessageBytes / 1024 / 1024, 2)} MiB (256 attributes × 4 KiB, 2,000 health nodes, a 256 KiB effective config; each one different), at most ${a.heavyRate}/s each: ${h.heavy.sent} sent (${f(h.heavy.sent / s / Math.max(1, a.heavySockets))}/s per socket, ${f(h.heavy.bytes / s / 2 ** 20)} MiB/s), ${h.heavy.answers} answered, error answers ${obj(h.heavy.errorResponses)}, ${h.heavy.backpressureSkips} slots skipped waiting for TCP, closes before the end: ${obj(h.heavy.closes)}.`);
    if (m.attacks.includes('flood')) out.push(`- **HTTP flood of fresh instance uids** from one address: ${a.floodSockets} keep-alive sockets at most ${a.floodRate}/s each: ${h.flood.sent} posts (${f(h.flood.sent / s, 0)}/s), ${h.flood.accepted} accepted as new agents, error answers ${obj(h.flood.errorResponses)}, HTTP statuses ${obj(h.flood.httpStatus)}, transport errors ${obj(h.flood.errors)}.`);
    if (m.attacks.includes('overBound')) out.push(`- **over the bounds** (257 attributes, a 4,097-byte value, 2,001 health nodes, a config 1 byte over 256 KiB, in turn): WebSocket ${h.overBound.wsSent} sent, answers ${obj(h.overBound.wsAnswers)}, closes ${obj(h.overBound.wsCloses)}; HTTP ${h.overBound.httpSent} posts, statuses ${obj(h.overBound.httpStatus)}, answers ${obj(h.overBound.httpAnswers)}.`);
    if (m.attacks.includes('oversize')) out.push(`- **over the 4 MiB message limit** (every ${a.oversizeEveryMs} ms): WebSocket ${h.oversize.wsSent} sent, closes ${obj(h.oversize.wsCloses)}, client errors ${obj(h.oversize.wsErrors)}; HTTP ${h.oversize.httpSent} posts, statuses ${obj(h.oversize.httpStatus)}, transport errors ${obj(h.oversize.httpErrors)}.`);
    const c = h.silent.closeMs;
    if (m.attacks.includes('silent')) out.push(`- **silent sockets** (upgrade, never send), ${a.silentSockets} held open, each one closed replaced: ${h.silent.opened} opened, ${h.silent.closedByServer} closed by the bridge (codes ${obj(h.silent.closeCodes)}) after ${f(c.min, 0)} / ${f(c.p50, 0)} / ${f(c.max, 0)} ms (min / median / max), at most ${h.silent.maxOpen} open at once, upgrade failures ${obj(h.silent.upgradeFailures)}.`);
    out.push('');
  }
  return out.join('\n') + '\n';
}
