// A well-behaved OpAMP agent in its own process for the soak (bench/soak.mjs): one WebSocket,
// a first message with its description, then a heartbeat every intervalMs on a fixed schedule —
// whether or not the previous one was answered, so that a stall of the server is measured in
// full by every heartbeat that waits behind it, not once. The server answers each message of a
// connection in order, so answers are matched to heartbeats first in, first out.
// Started with child_process.fork() and driven over IPC; never writes to stdout.
//
// IPC, orchestrator → bystander:
//   { type: 'start', url, httpUrl?, localAddress?, intervalMs, headers?, newcomerEveryMs?, newcomerAddress? }
//                        → { type: 'started' } after the first answer
//     newcomerEveryMs: also, that often, a new agent (fresh uid, from newcomerAddress) connects —
//     alternately over WebSocket (connect, upgrade, first message) and over HTTP (a new connection,
//     a first POST) — and the time until its first answer is recorded (at most 30 s: then a timeout).
//   { type: 'report?' }  → { type: 'report', sentAt: [wall ms], rttMs: [ms], outstanding: [wall ms of
//                          heartbeats unanswered now], closes: [{ at, code, reason }], errors, skipped,
//                          newcomers: [{ at, transport, ms (null: no answer in 30 s), error? }] }
//   { type: 'stop' }     → closes and exits 0
// Times are wall clock (performance.timeOrigin + performance.now(), µs precision), comparable with
// Date.now() in the orchestrator. At most MAX_IN_FLIGHT heartbeats wait at once (more are skipped
// and counted: the oldest waiting one is what the report's outstanding shows).
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { WebSocket } from 'ws';

const MAX_IN_FLIGHT = 1000;
const wallNow = () => performance.timeOrigin + performance.now();

function varint(n) {
  const out = [];
  while (n > 127) {
    out.push((n & 127) | 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}
const field = (no, wire, payload) => Buffer.concat([varint((no << 3) | wire), wire === 2 ? varint(payload.length) : Buffer.alloc(0), payload]);
const str = (s) => Buffer.from(s, 'utf8');
const kv = (k, v) => field(1, 2, Buffer.concat([field(1, 2, str(k)), field(2, 2, field(1, 2, str(v)))]));

function newUid() {
  const u = randomBytes(16);
  u[6] = 0x70 | (u[6] & 0x0f);
  u[8] = 0x80 | (u[8] & 0x3f);
  return u;
}
const uid = newUid();
// AgentDescription: identifying service.name=bystander; not selected by the bench's Collector.
const description = field(3, 2, Buffer.concat([field(1, 2, kv('service.name', 'bystander')), field(2, 2, kv('host.name', 'bystander'))]));
let seq = 0;
/** AgentToServer (with the WebSocket varint-0 header): uid, sequence_num, capabilities ReportsStatus. */
function message(first) {
  return Buffer.concat([Buffer.from([0]), field(1, 2, uid), field(2, 0, varint(seq++)), field(4, 0, varint(1)), first ? description : Buffer.alloc(0)]);
}

/** A newcomer's first message (no WebSocket header): its own uid, sequence 0, the description. */
const newcomerMessage = (u) => Buffer.concat([field(1, 2, u), field(2, 0, varint(0)), field(4, 0, varint(1)), field(3, 2, Buffer.concat([field(1, 2, kv('service.name', 'newcomer'))]))]);
const NEWCOMER_TIMEOUT_MS = 30_000;
const newcomers = [];
let newcomerTimer = null;
let newcomerCount = 0;
function newcomer(m) {
  const at = wallNow();
  const rec = { at, transport: newcomerCount++ % 2 === 0 ? 'websocket' : 'http', ms: null };
  newcomers.push(rec);
  const body = newcomerMessage(newUid());
  let done = false;
  const finish = (error) => {
    if (done) return;
    done = true;
    clearTimeout(t);
    if (error) rec.error = error;
    else rec.ms = wallNow() - at;
  };
  const t = setTimeout(() => finish('timeout'), NEWCOMER_TIMEOUT_MS);
  if (rec.transport === 'websocket') {
    const c = new WebSocket(m.url, { perMessageDeflate: false, headers: m.headers ?? {}, localAddress: m.newcomerAddress, handshakeTimeout: NEWCOMER_TIMEOUT_MS });
    c.on('open', () => c.send(Buffer.concat([Buffer.from([0]), body]), { binary: true }));
    c.on('message', () => {
      finish();
      c.close(1000);
    });
    c.on('error', (err) => finish(String(err.code ?? err.message).slice(0, 60)));
    setTimeout(() => c.terminate(), NEWCOMER_TIMEOUT_MS + 1000).unref();
  } else {
    const u = new URL(m.httpUrl);
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent: false, localAddress: m.newcomerAddress, headers: { 'Content-Type': 'application/x-protobuf', 'Content-Length': body.length, ...(m.headers ?? {}) } }, (res) => {
      res.resume();
      res.on('end', () => finish(res.statusCode === 200 ? undefined : `http-${res.statusCode}`));
    });
    req.on('error', (err) => finish(String(err.code ?? err.message).slice(0, 60)));
    req.setTimeout(NEWCOMER_TIMEOUT_MS + 1000, () => req.destroy());
    req.end(body);
  }
}

