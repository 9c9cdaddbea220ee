// One load-generator process: simulates up to ~15,000 OpAMP agents (WebSocket, or plain HTTP
// polling) against a server in another process. Started by bench/gen/pool.mjs with
// child_process.fork() and driven over IPC; it never writes to stdout.
//
// IPC, orchestrator → worker (an optional `id` is echoed in the answer):
//   { type: 'start', url, httpUrl?, count, firstIndex, httpShare, localAddresses, heartbeatSeconds,
//     httpPollSeconds, concurrency, effectiveConfigBytes, uidPrefix, deadlineMs,
//     heartbeat?, namespace?, labels?, reconnectBaseMs?, reconnectMaxMs? }
//                                                                      → { type: 'started', count, http, pid }
//     deadlineMs: ms from now, or an absolute Date.now() value when > 1e12 (the pool sends that);
//     heartbeat: WebSocket heartbeats on from the start (default off); HTTP agents always poll;
//     namespace (default "bench") is reported as k8s.namespace.name, labels are extra attributes.
//   { type: 'heartbeat', on, seconds? }                                → { type: 'heartbeat-ok', on }
//   { type: 'report', hash, transport? }  ('websocket' | 'http')        → { type: 'applied-times', hash, times }
//   { type: 'cpu?' }                                                   → { type: 'cpu', user, system, wallMs, totalUser, totalSystem }
//   { type: 'progress?' }                                              → { type: 'progress', … } at once
//   { type: 'latency?', reset? }                                       → { type: 'latency', websocket, http, outstandingMaxMs }
//     round trips since the last reset: WebSocket heartbeats (sent → answered) and HTTP polls
//     (request → response), as log-scale histograms (LAT_BUCKETS_PER_OCTAVE buckets per doubling of
//     µs; pool.mjs merges and reads them); outstandingMaxMs: the oldest heartbeat unanswered now.
//   { type: 'stop', disconnect? }                                      → { type: 'stopped', reason }, then exit 0
//   A request that fails is answered { type: 'error', id, message }.
// progress: { count, connected (answered on the current connection / last poll), everConnected,
//   errors, errorKinds, reconnects, disconnects (WebSocket closes and failed polls of agents that had
//   been answered, not counting stop), sent, received, heartbeats, fullStateRequests, configsReceived,
//   applied: { hashHex: agents now running it }, loopLagP99Ms, loopLagMaxMs }.
// worker → orchestrator, unasked:
//   { type: 'ready' } once loaded; { type: 'progress', … } every 250 ms;
//   { type: 'connected-all', ms } once every agent got the answer to its first message;
//   { type: 'stopped', reason: 'deadline' } then exit 3 when deadlineMs passed.
// Times (applied-times) are wall clock, ms since the epoch with µs precision
// (performance.timeOrigin + performance.now()), comparable with Date.now() in the orchestrator.
import http from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import protobuf from 'protobufjs/minimal.js';
import { WebSocket } from 'ws';
import { opamp } from '../../dist/src/opamp/generated/opamp.js';

const pb = opamp.proto.v1;
const Writer = protobuf.Writer;

// ReportsStatus | AcceptsRemoteConfig | ReportsEffectiveConfig | ReportsHealth | ReportsRemoteConfig | ReportsHeartbeat
const CAPS = 0x1 | 0x2 | 0x4 | 0x800 | 0x1000 | 0x2000;
const FLAG_REPORT_FULL_STATE = 1;
const APPLIED = 1;
const CONTENT_TYPE = 'application/x-protobuf';
const wallNow = () => performance.timeOrigin + performance.now();

let cfg = null;
let agents = [];
let wsAgents = [];
let httpAgents = [];
let stopping = false;
let startedAt = 0;
let connectedAllSent = false;
let progressTimer = null;
let hbTimer = null;
let deadlineTimer = null;
const lag = monitorEventLoopDelay({ resolution: 10 });

const stats = {
  connected: 0, // agents whose current connection (or last HTTP poll) answered
  everConnected: 0,
  errors: 0,
  errorKinds: Object.create(null),
  reconnects: 0,
  disconnects: 0,
  sent: 0,
  received: 0,
  heartbeats: 0,
  fullStateRequests: 0,
  configsReceived: 0,
  serverErrors: 0,
};
/** hashHex → number of agents whose current applied config it is. */
const appliedCount = new Map();
/** hashHex → Float64Array(count): when each agent received that config and sent APPLIED (NaN: not yet). */
const appliedAt = new Map();
/** hashHex → body, so agents share one buffer per config. */
const bodies = new Map();
let effectiveDefault = null;
let startNs = 0;

