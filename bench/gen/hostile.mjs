// Hostile OpAMP clients for the soak (bench/soak.mjs), in their own process, each attack bounded in
// count and time and sent from its own loopback source address. Started with fork(), driven over
// IPC; never writes to stdout.
//
//   heavy:     a few WebSockets sending the largest reports the default bounds accept (256 description
//              attributes of 4 KiB, a health tree of 2,000 nodes, an effective config of 256 KiB), at
//              most `heavyRate` a second each (the per-connection limit), one in the socket at a time
//              (a sender that outruns the server waits for TCP); every message differs a little (a
//              counter in the config, an attribute and the health status), so no cache helps.
//   flood:     HTTP POSTs of fresh instance uids (each with a small description) from one address, on
//              `floodSockets` keep-alive sockets at `floodRate` a second each.
//   overBound: messages each one past one bound (257 attributes, a 4,097-byte value, 2,001 health
//              nodes, an effective config one byte over 256 KiB) on one WebSocket at `overBoundRate`,
//              and over HTTP at `overBoundHttpRate` (answered with BAD_REQUEST).
//   oversize:  every `oversizeEveryMs`, one WebSocket message and one HTTP POST of maxMessageBytes + 1 KiB.
//   silent:    `silentSockets` WebSockets that upgrade and never send; each one the server closes is
//              replaced (at most `silentMaxTotal` in all), to hold that many open all the time.
//
// IPC: { type: 'start', wsUrl, httpUrl, durationMs, sources: { heavy, flood, overBound, oversize, silent },
//        heavySockets, heavyRate, floodSockets, floodRate, overBoundRate, overBoundHttpRate,
//        oversizeEveryMs, maxMessageBytes, silentSockets, silentMaxTotal, headers? }
//      → { type: 'started' } once the heavy and silent sockets are open; the attacks then run for
//        durationMs and stop by themselves;  { type: 'report?' } → { type: 'report', … } at any time;
//      { type: 'stop' } → ends everything, answers { type: 'stopped' } and exits 0.
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import protobuf from 'protobufjs/minimal.js';
import { WebSocket } from 'ws';
import { opamp } from '../../dist/src/opamp/generated/opamp.js';

const pb = opamp.proto.v1;
const Writer = protobuf.Writer;
// ReportsStatus | AcceptsRemoteConfig | ReportsEffectiveConfig | ReportsHealth | ReportsRemoteConfig | ReportsHeartbeat
const CAPS = 0x1 | 0x2 | 0x4 | 0x800 | 0x1000 | 0x2000;
const CT = 'application/x-protobuf';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();

let cfg = null;
const lag = monitorEventLoopDelay({ resolution: 10 });
let cpuAtStart = null;
let startedAt = 0;
let endAt = 0;
let stopping = false;
const open = new Set(); // every WebSocket, to end them at stop
const httpAgents = [];
const timers = new Set();
const inc = (o, k, n = 1) => (o[k] = (o[k] ?? 0) + n);

const stats = {
  heavy: { sockets: 0, sent: 0, bytes: 0, answers: 0, errorResponses: {}, closes: {}, backpressureSkips: 0, messageBytes: 0 },
  flood: { sent: 0, answered: 0, accepted: 0, errorResponses: {}, httpStatus: {}, errors: {} },
  overBound: { wsSent: 0, wsAnswers: {}, wsCloses: {}, httpSent: 0, httpAnswers: {}, httpStatus: {}, httpErrors: {} },
  oversize: { wsSent: 0, wsCloses: {}, wsErrors: {}, httpSent: 0, httpStatus: {}, httpErrors: {} },
  silent: { opened: 0, upgradeFailures: {}, closedByServer: 0, closeCodes: {}, openMsToClose: [], openNow: 0, maxOpen: 0 },
};

