/**
 * The OpAMP server's own guards, on an OpampServer with a recording handler (no fleet): the Host
 * header is validated before anything is built from it; connections that never speak are closed at
 * a deadline and counted apart from agents; raw sockets that never finish a request are cut by the
 * HTTP timeouts; and nothing a connection's callbacks do can throw into a shared loop.
 * The whole bridge under the same attacks, with a bystander agent: abuse-server.test.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { OpampServer, parseHostHeader, type OpampServerOptions } from '../../src/opamp/server.js';
import type { AgentConnection } from '../../src/opamp/connection.js';
import type { OpampErrorCode } from '../../src/opamp/errors.js';
import { SERVER_CAPABILITIES, type AgentToServer, type ServerToAgentProps } from '../../src/opamp/messages.js';
import { packageDownloadUrl } from '../../src/fleet/packages.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { encodeAgent, randomUid } from '../harness/raw-agent.js';
import { postRequest, rawExchange as rawExchangeOn, upgradeRequest } from '../harness/raw-socket.js';
import { issue, opensslMissingReason, selfSignedCa, writeOpensslConfig } from '../harness/tls.js';

interface Rig {
  server: OpampServer;
  port: number;
  host: string;
  url: string;
  conns: AgentConnection[];
  closed: AgentConnection[];
  errors: { transport: string; code: OpampErrorCode }[];
  logs: Record<string, unknown>[];
}

const rigs: OpampServer[] = [];
const sockets: { destroy(): void }[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(rigs.splice(0).map((s) => s.close()));
});

async function startRig(opts: Partial<OpampServerOptions> & { listenHost?: string; handle?: (conn: AgentConnection, msg: AgentToServer) => ServerToAgentProps; onClosed?: (conn: AgentConnection) => void } = {}): Promise<Rig> {
  const conns: AgentConnection[] = [];
  const closed: AgentConnection[] = [];
  const errors: Rig['errors'] = [];
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const line of chunk.toString().split('\n')) if (line.trim()) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const { listenHost, handle, onClosed, ...rest } = opts;
  const server = new OpampServer({
    logger: createLogger({ level: 'debug', destination: sink }),
    onProtocolError: (transport, code) => errors.push({ transport, code }),
    handler: {
      handleMessage(conn, msg) {
        if (!conns.includes(conn)) conns.push(conn);
        if (handle) return handle(conn, msg);
        return { instanceUid: msg.instanceUid, capabilities: SERVER_CAPABILITIES };
      },
      connectionClosed(conn) {
        closed.push(conn);
        onClosed?.(conn);
      },
    },
    ...rest,
  });
  rigs.push(server);
  const a = await server.listen(0, listenHost ?? '127.0.0.1');
  const shown = a.host.includes(':') ? `[${a.host}]` : a.host;
  return { server, port: a.port, host: a.host, url: `ws://${shown}:${a.port}/v1/opamp`, conns, closed, errors, logs };
}

/** A WebSocket client; resolves when open, rejects with the HTTP status of a refused upgrade. */
function openWs(url: string, opts: { localAddress?: string; headers?: Record<string, string> } = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, ...opts });
    sockets.push({ destroy: () => ws.terminate() });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

function closeOf(ws: WebSocket, timeoutMs = 10_000): Promise<{ code: number; reason: string; at: number }> {
  return new Promise((resolve, reject) => {
    if (ws.readyState === ws.CLOSED) return reject(new Error('already closed'));
    const t = setTimeout(() => reject(new Error('no close within timeout')), timeoutMs);
    ws.once('close', (code, reason) => {
      clearTimeout(t);
      resolve({ code, reason: reason.toString(), at: Date.now() });
    });
  });
}

function firstMessage(ws: WebSocket, timeoutMs = 5_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no message within timeout')), timeoutMs);
    ws.once('message', (d: Buffer) => {
      clearTimeout(t);
      resolve(d);
    });
    ws.once('close', (code) => reject(new Error(`closed ${code}`)));
  });
}