// Round-trip histograms (heartbeat → answer, poll → response): bucket i holds latencies in
// [2^(i/B), 2^((i+1)/B)) µs, B = LAT_BUCKETS_PER_OCTAVE (a bucket spans 9 %), up to ~2^31 µs.
const LAT_BUCKETS_PER_OCTAVE = 8;
const LAT_BUCKETS = 31 * LAT_BUCKETS_PER_OCTAVE;
let latWs = new Uint32Array(LAT_BUCKETS);
let latHttp = new Uint32Array(LAT_BUCKETS);
function recordLatency(hist, ms) {
  const us = ms * 1000;
  const i = us < 1 ? 0 : Math.min(LAT_BUCKETS - 1, Math.floor(Math.log2(us) * LAT_BUCKETS_PER_OCTAVE));
  hist[i]++;
}

function send(msg, cb) {
  if (!process.connected) return cb?.();
  try {
    process.send(msg, cb);
  } catch {
    cb?.();
  }
}

function error(kind) {
  stats.errors++;
  stats.errorKinds[kind] = (stats.errorKinds[kind] ?? 0) + 1;
}

function toNum(v) {
  if (v == null) return 0;
  return typeof v === 'number' ? v : v.toNumber();
}

// ---- messages -----------------------------------------------------------------------------------

function effectiveYaml(bytes) {
  const head = `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
      http:
        endpoint: 0.0.0.0:4318
  hostmetrics:
    collection_interval: 30s
    scrapers:
      cpu: {}
      memory: {}
      disk: {}
      filesystem: {}
      network: {}
      load: {}
processors:
  memory_limiter:
    check_interval: 1s
    limit_percentage: 80
    spike_limit_percentage: 25
  batch:
    send_batch_size: 8192
    timeout: 200ms
  resource:
    attributes:
`;
  const tail = `exporters:
  otlphttp:
    endpoint: https://otlp.local.example:4318
    compression: gzip
    retry_on_failure:
      enabled: true
      max_elapsed_time: 300s
  debug:
    verbosity: basic
service:
  telemetry:
    metrics:
      level: normal
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, resource, batch]
      exporters: [otlphttp]
    metrics:
      receivers: [otlp, hostmetrics]
      processors: [memory_limiter, resource, batch]
      exporters: [otlphttp]
    logs:
      receivers: [otlp]
      processors: [memory_limiter, resource, batch]
      exporters: [otlphttp]
`;
  let mid = '';
  for (let n = 0; head.length + mid.length + tail.length < bytes; n++) {
    mid += `      - key: bench.local.attribute.${n}\n        value: "local value ${n} set by the node's own configuration"\n        action: upsert\n`;
  }
  return Buffer.from(head + mid + tail);
}

