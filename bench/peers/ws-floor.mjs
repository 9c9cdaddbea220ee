#!/usr/bin/env node
// The floor of the side-by-side fleet benchmark (issue 8): a raw `ws` WebSocket server that does
// the transport part of an OpAMP server's work and nothing else (no protobuf, no per-agent state
// beyond a few counters per connection), so that the cost of the OpAMP logic above it shows.
//
//   node bench/peers/ws-floor.mjs --listen 127.0.0.1:PORT --admin 127.0.0.1:PORT [--path /v1/opamp]
//
// OpAMP side (WebSocket on --path, permessage-deflate off): every incoming binary message is answered
// with one pre-encoded 21-byte message, the size of an OpAMP heartbeat answer (0x00 header +
// ServerToAgent{instance_uid: 16 zero bytes, capabilities: 63}); the incoming bytes are not decoded.
// Admin side: GET /readyz; PUT /config (any body: from then on `0x00 + body` is the config message:
// it is sent to every open connection in batches of 1,000 with setImmediate between batches, and
// as the answer to a new connection's first message; a connection counts as applied when its next
// message after it got the config arrives); GET /stats -> {"agents","connected","applied","configHash"}
// where agents = connections that have sent a message, connected = open connections.
// --heartbeat-seconds is accepted and ignored (symmetry with the other servers).
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { WebSocketServer } from 'ws';

const { values: args } = parseArgs({
  options: {
    listen: { type: 'string', default: '127.0.0.1:4320' },
    admin: { type: 'string', default: '127.0.0.1:4321' },
    path: { type: 'string', default: '/v1/opamp' },
    'heartbeat-seconds': { type: 'string', default: '30' },
  },
});

/** @param {string} s @param {string} flag */
function hostPort(s, flag) {
  const m = /^(.*):(\d+)$/.exec(s);
  if (!m) throw new Error(`--${flag} must be HOST:PORT, got ${s}`);
  return { host: m[1].replace(/^\[(.*)\]$/, '$1'), port: Number(m[2]) };
}

const BATCH = 1000;
/** 0x00 header; field 1 (instance_uid), 16 bytes; field 7 (capabilities) = 63. */
const HEARTBEAT_ANSWER = Buffer.concat([Buffer.from([0x00, 0x0a, 0x10]), Buffer.alloc(16), Buffer.from([0x38, 0x3f])]);

/** @typedef {{ ws: import('ws').WebSocket, messages: number, pushedGen: number, appliedGen: number }} Rec */
/** @type {Set<Rec>} open connections */
const open = new Set();
let agents = 0; // connections that have sent at least one message and are still open
let gen = 0; // config generation; 0: none
/** @type {Buffer | null} */
let configMessage = null;
let configHash = '';
let applied = 0; // connections with appliedGen === gen

const http = createServer((_req, res) => {
  res.writeHead(426, { 'content-type': 'text/plain' }).end('WebSocket only\n');
});
const wss = new WebSocketServer({ server: http, path: args.path, perMessageDeflate: false, clientTracking: false, maxPayload: 16 * 1024 * 1024 + 1 });
wss.on('connection', (ws) => {
  /** @type {Rec} */
  const rec = { ws, messages: 0, pushedGen: 0, appliedGen: 0 };
  open.add(rec);
  ws.on('message', (_data, isBinary) => {
    if (!isBinary) return;
    if (rec.messages++ === 0) agents++;
    if (rec.pushedGen === gen && rec.appliedGen !== gen && gen !== 0) {
      rec.appliedGen = gen;
      applied++;
    }
    if (configMessage && rec.pushedGen !== gen) {
      rec.pushedGen = gen;
      ws.send(configMessage, { binary: true });
    } else {
      ws.send(HEARTBEAT_ANSWER, { binary: true });
    }
  });
  ws.on('error', () => {}); // the close event follows
  ws.on('close', () => {
    open.delete(rec);
    if (rec.messages > 0) agents--;
    if (gen !== 0 && rec.appliedGen === gen) applied--;
  });
});

/**
 * Sends a config message to every open connection that has not had it, 1,000 at a time.
 * @param {number} forGen @param {Buffer} message
 */
function push(forGen, message) {
  const recs = [...open];
  let i = 0;
  const batch = () => {
    if (forGen !== gen) return; // superseded: the newer push covers everyone
    const end = Math.min(i + BATCH, recs.length);
    for (; i < end; i++) {
      const rec = recs[i];
      if (rec.pushedGen === gen || rec.ws.readyState !== rec.ws.OPEN) continue;
      rec.pushedGen = gen;
      rec.ws.send(message, { binary: true });
    }
    if (i < recs.length) setImmediate(batch);
  };
  batch();
}

const admin = createServer((req, res) => {
  const url = (req.url ?? '').split('?')[0];
  if (req.method === 'GET' && url === '/readyz') return res.end('ok\n');
  if (req.method === 'GET' && url === '/stats') {
    res.setHeader('content-type', 'application/json');
    return res.end(`${JSON.stringify({ agents, connected: open.size, applied, configHash })}\n`);
  }
  if (req.method === 'PUT' && url === '/config') {
    /** @type {Buffer[]} */
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      configHash = createHash('sha256').update(body).digest('hex');
      const message = Buffer.concat([Buffer.from([0x00]), body]);
      configMessage = message;
      gen++;
      applied = 0;
      const pushing = open.size;
      push(gen, message);
      res.setHeader('content-type', 'application/json');
      res.end(`${JSON.stringify({ configHash, pushing })}\n`);
    });
    return;
  }
  res.writeHead(404).end();
});

const l = hostPort(args.listen, 'listen');
const a = hostPort(args.admin, 'admin');
// The same accept queue as Fleetbridge (Go uses somaxconn): reconnect storms must not be decided by it.
await new Promise((ok, fail) => http.once('error', fail).listen({ port: l.port, host: l.host, backlog: 16_384 }, () => ok(undefined)));
await new Promise((ok, fail) => admin.once('error', fail).listen(a.port, a.host, () => ok(undefined)));
for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => process.exit(0));