const agentFrame = (fields: Record<string, unknown> = {}) => Buffer.concat([Buffer.from([0]), encodeAgent({ instanceUid: randomUid(), capabilities: 1, ...fields })]);

const rawExchange = (port: number, host: string, text: string, opts: { localAddress?: string; timeoutMs?: number } = {}) => rawExchangeOn(port, host, text, { ...opts, track: (s) => sockets.push(s) });

const BAD_HOSTS = ['a b', 'a/b', '[::1', '::1', '[::1]x', '[::1]:', 'a:', 'a:65536', 'a:1:2', 'a:-1', 'h'.repeat(300), 'a@b', 'a%20b', 'a?b', 'a#b', 'a\\b', '1.2.3.4.5', '999.1.1.1', '[fe80::1%25eth0]', '[v1.x]', '[1::2::3]', 'a\tb', 'exa mple.com:4320'];
const GOOD_HOSTS = ['example.com', 'example.com:4320', 'EXAMPLE.com.', '127.0.0.1', '127.0.0.1:1', '[::1]', '[::1]:4320', '[2001:db8::1]:443', '[::ffff:127.0.0.1]:80', 'a_b~c.d-e', 'h'.repeat(253), 'fleetbridge.observability.svc:4320'];

describe('Host header validation', () => {
  it('accepts host[:port] of RFC 3986 unreserved names, IPv4, and IPv6 in brackets; nothing else', () => {
    for (const h of GOOD_HOSTS) {
      const p = parseHostHeader(h);
      expect(p, h).not.toBeNull();
      // Whatever is accepted makes URLs that parse, and download URLs built from them too.
      const endpoint = `ws://${p!.hostname}${p!.port !== undefined ? `:${p!.port}` : ''}/v1/opamp`;
      expect(() => new URL(endpoint), h).not.toThrow();
      expect(() => packageDownloadUrl(endpoint, 'default', 'a'.repeat(64)), h).not.toThrow();
    }
    for (const h of BAD_HOSTS) expect(parseHostHeader(h), JSON.stringify(h)).toBeNull();
    expect(parseHostHeader('[::1]:4320')).toEqual({ hostname: '[::1]', port: '4320' });
    expect(parseHostHeader('example.com')).toEqual({ hostname: 'example.com', port: undefined });
  });

  it('refuses an upgrade and a POST with a bad Host with 400, counted, before the handler sees anything', async () => {
    const rig = await startRig();
    const body = encodeAgent({ instanceUid: randomUid(), capabilities: 0x1ff });
    for (const h of BAD_HOSTS) {
      for (const req of [upgradeRequest(h), postRequest(h, body)]) {
        const r = await rawExchange(rig.port, '127.0.0.1', req);
        expect(r.data.split('\r\n')[0], `${JSON.stringify(h)} ${req.slice(0, 4)}`).toBe('HTTP/1.1 400 Bad Request');
      }
    }
    expect(rig.conns).toHaveLength(0);
    expect(rig.errors.filter((e) => e.code === 'FB_OPAMP_BAD_HOST' && e.transport === 'websocket')).toHaveLength(BAD_HOSTS.length);
    expect(rig.errors.filter((e) => e.code === 'FB_OPAMP_BAD_HOST' && e.transport === 'http')).toHaveLength(BAD_HOSTS.length);
    // Logged, but at most 10 lines per code and transport in 10 s.
    const lines = rig.logs.filter((l) => l['code'] === 'FB_OPAMP_BAD_HOST');
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.length).toBeLessThanOrEqual(20);
  });

  it('refuses Host headers that break the request line (CR, LF, folding) and a repeated Host with 400', async () => {
    const rig = await startRig();
    const body = encodeAgent({ instanceUid: randomUid(), capabilities: 1 });
    const broken = [upgradeRequest('a\r\n b'), upgradeRequest('a\rb'), postRequest('a\r\n b', body), postRequest('x\r\nHost: y', body), upgradeRequest('x\r\nHost: y'), 'POST /v1/opamp HTTP/1.1\r\nContent-Length: 0\r\n\r\n'];
    for (const req of broken) {
      const r = await rawExchange(rig.port, '127.0.0.1', req);
      expect(r.data.split('\r\n')[0], JSON.stringify(req.slice(0, 40))).toBe('HTTP/1.1 400 Bad Request');
    }
    expect(rig.conns).toHaveLength(0);
  });

  it('builds endpoints from validated parts: an IPv6 Host in brackets, and our own IPv6 address (in brackets) for an HTTP/1.0 request without Host', async () => {
    const rig = await startRig({ listenHost: '::1' });
    const ws = await openWs(rig.url, { headers: { Host: `[::1]:${rig.port}` } });
    ws.send(agentFrame());
    await firstMessage(ws);
    expect(rig.conns[0]!.endpoint).toBe(`ws://[::1]:${rig.port}/v1/opamp`);
    expect(packageDownloadUrl(rig.conns[0]!.endpoint, 'default', 'a'.repeat(64))).toBe(`http://[::1]:${rig.port}/v1/packages/default/${'a'.repeat(64)}`);

    const body = encodeAgent({ instanceUid: randomUid(), capabilities: 1 });
    const r = await rawExchange(rig.port, '::1', `POST /v1/opamp HTTP/1.0\r\nContent-Type: application/x-protobuf\r\nContent-Length: ${body.length}\r\n\r\n${body.toString('latin1')}`);
    expect(r.statusLine).toMatch(/^HTTP\/1\.[01] 200 OK$/);
    expect(rig.conns[1]!.endpoint).toBe(`http://[::1]:${rig.port}/v1/opamp`);
    expect(() => new URL(rig.conns[1]!.endpoint)).not.toThrow();
    expect(rig.conns[1]!.remoteAddress).toBe('::1');
  });
});