function uuidOf(uid) {
  const h = uid.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const kv = (key, stringValue) => ({ key, value: { stringValue } });

function description(a) {
  const non = [
    kv('os.type', 'linux'),
    kv('host.arch', 'amd64'),
    kv('host.name', `bench-${a.index}`),
    kv('k8s.namespace.name', cfg.namespace),
    kv('k8s.pod.name', `bench-${a.index}`),
    kv('k8s.node.name', `node-${a.index % 64}`),
    kv('k8s.daemonset.name', 'otelcol-agent'),
    kv('bench', 'yes'),
    kv('bench.group', `g${a.index % 10}`),
    kv('bench.transport', a.http ? 'http' : 'websocket'),
  ];
  for (const [k, v] of cfg.labelEntries) non.push(kv(k, v));
  return {
    identifyingAttributes: [kv('service.name', 'otelcol-contrib'), kv('service.version', '0.145.0'), kv('service.instance.id', uuidOf(a.uid))],
    nonIdentifyingAttributes: non,
  };
}

/** The whole state (first message, reconnect, ReportFullState). */
function fullStateMsg(a) {
  return {
    instanceUid: a.uid,
    sequenceNum: a.seq++,
    capabilities: CAPS,
    agentDescription: description(a),
    health: { healthy: true, startTimeUnixNano: startNs, status: 'StatusOK', statusTimeUnixNano: startNs },
    effectiveConfig: { configMap: { configMap: { '': { body: a.effective, contentType: 'text/yaml' } } } },
    remoteConfigStatus: a.appliedHash ? { lastRemoteConfigHash: a.appliedHash, status: APPLIED } : {},
  };
}

function appliedMsg(a) {
  return {
    instanceUid: a.uid,
    sequenceNum: a.seq++,
    capabilities: CAPS,
    effectiveConfig: { configMap: { configMap: { '': { body: a.effective, contentType: 'text/yaml' } } } },
    remoteConfigStatus: { lastRemoteConfigHash: a.appliedHash, status: APPLIED },
  };
}

/** protobuf encoding, with the WebSocket varint-0 header when `ws`. */
function encode(msg, ws) {
  return pb.AgentToServer.encode(msg, ws ? Writer.create().uint32(0) : Writer.create()).finish();
}

function varintLen(n) {
  let len = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}
function writeVarint(buf, off, n) {
  while (n >= 128) {
    buf[off++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[off++] = n;
  return off;
}
/** A heartbeat: instance_uid (1), sequence_num (2), capabilities (4); encoded by hand (hot path). */
function heartbeatBytes(a, ws) {
  const seq = a.seq++;
  const h = ws ? 1 : 0;
  const buf = Buffer.allocUnsafe(h + 18 + 1 + varintLen(seq) + 1 + varintLen(CAPS));
  let off = 0;
  if (ws) buf[off++] = 0;
  buf[off++] = 0x0a;
  buf[off++] = 16;
  a.uid.copy(buf, off);
  off += 16;
  buf[off++] = 0x10;
  off = writeVarint(buf, off, seq);
  buf[off++] = 0x20;
  off = writeVarint(buf, off, CAPS);
  return buf;
}

// ---- answers from the server ------------------------------------------------------------------

function becameReady(a) {
  a.ready = true;
  stats.connected++;
  a.failures = 0;
  if (a.holdsSlot) releaseSlot(a);
  if (a.everConnected) stats.reconnects++;
  else {
    a.everConnected = true;
    stats.everConnected++;
    if (stats.everConnected === agents.length && !connectedAllSent) {
      connectedAllSent = true;
      send({ type: 'connected-all', ms: performance.now() - startedAt });
    }
  }
}

function lostConnection(a) {
  a.hbAt = 0;
  a.hbPending = 0;
  if (a.ready) {
    a.ready = false;
    stats.connected--;
    if (!stopping) stats.disconnects++;
  }
}

/** Handles one ServerToAgent; returns the AgentToServer to answer with, or null. */
function onServerToAgent(a, m) {
  stats.received++;
  if (a.hbPending > 0) {
    // The answer to the oldest heartbeat in flight (a server answers each message, in order); the
    // next one in flight was sent one period after it.
    const now = performance.now();
    recordLatency(latWs, now - a.hbAt);
    a.hbAt = --a.hbPending > 0 ? a.hbAt + hbPeriodMs : 0;
  }
  if (!a.ready) becameReady(a);
  if (m.errorResponse) {
    stats.serverErrors++;
    error(`server-error-${m.errorResponse.type ?? 0}`);
    return null;
  }
  if (m.agentIdentification?.newInstanceUid?.length === 16) a.uid = Buffer.from(m.agentIdentification.newInstanceUid);
  const full = (toNum(m.flags) & FLAG_REPORT_FULL_STATE) !== 0;
  if (full) stats.fullStateRequests++;
  let reply = null;
  const rc = m.remoteConfig;
  if (rc && rc.configHash && rc.configHash.length > 0) {
    stats.configsReceived++;
    const t = wallNow();
    const hex = Buffer.from(rc.configHash).toString('hex');
    const files = rc.config?.configMap ?? {};
    const file = files[''] ?? Object.values(files)[0];
    let body = bodies.get(hex);
    if (!body) {
      body = Buffer.from(file?.body ?? new Uint8Array());
      bodies.set(hex, body);
    }
    let times = appliedAt.get(hex);
    if (!times) {
      times = new Float64Array(agents.length).fill(NaN);
      appliedAt.set(hex, times);
    }
    // The time it first applied this config (again, after another one); a re-offer of the config
    // it runs is answered APPLIED but keeps the time.
    if (a.appliedHex !== hex) {
      if (a.appliedHex) appliedCount.set(a.appliedHex, appliedCount.get(a.appliedHex) - 1);
      appliedCount.set(hex, (appliedCount.get(hex) ?? 0) + 1);
      times[a.slot] = t;
    }
    a.appliedHex = hex;
    a.appliedHash = Buffer.from(rc.configHash);
    a.effective = body;
    reply = full ? fullStateMsg(a) : appliedMsg(a);
  } else if (full) {
    reply = fullStateMsg(a);
  }
  return reply;
}

// ---- WebSocket agents ---------------------------------------------------------------------------

function wsConnect(a) {
  if (stopping) return;
  a.timer = null;
  let ws;
  try {
    ws = new WebSocket(cfg.url, {
      perMessageDeflate: false,
      localAddress: a.localAddress,
      handshakeTimeout: 15_000,
      maxPayload: 64 * 1024 * 1024,
      skipUTF8Validation: true,
    });
  } catch (err) {
    error(err.code ?? 'ws-create');
    return retryLater(a, 0);
  }
  a.ws = ws;
  let retryAfterMs = 0;
  let refused = false;
  ws.binaryType = 'nodebuffer';
  ws.on('open', () => {
    if (stopping) return ws.terminate();
    wsSend(a, encode(fullStateMsg(a), true));
  });
  ws.on('message', (data, isBinary) => {
    if (!isBinary || data.length === 0 || data[0] !== 0) {
      error('bad-frame');
      return;
    }
    let m;
    try {
      m = pb.ServerToAgent.decode(data.subarray(1));
    } catch {
      error('bad-protobuf');
      return;
    }
    const reply = onServerToAgent(a, m);
    if (reply && !stopping) wsSend(a, encode(reply, true));
  });
  ws.on('unexpected-response', (req, res) => {
    refused = true;
    error(`ws-http-${res.statusCode}`);
    const ra = Number(res.headers['retry-after']);
    if (Number.isFinite(ra) && ra > 0) retryAfterMs = ra * 1000;
    res.resume();
    req.destroy();
  });
  ws.on('error', (err) => {
    if (refused) return; // already counted as ws-http-NNN
    error(err.code ?? (String(err.message).startsWith('Opening handshake has timed out') ? 'ws-handshake-timeout' : 'ws-error'));
  });
  ws.on('close', () => {
    if (a.ws !== ws) return;
    a.ws = null;
    const wasReady = a.ready;
    lostConnection(a);
    if (a.holdsSlot) releaseSlot(a);
    if (stopping) return onClosedWhileStopping();
    if (wasReady) a.failures = 0;
    retryLater(a, retryAfterMs);
  });
}

function wsSend(a, bytes) {
  const ws = a.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  stats.sent++;
  ws.send(bytes, { binary: true });
}

/** Reconnect (or first-connect retry) after the backoff: base × 1.5^failures, ±50 % jitter, capped. */
function retryLater(a, minMs) {
  if (stopping) return;
  const base = Math.min(cfg.reconnectMaxMs, cfg.reconnectBaseMs * 1.5 ** a.failures);
  a.failures++;
  const delay = Math.max(minMs, base * (0.5 + Math.random()));
  a.timer = setTimeout(() => {
    a.timer = null;
    if (a.everConnected) connectNow(a);
    else acquireSlot(a);
  }, delay);
}

function connectNow(a) {
  if (a.http) httpSend(a, encode(fullStateMsg(a), false));
  else wsConnect(a);
}

// Concurrency: connects in flight before an agent's first answer (reconnects are not limited:
// a reconnect storm is what they are for; their spread comes from the jittered backoff).
let slotsInUse = 0;
const slotQueue = [];
let slotHead = 0;
function acquireSlot(a) {
  if (stopping) return;
  if (slotsInUse < cfg.concurrency) {
    slotsInUse++;
    a.holdsSlot = true;
    connectNow(a);
  } else slotQueue.push(a);
}
function releaseSlot(a) {
  a.holdsSlot = false;
  slotsInUse--;
  while (!stopping && slotsInUse < cfg.concurrency && slotHead < slotQueue.length) {
    const next = slotQueue[slotHead++];
    slotsInUse++;
    next.holdsSlot = true;
    connectNow(next);
  }
  if (slotHead > 4096 && slotHead * 2 > slotQueue.length) {
    slotQueue.splice(0, slotHead);
    slotHead = 0;
  }
}

// Heartbeats for WebSocket agents: one 10 ms tick walks the agents in order, so beats are spread
// evenly over the period (agent k beats at phase k/n of it).
let hbOn = false;
let hbPeriodMs = 30_000;
let hbCycleStart = 0;
let hbCursor = 0;
function hbTick() {
  const n = wsAgents.length;
  if (n === 0) return;
  const now = performance.now();
  for (;;) {
    const pos = now - hbCycleStart;
    const target = pos >= hbPeriodMs ? n : Math.floor((pos / hbPeriodMs) * n);
    while (hbCursor < target) {
      const a = wsAgents[hbCursor++];
      if (a.ready && a.ws) {
        stats.heartbeats++;
        if (a.hbPending++ === 0) a.hbAt = now;
        wsSend(a, heartbeatBytes(a, true));
      }
    }
    if (pos < hbPeriodMs) break;
    hbCycleStart += hbPeriodMs;
    hbCursor = 0;
    if (now - hbCycleStart >= hbPeriodMs) hbCycleStart = now; // fell far behind: don't burst
  }
}
function setHeartbeat(on, seconds) {
  if (seconds > 0) hbPeriodMs = seconds * 1000;
  if (on && !hbOn) {
    hbCycleStart = performance.now();
    hbCursor = 0;
    hbTimer = setInterval(hbTick, 10);
  } else if (!on && hbOn) {
    clearInterval(hbTimer);
    hbTimer = null;
  }
  hbOn = on;
}

// ---- HTTP agents ------------------------------------------------------------------------------

function httpSend(a, bytes, isPoll = false) {
  if (stopping) return;
  const t0 = isPoll ? performance.now() : 0;
  if (a.timer) {
    clearTimeout(a.timer);
    a.timer = null;
  }
  a.inflight++;
  let finished = false;
  const finish = () => {
    if (finished) return false;
    finished = true;
    a.inflight--;
    return true;
  };
  stats.sent++;
  const u = cfg.httpTarget;
  const req = http.request(
    {
      host: u.hostname,
      port: u.port,
      path: u.path,
      method: 'POST',
      agent: a.httpAgent,
      headers: { 'Content-Type': CONTENT_TYPE, 'Content-Length': bytes.length },
      timeout: 30_000,
    },
    (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', () => {});
      res.on('end', () => {
        if (!finish()) return;
        if (stopping) return onClosedWhileStopping();
        if (isPoll) recordLatency(latHttp, performance.now() - t0);
        if (res.statusCode !== 200) {
          error(`http-${res.statusCode}`);
          lostConnection(a);
          if (a.holdsSlot) releaseSlot(a);
          const ra = Number(res.headers['retry-after']);
          return retryLater(a, Number.isFinite(ra) && ra > 0 ? ra * 1000 : 0);
        }
        let m;
        try {
          m = pb.ServerToAgent.decode(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
        } catch {
          error('bad-protobuf');
          return schedulePoll(a);
        }
        const reply = onServerToAgent(a, m);
        // Something to report is sent at once; otherwise the next poll in httpPollSeconds.
        if (reply) httpSend(a, encode(reply, false));
        else schedulePoll(a);
      });
    },
  );
  req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'http-timeout' })));
  req.on('error', (err) => {
    if (!finish()) return;
    if (stopping) return onClosedWhileStopping();
    error(err.code ?? 'http-error');
    lostConnection(a);
    if (a.holdsSlot) releaseSlot(a);
    retryLater(a, 0);
  });
  req.end(bytes);
}