const sentAt = [];
const rttMs = [];
const inFlight = []; // wall times of heartbeats sent and not answered, oldest first
let head = 0;
const closes = [];
let errors = 0;
let skipped = 0;
let ws = null;
let timer = null;
let awaitingFirst = false;
let startedId = null;

function start(m) {
  ws = new WebSocket(m.url, { perMessageDeflate: false, headers: m.headers ?? {}, ...(m.localAddress ? { localAddress: m.localAddress } : {}) });
  ws.binaryType = 'nodebuffer';
  ws.on('open', () => {
    inFlight.push(wallNow());
    ws.send(message(true), { binary: true });
  });
  ws.on('message', () => {
    const now = wallNow();
    if (head >= inFlight.length) return; // unsolicited (none expected)
    const t = inFlight[head++];
    if (head > 4096 && head * 2 > inFlight.length) {
      inFlight.splice(0, head);
      head = 0;
    }
    if (awaitingFirst) {
      // The first answer (to the description): the heartbeats start now.
      awaitingFirst = false;
      process.send({ type: 'started', id: startedId, firstMs: now - t });
      timer = setInterval(beat, m.intervalMs);
      if (m.newcomerEveryMs > 0 && m.httpUrl) newcomerTimer = setInterval(() => newcomer(m), m.newcomerEveryMs);
      return;
    }
    sentAt.push(t);
    rttMs.push(now - t);
  });
  ws.on('close', (code, reason) => {
    closes.push({ at: wallNow(), code, reason: reason.toString() });
    clearInterval(timer);
  });
  ws.on('error', () => errors++);
}

function beat() {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  if (inFlight.length - head >= MAX_IN_FLIGHT) {
    skipped++;
    return;
  }
  inFlight.push(wallNow());
  ws.send(message(false), { binary: true });
}

process.on('message', (m) => {
  if (m?.type === 'start') {
    awaitingFirst = true;
    startedId = m.id;
    start(m);
  } else if (m?.type === 'report?') {
    process.send({ type: 'report', id: m.id, sentAt, rttMs, outstanding: inFlight.slice(head), closes, errors, skipped, newcomers });
  } else if (m?.type === 'stop') {
    clearInterval(timer);
    clearInterval(newcomerTimer);
    ws?.close(1000, 'bystander stopping');
    setTimeout(() => process.exit(0), 500).unref();
  }
});
process.on('disconnect', () => process.exit(2));
process.send({ type: 'ready', pid: process.pid });