function randomUid() {
  const u = randomBytes(16);
  u[6] = 0x70 | (u[6] & 0x0f);
  u[8] = 0x80 | (u[8] & 0x3f);
  return u;
}
const kv = (key, stringValue) => ({ key, value: { stringValue } });
const uuidOf = (uid) => {
  const h = uid.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
};
/** protobuf of an AgentToServer, with the WebSocket varint-0 header when `ws`. */
const encode = (msg, ws) => Buffer.from(pb.AgentToServer.encode(msg, ws ? Writer.create().uint32(0) : Writer.create()).finish());
const seqField = (seq) => {
  const w = Writer.create();
  w.uint32(0x10).uint64(seq);
  return Buffer.from(w.finish());
};
function decodeAnswer(buf, ws) {
  try {
    return pb.ServerToAgent.decode(ws ? buf.subarray(1) : buf);
  } catch {
    return null;
  }
}
const errType = (m) => (m?.errorResponse ? ['UNKNOWN', 'BAD_REQUEST', 'UNAVAILABLE'][m.errorResponse.type ?? 0] ?? String(m.errorResponse.type) : 'none');

// ---- the largest accepted report, and ones just over the bounds ------------------------------------

const MARK = 'MRK0000000000'; // 3 + 10 digits, patched with a counter
const filler = (n, seed) => {
  const unit = `${seed}-abcdefghijklmnopqrstuvwxyz0123456789-`;
  return unit.repeat(Math.ceil(n / unit.length)).slice(0, n);
};

/** Effective config YAML of exactly `bytes` bytes, starting with "# MRK…" when `marked`. */
function configBody(bytes, marked) {
  let s = (marked ? `# ${MARK}\n` : '# config\n') + 'receivers:\n';
  for (let i = 0; s.length < bytes; i++) s += `  otlp/r${i}:\n    protocols: { grpc: { endpoint: "127.0.0.1:${10000 + (i % 50000)}" } }\n`;
  return Buffer.from(s.slice(0, bytes - 1) + '\n');
}

/** A health tree of `nodes` nodes in all (root, pipelines, components), the root's status marked. */
function healthTree(nodes, marked) {
  const start = Date.now() * 1e6;
  const node = (status) => ({ healthy: true, startTimeUnixNano: start, status, statusTimeUnixNano: start });
  const root = { ...node(marked ? `StatusOK ${MARK}` : 'StatusOK'), componentHealthMap: {} };
  let n = 1;
  for (let p = 0; n < nodes; p++) {
    const pipe = { ...node('StatusOK'), componentHealthMap: {} };
    root.componentHealthMap[`pipeline:traces/p${p}`] = pipe;
    n++;
    for (let c = 0; c < 50 && n < nodes; c++, n++) pipe.componentHealthMap[`receiver:otlp/c${c}`] = node('StatusOK');
  }
  return root;
}

function heavyMessage(uid, o = {}) {
  const attrs = o.attributes ?? 256;
  const valueBytes = o.valueBytes ?? 4096;
  const non = [];
  for (let i = 0; i < attrs; i++) non.push(kv(`hostile.attribute.${String(i).padStart(3, '0')}`, i === 0 ? MARK + filler(valueBytes - MARK.length, i) : filler(valueBytes, i)));
  const configBytes = (o.configBytes ?? 256 * 1024) - 'text/yaml'.length; // the bound counts name + body + content type
  return {
    instanceUid: uid,
    capabilities: CAPS,
    agentDescription: { identifyingAttributes: [kv('service.name', 'hostile'), kv('service.instance.id', uuidOf(uid))], nonIdentifyingAttributes: non },
    health: healthTree(o.healthNodes ?? 2000, true),
    effectiveConfig: { configMap: { configMap: { '': { body: configBody(configBytes, true), contentType: 'text/yaml' } } } },
  };
}

/** Pre-encoded message whose markers are patched with a counter before each send. */
function patchable(msg) {
  const buf = encode(msg, true);
  const offsets = [];
  for (let at = buf.indexOf(MARK); at >= 0; at = buf.indexOf(MARK, at + 1)) offsets.push(at + 3);
  return {
    buf,
    next(counter) {
      const digits = String(counter % 1e10).padStart(10, '0');
      for (const off of offsets) buf.write(digits, off, 'latin1');
      return buf;
    },
  };
}

