/**
 * OpampServer.configure on a running server: each live setting takes effect on the next
 * connection, frame or request, shown by the server's replies over a real socket.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { AgentConnection, AuthResult } from '../../../src/opamp/connection.js';
import type { OpampErrorCode } from '../../../src/opamp/errors.js';
import { pb, SERVER_CAPABILITIES, ServerErrorResponseType, type ServerToAgent } from '../../../src/opamp/messages.js';
import { OpampServer, PROTOBUF_CONTENT_TYPE, type OpampServerOptions } from '../../../src/opamp/server.js';

interface Rig {
  server: OpampServer;
  base: string;
  conns: AgentConnection[];
  errors: OpampErrorCode[];
}

const servers: OpampServer[] = [];
const clients: WebSocket[] = [];
afterEach(async () => {
  for (const ws of clients.splice(0)) ws.terminate();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start(opts: Partial<OpampServerOptions> = {}): Promise<Rig> {
  const conns: AgentConnection[] = [];
  const errors: OpampErrorCode[] = [];
  const server = new OpampServer({
    logger: pino({ level: 'silent' }),
    onProtocolError: (_t, code) => errors.push(code),
    handler: {
      handleMessage(conn, msg) {
        conns.push(conn);
        return { instanceUid: msg.instanceUid, capabilities: SERVER_CAPABILITIES };
      },
      connectionClosed() {},
    },
    ...opts,
  });
  servers.push(server);
  const { port } = await server.listen(0, '127.0.0.1');
  return { server, base: `127.0.0.1:${port}`, conns, errors };
}

/** An AgentToServer of at least `size` bytes (a padded description). */
function agentMessage(uid: Buffer, size = 0): Buffer {
  const pad = Math.max(0, size - 40);
  return Buffer.from(
    pb.AgentToServer.encode({
      instanceUid: uid,
      sequenceNum: 1,
      ...(pad > 0 ? { agentDescription: { identifyingAttributes: [{ key: 'pad', value: { stringValue: 'x'.repeat(pad) } }] } } : {}),
    }).finish(),
  );
}

async function post(url: string, body: Buffer, headers: Record<string, string> = {}): Promise<{ status: number; text: string; headers: Headers }> {
  const res = await fetch(url, { method: 'POST', body, headers: { 'Content-Type': PROTOBUF_CONTENT_TYPE, ...headers } });
  const text = res.headers.get('content-type') === PROTOBUF_CONTENT_TYPE ? (await res.arrayBuffer(), '') : await res.text();
  return { status: res.status, text, headers: res.headers };
}

/** A WebSocket peer that records replies and its close. */
class Peer {
  readonly replies: ServerToAgent[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  #waiters: (() => void)[] = [];
  constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      this.replies.push(pb.ServerToAgent.decode(data[0] === 0 ? data.subarray(1) : data));
      for (const w of this.#waiters.splice(0)) w();
    });
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }

  send(msg: Buffer): void {
    this.ws.send(Buffer.concat([Buffer.from([0]), msg]), { binary: true });
  }

  /** Waits until `n` replies have arrived. */
  async replied(n: number): Promise<void> {
    while (this.replies.length < n) await new Promise<void>((r) => this.#waiters.push(r));
  }
}

/** Opens a WebSocket; resolves its Peer, or rejects with the HTTP status of a refused upgrade. */
function connect(url: string, headers: Record<string, string> = {}): Promise<Peer> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, headers });
    clients.push(ws);
    const peer = new Peer(ws);
    ws.once('open', () => resolve(peer));
    ws.once('unexpected-response', (_req, res) => {
      reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode, headers: res.headers }));
      res.resume();
      ws.terminate();
    });
    ws.once('error', reject);
  });
}

async function refusedWith(p: Promise<unknown>): Promise<number> {
  try {
    await p;
  } catch (err) {
    return (err as { status?: number }).status ?? -1;
  }
  return 0;
}