function schedulePoll(a) {
  if (stopping) return;
  a.timer = setTimeout(() => {
    a.timer = null;
    // After a lost connection (ready false) the agent reports everything again.
    if (a.ready) httpSend(a, heartbeatBytes(a, false), true);
    else httpSend(a, encode(fullStateMsg(a), false));
  }, cfg.httpPollMs);
}

// ---- start, progress, stop --------------------------------------------------------------------

function start(m) {
  const count = Math.max(0, Math.floor(m.count ?? 0));
  if (count > 19_000) throw new Error(`count ${count}: one process may hold at most 20,000 open files`);
  const addrs = m.localAddresses?.length ? m.localAddresses : [undefined];
  const heartbeatSeconds = m.heartbeatSeconds ?? 30;
  cfg = {
    url: m.url,
    httpTarget: null,
    namespace: m.namespace ?? 'bench',
    labelEntries: Object.entries(m.labels ?? {}),
    httpPollMs: (m.httpPollSeconds ?? heartbeatSeconds) * 1000,
    concurrency: Math.max(1, m.concurrency ?? 200),
    reconnectBaseMs: m.reconnectBaseMs ?? 1000,
    reconnectMaxMs: m.reconnectMaxMs ?? 30_000,
  };
  const httpShare = Math.min(1, Math.max(0, m.httpShare ?? 0));
  if (httpShare > 0) {
    const u = new URL(m.httpUrl ?? m.url.replace(/^ws/, 'http'));
    cfg.httpTarget = { hostname: u.hostname, port: Number(u.port || 80), path: u.pathname + u.search };
  }
  startNs = Date.now() * 1e6;
  effectiveDefault = effectiveYaml(m.effectiveConfigBytes ?? 3000);
  const prefix = (m.uidPrefix ?? 0xb0) & 0xff;
  const first = m.firstIndex ?? 0;
  // HTTP agents spread evenly among the agents (every k-th), not in one block.
  const nHttp = Math.round(count * httpShare);
  for (let s = 0; s < count; s++) {
    const index = first + s;
    const uid = Buffer.alloc(16);
    uid[0] = prefix;
    uid[1] = 0xfb; // "fleetbridge bench"
    uid[6] = 0x70; // looks like a UUIDv7 version nibble
    uid[8] = 0x80;
    uid.writeUInt32BE(index >>> 0, 12);
    const isHttp = nHttp > 0 && Math.floor(((s + 1) * nHttp) / count) > Math.floor((s * nHttp) / count);
    const localAddress = addrs[s % addrs.length];
    const a = {
      slot: s,
      index,
      uid,
      http: isHttp,
      localAddress,
      seq: 0,
      ws: null,
      httpAgent: isHttp ? new http.Agent({ keepAlive: true, maxSockets: 1, localAddress }) : null,
      inflight: 0, // HTTP requests outstanding
      ready: false,
      everConnected: false,
      holdsSlot: false,
      failures: 0,
      timer: null,
      hbAt: 0, // when the oldest heartbeat still unanswered was sent (performance.now())
      hbPending: 0, // heartbeats sent and not answered yet
      appliedHash: null,
      appliedHex: null,
      effective: effectiveDefault,
    };
    agents.push(a);
    (isHttp ? httpAgents : wsAgents).push(a);
  }
  const deadline = m.deadlineMs > 1e12 ? m.deadlineMs - Date.now() : m.deadlineMs ?? 600_000;
  deadlineTimer = setTimeout(() => {
    process.stderr.write(`agent-gen ${process.pid}: deadline (${Math.round(deadline)} ms) passed, stopping\n`);
    void shutdown('deadline', false, 3);
  }, Math.max(0, deadline));
  startedAt = performance.now();
  lag.enable();
  progressTimer = setInterval(() => send(progress()), 250);
  setHeartbeat(Boolean(m.heartbeat), heartbeatSeconds);
  if (count === 0) {
    connectedAllSent = true;
    send({ type: 'connected-all', ms: 0 });
  }
  for (const a of agents) acquireSlot(a);
}

