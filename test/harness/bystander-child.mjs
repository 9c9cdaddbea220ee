// A well-behaved OpAMP agent in its own process, for test/harness/bystander.ts: it connects over
// WebSocket, describes itself, then heartbeats one message at a time and writes each answer's
// round-trip time as a JSON line on stdout. Its own process, so that a test that encodes or sends
// large messages does not delay its clock. Exits when stdin closes.
//
// argv: URL HEADERS_JSON INTERVAL_MS
// The few AgentToServer fields it sends are encoded by hand (protobuf: field 1 instance_uid bytes,
// 2 sequence_num varint, 3 agent_description, 4 capabilities varint).
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';

const [url, headersJson, intervalArg] = process.argv.slice(2);
const interval = Number(intervalArg ?? 250);
const uid = randomBytes(16);
uid[6] = 0x70 | (uid[6] & 0x0f);
uid[8] = 0x80 | (uid[8] & 0x3f);

function varint(n) {
  const out = [];
  let v = BigInt(n);
  while (v > 127n) {
    out.push(Number((v & 127n) | 128n));
    v >>= 7n;
  }
  out.push(Number(v));
  return Buffer.from(out);
}
const field = (no, wire, payload) => Buffer.concat([varint((no << 3) | wire), wire === 2 ? varint(payload.length) : Buffer.alloc(0), payload]);
const str = (s) => Buffer.from(s, 'utf8');
// AgentDescription{ identifying_attributes: [KeyValue{ key: "service.name", value: AnyValue{ string_value: "bystander" } }] }
const description = field(1, 2, Buffer.concat([field(1, 2, str('service.name')), field(2, 2, field(1, 2, str('bystander')))]));
let seq = 0;
function message(withDescription) {
  const parts = [field(1, 2, uid), field(2, 0, varint(seq++)), field(4, 0, varint(1))];
  if (withDescription) parts.push(field(3, 2, description));
  return Buffer.concat([Buffer.from([0]), ...parts]);
}

const ws = new WebSocket(url, { perMessageDeflate: false, headers: JSON.parse(headersJson ?? '{}') });
let sentAt = 0;
let stopped = false;
const write = (o) => process.stdout.write(JSON.stringify(o) + '\n');
function next() {
  if (stopped) return;
  sentAt = Date.now();
  write({ event: 'sent', at: sentAt });
  ws.send(message(seq === 0), { binary: true });
}
ws.on('open', () => {
  write({ event: 'connected', instanceUid: uid.toString('hex') });
  next();
});
ws.on('message', () => {
  const ms = Date.now() - sentAt;
  write({ event: 'answer', ms });
  setTimeout(next, Math.max(0, interval - ms));
});
ws.on('close', (code, reason) => {
  write({ event: 'closed', code, reason: reason.toString() });
  process.exit(0);
});
ws.on('error', (err) => write({ event: 'error', error: String(err) }));
process.stdin.on('end', () => {
  stopped = true;
  ws.close();
  setTimeout(() => process.exit(0), 1000).unref();
});
process.stdin.resume();