// ---- heavy ----------------------------------------------------------------------------------------

function wsOpen(url, localAddress, opts = {}) {
  const ws = new WebSocket(url, { perMessageDeflate: false, localAddress, headers: cfg.headers ?? {}, handshakeTimeout: 15_000, maxPayload: 64 * 1024 * 1024, ...opts });
  ws.binaryType = 'nodebuffer';
  open.add(ws);
  ws.on('close', () => open.delete(ws));
  return ws;
}
const opened = (ws) => new Promise((resolve, reject) => {
  ws.once('open', resolve);
  ws.once('error', reject);
  ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
});

async function heavySocket(k) {
  const s = stats.heavy;
  const uid = randomUid();
  const tpl = patchable(heavyMessage(uid));
  s.messageBytes = tpl.buf.length;
  const ws = wsOpen(cfg.wsUrl, cfg.sources.heavy);
  await opened(ws);
  s.sockets++;
  ws.on('message', (data) => {
    s.answers++;
    const m = decodeAnswer(data, true);
    if (m?.errorResponse) inc(s.errorResponses, errType(m));
  });
  ws.on('close', (code) => {
    if (!stopping && now() < endAt) inc(s.closes, code);
  });
  ws.on('error', () => {});
  let seq = 0;
  let counter = k * 1e8;
  const period = 1000 / cfg.heavyRate;
  return () => {
    // Paced at most heavyRate a second, never faster (a slot missed for backpressure is skipped).
    let next = now();
    const tick = () => {
      if (stopping || ws.readyState !== WebSocket.OPEN || now() >= endAt) return;
      if (ws.bufferedAmount === 0) {
        // bufferedAmount 0: ws handed the previous message to the kernel, the buffer may be patched.
        const body = tpl.next(counter++);
        ws.send(Buffer.concat([body, seqField(seq++)]), { binary: true });
        s.sent++;
        s.bytes += body.length;
      } else s.backpressureSkips++;
      next += period;
      const t = setTimeout(tick, Math.max(0, next - now()));
      timers.add(t);
    };
    tick();
  };
}

// ---- flood ----------------------------------------------------------------------------------------

function post(agent, body, extraHeaders = {}) {
  return new Promise((resolve) => {
    const u = new URL(cfg.httpUrl);
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent, headers: { 'Content-Type': CT, 'Content-Length': body.length, ...(cfg.headers ?? {}), ...extraHeaders }, timeout: 30_000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', () => resolve({ error: 'response-error' }));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'timeout' })));
    req.on('error', (err) => resolve({ error: err.code ?? err.message }));
    req.end(body);
  });
}

async function floodLoop(k) {
  const s = stats.flood;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1, localAddress: cfg.sources.flood });
  httpAgents.push(agent);
  const period = 1000 / cfg.floodRate;
  let next = now() + (k * period) / cfg.floodSockets;
  while (!stopping && now() < endAt) {
    await sleep(Math.max(0, next - now()));
    next = Math.max(next + period, now());
    if (stopping || now() >= endAt) break;
    const uid = randomUid();
    s.sent++;
    const r = await post(agent, encode({ instanceUid: uid, sequenceNum: 0, capabilities: CAPS, agentDescription: { identifyingAttributes: [kv('service.name', 'flood'), kv('service.instance.id', uuidOf(uid))], nonIdentifyingAttributes: [kv('host.name', `flood-${s.sent}`)] } }, false));
    if (r.error) {
      if (!stopping) inc(s.errors, r.error);
    } else {
      inc(s.httpStatus, r.status);
      if (r.status === 200) {
        s.answered++;
        const m = decodeAnswer(r.body, false);
        if (m?.errorResponse) inc(s.errorResponses, errType(m));
        else s.accepted++;
      }
    }
  }
}

// ---- over the bounds, over the size limit -----------------------------------------------------------