function progress() {
  const applied = {};
  for (const [h, n] of appliedCount) if (n > 0) applied[h] = n;
  const p = {
    type: 'progress',
    count: agents.length,
    connected: stats.connected,
    everConnected: stats.everConnected,
    errors: stats.errors,
    errorKinds: { ...stats.errorKinds },
    reconnects: stats.reconnects,
    disconnects: stats.disconnects,
    sent: stats.sent,
    received: stats.received,
    heartbeats: stats.heartbeats,
    fullStateRequests: stats.fullStateRequests,
    configsReceived: stats.configsReceived,
    applied,
    // The histogram's samples include its 10 ms resolution: what is above it is lag.
    loopLagP99Ms: lag.count > 0 ? Math.max(0, lag.percentile(99) / 1e6 - 10) : 0,
    loopLagMaxMs: lag.count > 0 ? Math.max(0, lag.max / 1e6 - 10) : 0,
  };
  lag.reset();
  return p;
}

let closeWaiters = null;
function onClosedWhileStopping() {
  closeWaiters?.();
}

async function shutdown(reason, disconnect, code) {
  if (stopping) return;
  stopping = true;
  clearInterval(progressTimer);
  clearTimeout(deadlineTimer);
  setHeartbeat(false);
  for (const a of agents) if (a.timer) clearTimeout(a.timer);
  const open = () => wsAgents.filter((a) => a.ws).length + httpAgents.reduce((n, a) => n + a.inflight, 0);
  for (const a of wsAgents) {
    const ws = a.ws;
    if (!ws) continue;
    if (ws.readyState === WebSocket.OPEN) {
      if (disconnect) ws.send(encode({ instanceUid: a.uid, sequenceNum: a.seq++, capabilities: CAPS, agentDisconnect: {} }, true));
      ws.close(1000, 'agent stopping');
    } else ws.terminate();
  }
  if (disconnect) for (const a of httpAgents) if (a.everConnected) {
    // Best effort: one last POST with agent_disconnect (queued behind a poll in flight).
    a.inflight++;
    let finished = false;
    const done = () => {
      if (finished) return;
      finished = true;
      a.inflight--;
      onClosedWhileStopping();
    };
    const req = http.request({ host: cfg.httpTarget.hostname, port: cfg.httpTarget.port, path: cfg.httpTarget.path, method: 'POST', agent: a.httpAgent, headers: { 'Content-Type': CONTENT_TYPE } });
    req.on('error', done);
    req.on('response', (r) => r.on('end', done).on('error', done).resume());
    req.end(encode({ instanceUid: a.uid, sequenceNum: a.seq++, capabilities: CAPS, agentDisconnect: {} }, false));
  }
  await new Promise((resolve) => {
    const t = setTimeout(resolve, disconnect ? 3000 : 1500);
    closeWaiters = () => {
      if (open() === 0) {
        clearTimeout(t);
        resolve();
      }
    };
    closeWaiters();
  });
  for (const a of wsAgents) a.ws?.terminate();
  for (const a of httpAgents) a.httpAgent.destroy();
  send(progress());
  send({ type: 'stopped', reason }, () => process.exit(code));
  setTimeout(() => process.exit(code), 1000).unref();
}