describe('OpampServer.configure', () => {
  it('says whether anything changed, and refuses an invalid value without applying any', async () => {
    const { server, base } = await start({ maxMessageBytes: 1000 });
    expect(server.configure({})).toBe(false);
    expect(server.configure({ maxMessageBytes: 1000, transports: ['http', 'websocket'] })).toBe(false);
    expect(() => server.configure({ maxMessageBytes: 0, path: '/other' })).toThrow(TypeError);
    expect(() => server.configure({ maxConnections: -1 })).toThrow(/maxConnections/);
    // Still the old path and limit.
    expect((await post(`http://${base}/v1/opamp`, agentMessage(randomBytes(16), 900))).status).toBe(200);
    expect(server.configure({ maxMessageBytes: 2000 })).toBe(true);
  });

  it('a lowered maxMessageBytes refuses the next larger HTTP post with 413, and the next larger frame of an open WebSocket with 1009', async () => {
    const { server, base, errors } = await start();
    const uid = randomBytes(16);
    const big = agentMessage(uid, 3000);
    expect((await post(`http://${base}/v1/opamp`, big)).status).toBe(200);
    const peer = await connect(`ws://${base}/v1/opamp`);
    peer.send(big);
    await peer.replied(1);

    expect(server.configure({ maxMessageBytes: 2000 })).toBe(true);
    const refused = await post(`http://${base}/v1/opamp`, big);
    expect(refused.status).toBe(413);
    expect(refused.text).toBe('body exceeds 2000 bytes\n');
    expect((await post(`http://${base}/v1/opamp`, agentMessage(uid, 500))).status).toBe(200);

    peer.send(big);
    expect((await peer.closed).code).toBe(1009);
    // A new connection gets the new cap from ws itself.
    const fresh = await connect(`ws://${base}/v1/opamp`);
    fresh.send(big);
    expect((await fresh.closed).code).toBe(1009);
    expect(errors.filter((c) => c === 'FB_OPAMP_TOO_LARGE')).toHaveLength(3);
  });

  it('a new path serves the new path, 404s the old one, and offers agents the new URL', async () => {
    const { server, base, conns } = await start();
    const msg = agentMessage(randomBytes(16));
    expect(server.configure({ path: '/opamp/v2' })).toBe(true);
    expect((await post(`http://${base}/v1/opamp`, msg)).status).toBe(404);
    expect((await post(`http://${base}/opamp/v2`, msg)).status).toBe(200);
    expect(conns.at(-1)!.endpoint).toBe(`http://${base}/opamp/v2`);
    expect(await refusedWith(connect(`ws://${base}/v1/opamp`))).toBe(404);
    const peer = await connect(`ws://${base}/opamp/v2`);
    peer.send(msg);
    await peer.replied(1);
    expect(conns.at(-1)!.endpoint).toBe(`ws://${base}/opamp/v2`);
  });

  it('a transports change refuses the transport taken away, on its next upgrade or request', async () => {
    const { server, base } = await start();
    const msg = agentMessage(randomBytes(16));
    const open = await connect(`ws://${base}/v1/opamp`);
    expect(server.configure({ transports: ['http'] })).toBe(true);
    expect(await refusedWith(connect(`ws://${base}/v1/opamp`))).toBe(405);
    expect((await post(`http://${base}/v1/opamp`, msg)).status).toBe(200);
    // An open WebSocket is left to the caller.
    open.send(msg);
    await open.replied(1);

    expect(server.configure({ transports: ['websocket'] })).toBe(true);
    const refused = await post(`http://${base}/v1/opamp`, msg);
    expect(refused.status).toBe(405);
    expect(refused.text).toMatch(/HTTP transport is disabled/);
    await connect(`ws://${base}/v1/opamp`);
  });

  it('a swapped authenticate refuses what it refuses, for new upgrades and requests; undefined accepts everyone again', async () => {
    const { server, base } = await start();
    const msg = agentMessage(randomBytes(16));
    const authenticate = async (req: IncomingMessage): Promise<AuthResult> =>
      req.headers.authorization === 'Bearer good' ? { ok: true } : { ok: false, status: 401, reason: 'a valid bearer token is needed' };
    expect(server.configure({ authenticate })).toBe(true);
    expect(server.configure({ authenticate })).toBe(false);

    const refused = await post(`http://${base}/v1/opamp`, msg);
    expect(refused.status).toBe(401);
    expect(refused.headers.get('www-authenticate')).toBe('Bearer');
    expect(refused.text).toBe('a valid bearer token is needed\n');
    expect((await post(`http://${base}/v1/opamp`, msg, { Authorization: 'Bearer good' })).status).toBe(200);
    expect(await refusedWith(connect(`ws://${base}/v1/opamp`))).toBe(401);
    expect(await refusedWith(connect(`ws://${base}/v1/opamp`, { Authorization: 'Bearer bad' }))).toBe(401);
    await connect(`ws://${base}/v1/opamp`, { Authorization: 'Bearer good' });

    expect(server.configure({ authenticate: undefined })).toBe(true);
    expect((await post(`http://${base}/v1/opamp`, msg)).status).toBe(200);
    await connect(`ws://${base}/v1/opamp`);
  });

  it('a new message rate applies to the next message of an open WebSocket, from no limit too', async () => {
    const { server, base } = await start({ maxMessagesPerSecond: 0 });
    const peer = await connect(`ws://${base}/v1/opamp`);
    const msg = agentMessage(randomBytes(16));
    for (let i = 0; i < 30; i++) peer.send(msg);
    await peer.replied(30);
    expect(peer.replies.every((r) => r.errorResponse == null)).toBe(true);

    expect(server.configure({ maxMessagesPerSecond: 1 })).toBe(true);
    for (let i = 0; i < 20; i++) peer.send(msg);
    // Burst 2: the rest are refused, and ten refusals in a row close the connection.
    expect((await peer.closed).code).toBe(1008);
    const refused = peer.replies.slice(30).filter((r) => r.errorResponse?.type === ServerErrorResponseType.Unavailable);
    expect(refused.length).toBeGreaterThanOrEqual(10);
    expect(refused[0]!.errorResponse!.errorMessage).toBe('more than 1 messages per second on this connection');
  });

  it('a new byte rate applies to the next message of an open WebSocket', async () => {
    const { server, base } = await start();
    const peer = await connect(`ws://${base}/v1/opamp`);
    const msg = agentMessage(randomBytes(16), 400);
    peer.send(msg);
    await peer.replied(1);
    // Burst: one largest message (500 bytes).
    expect(server.configure({ maxBytesPerSecond: 10, maxMessageBytes: 500 })).toBe(true);
    peer.send(msg);
    peer.send(msg);
    await peer.replied(3);
    expect(peer.replies[1]!.errorResponse ?? null).toBeNull();
    expect(peer.replies[2]!.errorResponse?.errorMessage).toBe('more than 10 bytes per second on this connection');
  });

  it('lowered connection caps refuse the next upgrade: 503 past maxConnections, 429 past maxConnectionsPerSource', async () => {
    const { server, base } = await start();
    const peer = await connect(`ws://${base}/v1/opamp`);
    peer.send(agentMessage(randomBytes(16)));
    await peer.replied(1);
    expect(server.configure({ maxConnections: 1 })).toBe(true);
    expect(await refusedWith(connect(`ws://${base}/v1/opamp`))).toBe(503);
    expect(server.configure({ maxConnections: 10, maxConnectionsPerSource: 1 })).toBe(true);
    expect(await refusedWith(connect(`ws://${base}/v1/opamp`))).toBe(429);
    expect(server.configure({ maxConnectionsPerSource: 0 })).toBe(true);
    await connect(`ws://${base}/v1/opamp`);
  });

  it('a shorter firstMessageTimeoutMs closes a connection already waiting, counted from its accept', async () => {
    const { server, base } = await start({ firstMessageTimeoutMs: 600_000 });
    const silent = await connect(`ws://${base}/v1/opamp`);
    expect(server.pendingConnectionCount).toBe(1);
    expect(server.configure({ firstMessageTimeoutMs: 100 })).toBe(true);
    expect(await silent.closed).toEqual({ code: 1008, reason: 'no OpAMP message within 0.1 s' });
    expect(server.pendingConnectionCount).toBe(0);
  });

  it('a lowered maxPendingConnectionsPerSource evicts the oldest silent connections for the next one', async () => {
    const { server, base } = await start({ firstMessageTimeoutMs: 600_000 });
    const first = await connect(`ws://${base}/v1/opamp`);
    const second = await connect(`ws://${base}/v1/opamp`);
    expect(server.configure({ maxPendingConnectionsPerSource: 1 })).toBe(true);
    const third = await connect(`ws://${base}/v1/opamp`);
    expect((await first.closed).code).toBe(1008);
    expect((await second.closed).code).toBe(1008);
    expect(server.pendingConnectionCount).toBe(1);
    // The newcomer is tracked: the next one evicts it in turn.
    await connect(`ws://${base}/v1/opamp`);
    expect((await third.closed).code).toBe(1008);
    expect(server.pendingConnectionCount).toBe(1);
  });
});