function overBoundMessages(uid) {
  const base = (o) => heavyMessage(uid, { attributes: 8, valueBytes: 64, healthNodes: 10, configBytes: 2048, ...o });
  return [
    ['attributes', patchable(base({ attributes: 257 }))],
    ['value', patchable(base({ valueBytes: 4097 }))],
    ['health', patchable(base({ healthNodes: 2001 }))],
    ['config', patchable(base({ configBytes: 256 * 1024 + 1 }))],
  ];
}

async function overBoundWs() {
  const s = stats.overBound;
  const msgs = overBoundMessages(randomUid());
  const ws = wsOpen(cfg.wsUrl, cfg.sources.overBound);
  await opened(ws);
  ws.on('message', (data) => inc(s.wsAnswers, errType(decodeAnswer(data, true))));
  ws.on('close', (code) => {
    if (!stopping && now() < endAt) inc(s.wsCloses, code);
  });
  ws.on('error', () => {});
  let i = 0;
  let seq = 0;
  const period = 1000 / cfg.overBoundRate;
  return () => {
    let next = now();
    const tick = () => {
      if (stopping || ws.readyState !== WebSocket.OPEN || now() >= endAt) return;
      if (ws.bufferedAmount === 0) {
        const body = msgs[i % msgs.length][1].next(i);
        i++;
        ws.send(Buffer.concat([body, seqField(seq++)]), { binary: true });
        s.wsSent++;
      }
      next += period;
      timers.add(setTimeout(tick, Math.max(0, next - now())));
    };
    tick();
  };
}

async function overBoundHttp() {
  const s = stats.overBound;
  const msgs = overBoundMessages(randomUid()).map(([name, p]) => [name, p.buf.subarray(1)]); // no WebSocket header
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1, localAddress: cfg.sources.overBound });
  httpAgents.push(agent);
  const period = 1000 / cfg.overBoundHttpRate;
  for (let i = 0, next = now(); !stopping && now() < endAt; i++) {
    await sleep(Math.max(0, next - now()));
    next = Math.max(next + period, now());
    if (stopping || now() >= endAt) break;
    s.httpSent++;
    const r = await post(agent, msgs[i % msgs.length][1]);
    if (r.error) {
      if (!stopping) inc(s.httpErrors, r.error);
    } else {
      inc(s.httpStatus, r.status);
      if (r.status === 200) inc(s.httpAnswers, errType(decodeAnswer(r.body, false)));
    }
  }
}

async function oversizeLoop() {
  const s = stats.oversize;
  const uid = randomUid();
  // A valid AgentToServer over the limit: an effective config of maxMessageBytes + 1 KiB.
  const msg = { instanceUid: uid, capabilities: CAPS, effectiveConfig: { configMap: { configMap: { '': { body: configBody(cfg.maxMessageBytes + 1024, false), contentType: 'text/yaml' } } } } };
  const wsBytes = encode(msg, true);
  const httpBytes = wsBytes.subarray(1);
  const agent = new http.Agent({ keepAlive: false, localAddress: cfg.sources.oversize });
  httpAgents.push(agent);
  for (let next = now(); !stopping && now() < endAt; ) {
    await sleep(Math.max(0, next - now()));
    next += cfg.oversizeEveryMs;
    if (stopping || now() >= endAt) break;
    const ws = wsOpen(cfg.wsUrl, cfg.sources.oversize);
    const wsDone = new Promise((resolve) => {
      ws.on('open', () => {
        s.wsSent++;
        ws.send(wsBytes, { binary: true });
      });
      ws.on('error', (err) => {
        if (!stopping) inc(s.wsErrors, err.code ?? String(err.message).slice(0, 60));
      });
      ws.on('close', (code) => {
        inc(s.wsCloses, code);
        resolve();
      });
    });
    s.httpSent++;
    const r = await post(agent, httpBytes);
    if (r.error) {
      if (!stopping) inc(s.httpErrors, r.error);
    } else inc(s.httpStatus, r.status);
    await Promise.race([wsDone, sleep(5000)]);
    if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
  }
}

// ---- silent -----------------------------------------------------------------------------------------