let cpuLast = process.cpuUsage();
let cpuLastWall = performance.now();

process.on('message', (m) => {
  const id = m?.id;
  try {
    switch (m?.type) {
      case 'start':
        if (cfg) throw new Error('already started');
        start(m);
        send({ type: 'started', id, count: agents.length, http: httpAgents.length, pid: process.pid });
        break;
      case 'heartbeat':
        setHeartbeat(Boolean(m.on), m.seconds);
        send({ type: 'heartbeat-ok', id, on: hbOn });
        break;
      case 'report': {
        const times = [];
        const arr = appliedAt.get(String(m.hash).toLowerCase());
        const only = m.transport === 'http' ? true : m.transport === 'websocket' ? false : null;
        if (arr) for (let i = 0; i < arr.length; i++) if (!Number.isNaN(arr[i]) && (only === null || agents[i].http === only)) times.push(arr[i]);
        send({ type: 'applied-times', id, hash: m.hash, times });
        break;
      }
      case 'cpu?': {
        const d = process.cpuUsage(cpuLast);
        const total = process.cpuUsage();
        const now = performance.now();
        send({ type: 'cpu', id, user: d.user / 1000, system: d.system / 1000, wallMs: now - cpuLastWall, totalUser: total.user / 1000, totalSystem: total.system / 1000 });
        cpuLast = total;
        cpuLastWall = now;
        break;
      }
      case 'progress?':
        send({ ...progress(), id });
        break;
      case 'latency?': {
        const now = performance.now();
        let outstanding = 0;
        for (const a of wsAgents) if (a.hbPending > 0) outstanding = Math.max(outstanding, now - a.hbAt);
        send({ type: 'latency', id, bucketsPerOctave: LAT_BUCKETS_PER_OCTAVE, websocket: Array.from(latWs), http: Array.from(latHttp), outstandingMaxMs: outstanding });
        if (m.reset) {
          latWs = new Uint32Array(LAT_BUCKETS);
          latHttp = new Uint32Array(LAT_BUCKETS);
        }
        break;
      }
      case 'stop':
        void shutdown('stop', Boolean(m.disconnect), 0);
        break;
      default:
        throw new Error(`unknown message type ${JSON.stringify(m?.type)}`);
    }
  } catch (err) {
    send({ type: 'error', id, message: err.message });
  }
});
// The orchestrator went away: never outlive it.
process.on('disconnect', () => {
  if (!stopping) void shutdown('orchestrator disconnected', false, 2);
});
send({ type: 'ready', pid: process.pid });