describe('connections that never speak', () => {
  it('closes a WebSocket that sends no valid first message at the deadline with 1008; an agent that spoke stays', async () => {
    const rig = await startRig({ firstMessageTimeoutMs: 400 });
    const t0 = Date.now();
    const silent = await openWs(rig.url);
    const noUid = await openWs(rig.url);
    const agent = await openWs(rig.url);
    const silentClose = closeOf(silent);
    const noUidClose = closeOf(noUid);
    let agentClosed = false;
    agent.once('close', () => (agentClosed = true));
    noUid.send(Buffer.concat([Buffer.from([0]), encodeAgent({ capabilities: 1 })])); // no instance_uid: not an agent yet
    agent.send(agentFrame());
    await firstMessage(agent);
    const [a, b] = await Promise.all([silentClose, noUidClose]);
    for (const c of [a, b]) {
      expect(c.code).toBe(1008);
      expect(c.reason).toBe('no OpAMP message within 0.4 s');
      expect(c.at - t0).toBeGreaterThanOrEqual(350);
      expect(c.at - t0).toBeLessThan(3000);
    }
    // Both deadlines have passed (they were set before the agent's): the agent is still served.
    expect(agentClosed).toBe(false);
    agent.send(agentFrame());
    await firstMessage(agent);
    expect(rig.errors.filter((e) => e.code === 'FB_OPAMP_IDLE_CONNECTION')).toHaveLength(2);
    expect(rig.server.pendingConnectionCount).toBe(0);
    expect(rig.server.connectionCount).toBe(1);
  });

  it('counts only identified agents per source; the oldest silent connection of an address makes room for a new one', async () => {
    const rig = await startRig({ maxConnectionsPerSource: 2, maxPendingConnectionsPerSource: 3, firstMessageTimeoutMs: 60_000 });
    const from = { localAddress: '127.0.0.1' };
    const idle = [await openWs(rig.url, from), await openWs(rig.url, from), await openWs(rig.url, from)];
    const firstIdleClose = closeOf(idle[0]!);
    // Three silent connections do not fill the address's two agent slots.
    const a1 = await openWs(rig.url, from);
    // ...and the fourth pending connection evicted the oldest silent one.
    expect(await firstIdleClose).toMatchObject({ code: 1008, reason: 'too many connections without an OpAMP message from this address' });
    a1.send(agentFrame());
    await firstMessage(a1);
    const a2 = await openWs(rig.url, from);
    a2.send(agentFrame());
    await firstMessage(a2);
    // The address holds two agents: a new upgrade is refused...
    await expect(openWs(rig.url, from)).rejects.toThrow(/HTTP 429/);
    // ...and a connection that was open before and now speaks is closed with 1013.
    const late = idle[1]!;
    const lateClose = closeOf(late);
    late.send(agentFrame());
    expect(await lateClose).toMatchObject({ code: 1013, reason: 'connection limit per source address reached' });
    // Another address is not affected.
    const other = await openWs(rig.url, { localAddress: '127.0.0.2' });
    other.send(agentFrame());
    await firstMessage(other);
    expect(rig.errors.filter((e) => e.code === 'FB_OPAMP_IDLE_CONNECTION')).toHaveLength(1);
    expect(rig.errors.filter((e) => e.code === 'FB_OPAMP_OVERLOADED')).toHaveLength(2);
    expect(rig.server.pendingConnectionCount).toBe(1); // idle[2]
    // One agent leaves: its address may connect an agent again.
    const a1Closed = closeOf(a1);
    a1.close();
    await a1Closed;
    // The server sees the close after the client: retry the upgrade on the server's count, bounded.
    let a3: WebSocket | undefined;
    for (let i = 0; i < 50 && !a3; i++) a3 = await openWs(rig.url, from).catch(() => new Promise<undefined>((r) => setTimeout(() => r(undefined), 20)));
    expect(a3).toBeDefined();
  });

  it('enforces the global connection cap on all WebSocket connections with 503 + Retry-After', async () => {
    const rig = await startRig({ maxConnections: 2 });
    await openWs(rig.url);
    await openWs(rig.url, { localAddress: '127.0.0.2' });
    const r = await rawExchange(rig.port, '127.0.0.1', upgradeRequest(`127.0.0.1:${rig.port}`), { localAddress: '127.0.0.3' });
    expect(r.data).toMatch(/^HTTP\/1\.1 503 Service Unavailable\r\n/);
    expect(r.data).toMatch(/\r\nRetry-After: 30\r\n/);
  });

  it('cuts TCP connections that send half a request line, a half request head, or nothing, with 408 after headersTimeoutMs', async () => {
    const rig = await startRig({ headersTimeoutMs: 500 });
    const attempts = ['GET /v1/op', 'GET /v1/opamp HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n', 'POST /v1/opamp HTTP/1.1\r\nHost: x\r\n', ''];
    const results = await Promise.all(attempts.map((t, i) => rawExchange(rig.port, '127.0.0.1', t, { localAddress: `127.0.0.${10 + i}`, timeoutMs: 5000 })));
    for (const r of results) {
      expect(r.data).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
      expect(r.closedAfterMs).toBeGreaterThanOrEqual(450);
      expect(r.closedAfterMs).toBeLessThan(3000);
    }
    expect(rig.errors.filter((e) => e.code === 'FB_OPAMP_REQUEST_TIMEOUT').length).toBe(attempts.length);
  });

  it('cuts a TLS connection that never completes its handshake after headersTimeoutMs', async (ctx) => {
    if (opensslMissingReason()) ctx.skip();
    const dir = await mkdtemp(join(tmpdir(), 'fleetbridge-guards-pki-'));
    try {
      await writeOpensslConfig(dir);
      await selfSignedCa(dir, 'ca', '/CN=guards-ca');
      const server = await issue(dir, 'server', '/CN=localhost', 'v3_srv', 'ca');
      const rig = await startRig({ headersTimeoutMs: 500, tls: { cert: server.cert, key: server.key } });
      // Nothing at all, and half a ClientHello (a TLS record header announcing more than is sent).
      const results = await Promise.all(['', '\x16\x03\x01\x02\x00\x01'].map((t) => rawExchange(rig.port, '127.0.0.1', t, { timeoutMs: 5000 })));
      for (const r of results) {
        expect(r.closedAfterMs).toBeGreaterThanOrEqual(450);
        expect(r.closedAfterMs).toBeLessThan(3000);
      }
      expect(rig.errors.filter((e) => e.code === 'FB_OPAMP_REQUEST_TIMEOUT')).toHaveLength(2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses nonsensical limits at construction', () => {
    const base = { handler: { handleMessage: () => ({}), connectionClosed: () => {} }, logger: createLogger({ level: 'silent' }) };
    expect(() => new OpampServer({ ...base, firstMessageTimeoutMs: -1 })).toThrow(/firstMessageTimeoutMs/);
    expect(() => new OpampServer({ ...base, maxConnections: Number.NaN })).toThrow(/maxConnections/);
    expect(() => new OpampServer({ ...base, headersTimeoutMs: 0 })).toThrow(/headersTimeoutMs/);
  });
});

describe('per-connection callbacks never throw into shared loops', () => {
  it('send with an unencodable message, close with a code ws refuses or an over-long reason, a throwing connectionClosed: each costs its own connection only', async () => {
    let throwOnClose = true;
    const rig = await startRig({
      onClosed: () => {
        if (throwOnClose) throw new Error('bug in connectionClosed');
      },
    });
    const open = async () => {
      const ws = await openWs(rig.url);
      ws.send(agentFrame());
      await firstMessage(ws);
      return { ws, conn: rig.conns[rig.conns.length - 1]! };
    };
    const bystander = await open();
    const a = await open();
    const b = await open();
    const c = await open();
    const [ca, cb, cc] = [closeOf(a.ws), closeOf(b.ws), closeOf(c.ws)];
    // A fan-out loop over every connection: none of these may throw out of it.
    expect(() => {
      a.conn.send!({ instanceUid: new Uint8Array(16) }, {} as Uint8Array);
      b.conn.close!(1005, 'a code that must not be sent');
      c.conn.close!(1000, 'é'.repeat(200));
    }).not.toThrow();
    expect((await ca).code).toBe(1011);
    expect((await cb).code).toBe(1006); // terminated: 1005 cannot be sent
    const closedC = await cc;
    expect(closedC.code).toBe(1000);
    expect(Buffer.byteLength(closedC.reason)).toBeLessThanOrEqual(123);
    // connectionClosed threw three times; the server goes on.
    throwOnClose = false;
    bystander.ws.send(agentFrame());
    await firstMessage(bystander.ws);
    expect(rig.closed.length).toBeGreaterThanOrEqual(3);
    expect(rig.logs.some((l) => l['msg'] === 'Unexpected error forgetting a closed connection')).toBe(true);
  });

  it('a handler that throws for one agent closes that connection with 1011; the next agent is served', async () => {
    const rig = await startRig({
      handle: (_conn, msg) => {
        if (Number(msg.sequenceNum) === 7) throw new Error('bug');
        return { instanceUid: msg.instanceUid, capabilities: SERVER_CAPABILITIES };
      },
    });
    const bad = await openWs(rig.url);
    const good = await openWs(rig.url);
    const badClose = closeOf(bad);
    bad.send(agentFrame({ sequenceNum: 7 }));
    expect((await badClose).code).toBe(1011);
    good.send(agentFrame({ sequenceNum: 1 }));
    await firstMessage(good);
    // Over HTTP: a 500 for that request only.
    const res = await fetch(`http://127.0.0.1:${rig.port}/v1/opamp`, { method: 'POST', headers: { 'Content-Type': 'application/x-protobuf' }, body: encodeAgent({ instanceUid: randomUid(), sequenceNum: 7 }) });
    expect(res.status).toBe(500);
    const ok = await fetch(`http://127.0.0.1:${rig.port}/v1/opamp`, { method: 'POST', headers: { 'Content-Type': 'application/x-protobuf' }, body: encodeAgent({ instanceUid: randomUid(), sequenceNum: 1 }) });
    expect(ok.status).toBe(200);
  });
});