function silentOne() {
  const s = stats.silent;
  if (stopping || now() >= endAt || s.opened >= cfg.silentMaxTotal) return;
  s.opened++;
  const ws = wsOpen(cfg.wsUrl, cfg.sources.silent);
  let openedAt = 0;
  let byUs = false;
  ws.on('open', () => {
    openedAt = now();
    s.openNow++;
    s.maxOpen = Math.max(s.maxOpen, s.openNow);
  });
  ws.on('unexpected-response', (_req, res) => {
    inc(s.upgradeFailures, `http-${res.statusCode}`);
    res.resume();
  });
  ws.on('error', (err) => {
    // Not ours: an upgrade still in progress when the attack ended and its sockets were dropped.
    if (!openedAt && !byUs && !stopping) inc(s.upgradeFailures, err.code ?? String(err.message).slice(0, 60));
  });
  ws.on('close', (code) => {
    if (!openedAt) return setTimeout(silentOne, 200);
    s.openNow--;
    if (stopping || byUs) return;
    s.closedByServer++;
    inc(s.closeCodes, code);
    s.openMsToClose.push(now() - openedAt);
    silentOne(); // hold as many open as before
  });
  ws.stopSilent = () => {
    byUs = true;
  };
}

// ---- control ----------------------------------------------------------------------------------------

function report() {
  const ms = stats.silent.openMsToClose.slice().sort((a, b) => a - b);
  const q = (p) => (ms.length ? ms[Math.min(ms.length - 1, Math.ceil(ms.length * p) - 1)] : null);
  const cpu = cpuAtStart ? process.cpuUsage(cpuAtStart) : { user: 0, system: 0 };
  const process_ = { cpuCores: startedAt ? (cpu.user + cpu.system) / 1000 / (Math.min(now(), endAt) - startedAt) : 0, loopLagP99Ms: lag.count ? Math.max(0, lag.percentile(99) / 1e6 - 10) : 0, loopLagMaxMs: lag.count ? Math.max(0, lag.max / 1e6 - 10) : 0 };
  return { process: process_, ...stats, silent: { ...stats.silent, openMsToClose: undefined, closeMs: { count: ms.length, min: ms[0] ?? null, p50: q(0.5), max: ms.at(-1) ?? null } } };
}

async function start(m) {
  cfg = m;
  endAt = now() + m.durationMs;
  startedAt = now();
  cpuAtStart = process.cpuUsage();
  lag.enable();
  // Open the long-lived sockets first, then everything starts at once.
  const heavyStarters = await Promise.all(Array.from({ length: m.heavySockets }, (_, k) => heavySocket(k)));
  const overStarter = m.overBoundRate > 0 ? await overBoundWs() : null;
  for (let i = 0; i < m.silentSockets; i++) silentOne();
  for (const s of heavyStarters) s();
  overStarter?.();
  const loops = [];
  for (let k = 0; k < m.floodSockets; k++) loops.push(floodLoop(k));
  if (m.overBoundHttpRate > 0) loops.push(overBoundHttp());
  if (m.oversizeEveryMs > 0) loops.push(oversizeLoop());
  timers.add(setTimeout(() => closeAll(), m.durationMs));
  return loops;
}

function closeAll() {
  stopping = true;
  for (const ws of open) {
    ws.stopSilent?.();
    ws.terminate();
  }
  for (const a of httpAgents) a.destroy();
}

process.on('message', async (m) => {
  try {
    if (m?.type === 'start') {
      await start(m);
      process.send({ type: 'started', id: m.id, heavyMessageBytes: stats.heavy.messageBytes });
    } else if (m?.type === 'report?') {
      process.send({ type: 'report', id: m.id, report: report(), ended: now() >= endAt });
    } else if (m?.type === 'stop') {
      stopping = true;
      for (const t of timers) clearTimeout(t);
      closeAll();
      process.send({ type: 'stopped', id: m.id, report: report() }, () => process.exit(0));
      setTimeout(() => process.exit(0), 1000).unref();
    }
  } catch (err) {
    process.send({ type: 'error', id: m?.id, message: err.message });
  }
});
process.on('disconnect', () => process.exit(2));
process.send({ type: 'ready', pid: process.pid });
