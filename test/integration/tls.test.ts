/**
 * TLS on the OpAMP endpoint (wss://, https://) and the admin endpoint, certificate reload without
 * dropping agents, and mTLS client authentication refused with HTTP status codes.
 *
 * Each test builds an OpampServer (or AdminServer) over a Fleet directly, with certificates from
 * test/harness/tls.ts. Clients are real: the opamp-go test agent with --ca-file/--cert-file, and
 * Node's ws/https/tls where a test needs the raw status or the peer certificate.
 */
import { X509Certificate, randomUUID } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { connect as tlsConnect } from 'node:tls';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { WebSocket } from 'ws';
import { AdminServer } from '../../src/api/server.js';
import { Fleet } from '../../src/fleet/fleet.js';
import type { AuthResult } from '../../src/opamp/connection.js';
import { AgentCapabilities as C, pb, type ServerToAgent } from '../../src/opamp/messages.js';
import { mtlsAuth } from '../../src/opamp/mtls-auth.js';
import { OpampServer } from '../../src/opamp/server.js';
import type { TlsMaterial } from '../../src/opamp/tls.js';
import { uidToString } from '../../src/opamp/uid.js';
import { DesiredState, type CollectorInput } from '../../src/render/index.js';
import { createMetrics } from '../../src/telemetry/metrics.js';
import { buildGoAgent, goMissingReason, startGoAgent, type GoAgent, type GoAgentOptions } from '../harness/go-agent.js';
import { encodeAgent, randomUid } from '../harness/raw-agent.js';
import { makeTestPki, opensslMissingReason, type CertPair, type TestPki } from '../harness/tls.js';
import { skipUnlessOnCi } from '../harness/tools.js';

const skip = skipUnlessOnCi('tls.test', opensslMissingReason());
const skipGo = skip || skipUnlessOnCi('tls.test (opamp-go agent)', goMissingReason());

const CAPS = C.ReportsStatus | C.AcceptsRemoteConfig | C.ReportsRemoteConfig | C.AcceptsOpAMPConnectionSettings;
const EVENT = { timeoutMs: 15_000 };

let pki: TestPki;
const cleanups: (() => Promise<void>)[] = [];
const agents: GoAgent[] = [];

beforeAll(async () => {
  if (!skip) pki = await makeTestPki();
}, 60_000);
afterEach(async (ctx) => {
  if (ctx.task.result?.state === 'fail') for (const a of agents) console.error(`opamp-go agent ${a.instanceUid}:\n${a.describe()}`);
  await Promise.all(agents.splice(0).map((a) => a.stop()));
  await Promise.all(cleanups.splice(0).map((f) => f()));
});
afterAll(async () => {
  await pki?.remove();
});

function collector(name: string, role: string, verbosity = 'basic'): CollectorInput {
  const config = { receivers: { otlp: { protocols: { grpc: {} } } }, exporters: { debug: { verbosity } }, service: { pipelines: { traces: { receivers: ['otlp'], exporters: ['debug'] } } } };
  return { namespace: 'default', name, generation: 1, revision: `${name}-${verbosity}`, priority: 0, selector: { matchLabels: { role } }, config };
}

interface Bridge {
  server: OpampServer;
  fleet: Fleet;
  port: number;
  wss: string;
  https: string;
}

/** An OpAMP server over a Fleet on 127.0.0.1, closed after the test (or by whoever holds `owner`). */
async function startBridge(
  tls: TlsMaterial,
  authenticate?: (req: IncomingMessage) => Promise<AuthResult>,
  collectors: CollectorInput[] = [],
  owner = cleanups,
): Promise<Bridge> {
  const logger = pino({ level: 'silent' });
  // Not the OpAMP default (30 s): the bridge offers connection settings only when they change
  // something the agent runs, and these tests look at the endpoint it offers back.
  const fleet = new Fleet({ logger, metrics: createMetrics({ defaultMetrics: false }), heartbeatIntervalSeconds: 20 });
  fleet.setDesiredState(new DesiredState(collectors));
  const server = new OpampServer({ handler: fleet, logger, tls, ...(authenticate ? { authenticate } : {}) });
  const { port } = await server.listen(0);
  owner.push(() => server.close());
  return { server, fleet, port, wss: `wss://127.0.0.1:${port}/v1/opamp`, https: `https://127.0.0.1:${port}/v1/opamp` };
}

interface ClientTls {
  ca?: string;
  cert?: string;
  key?: string;
}
const withCert = (ca: string, c?: CertPair): ClientTls => (c ? { ca, cert: c.cert, key: c.key } : { ca });

/** The certificate a new TLS connection to `port` is served (fingerprint and serial). */
function servedCert(port: number, ca: string): Promise<{ fingerprint256: string; serialNumber: string }> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => {
      const c = s.getPeerCertificate();
      s.end();
      resolve({ fingerprint256: c.fingerprint256, serialNumber: c.serialNumber.toUpperCase() });
    });
    s.once('error', reject);
  });
}
const certId = (pem: string) => {
  const x = new X509Certificate(pem);
  return { fingerprint256: x.fingerprint256, serialNumber: x.serialNumber.toUpperCase() };
};

const hello = (uid: Buffer, seq = 0) =>
  Buffer.concat([
    Buffer.from([0]),
    encodeAgent({ instanceUid: uid, sequenceNum: seq, capabilities: CAPS, agentDescription: { identifyingAttributes: [{ key: 'service.name', value: { stringValue: 'node-tls' } }] } }),
  ]);

/** Opens a WebSocket; resolves with it, or with the HTTP status of a refused upgrade. */
function wsOpen(url: string, t: ClientTls): Promise<{ ws: WebSocket } | { status: number }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, ...t });
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode ?? 0 });
      res.resume();
      ws.terminate();
    });
    ws.once('error', reject);
  });
}

function wsExchange(ws: WebSocket, frame: Buffer): Promise<ServerToAgent> {
  return new Promise((resolve, reject) => {
    ws.once('message', (data: Buffer) => resolve(pb.ServerToAgent.decode(data[0] === 0 ? data.subarray(1) : data)));
    ws.once('close', (code) => reject(new Error(`closed with ${code}`)));
    ws.send(frame, { binary: true });
  });
}

/** One OpAMP POST over HTTPS (a fresh connection each time). */
function httpsPost(url: string, t: ClientTls, body: Buffer): Promise<{ status: number; text: string; reply: ServerToAgent | null }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method: 'POST', agent: false, ...t, headers: { 'Content-Type': 'application/x-protobuf', 'Content-Length': body.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        const ok = res.statusCode === 200;
        resolve({ status: res.statusCode ?? 0, text: ok ? '' : raw.toString(), reply: ok ? pb.ServerToAgent.decode(raw) : null });
      });
    });
    req.once('error', reject);
    req.end(body);
  });
}

/**
 * One agent message over a transport: the HTTP status (101 for an accepted upgrade), the reply
 * when accepted, and the refusal text (HTTP only: an upgrade refusal has no body).
 */
async function attempt(b: Bridge, transport: 'websocket' | 'http', t: ClientTls): Promise<{ status: number; uid: string; reply: ServerToAgent | null; text: string }> {
  const uid = randomUid();
  if (transport === 'http') return { uid: uidToString(uid), ...(await httpsPost(b.https, t, hello(uid).subarray(1))) };
  const r = await wsOpen(b.wss, t);
  if ('status' in r) return { status: r.status, uid: uidToString(uid), reply: null, text: '' };
  const reply = await wsExchange(r.ws, hello(uid));
  r.ws.close();
  return { status: 101, uid: uidToString(uid), reply, text: '' };
}

describe.skipIf(skip)('TLS on the OpAMP endpoint (Node clients)', () => {
  it('serves wss:// and https://, offers the TLS endpoint back, and refuses plain ws:// and http:// on the TLS port', async () => {
    const b = await startBridge({ cert: pki.server.cert, key: pki.server.key });
    expect(await servedCert(b.port, pki.ca.cert)).toEqual(certId(pki.server.cert));

    const ws = await attempt(b, 'websocket', { ca: pki.ca.cert });
    expect(ws.status).toBe(101);
    expect(uidToString(ws.reply!.instanceUid!)).toBe(ws.uid);
    expect(ws.reply!.connectionSettings?.opamp?.destinationEndpoint).toBe(b.wss);

    const post = await attempt(b, 'http', { ca: pki.ca.cert });
    expect(post.status).toBe(200);
    expect(uidToString(post.reply!.instanceUid!)).toBe(post.uid);
    expect(post.reply!.connectionSettings?.opamp?.destinationEndpoint).toBe(b.https);
    expect(b.fleet.viewOf(ws.uid)).toMatchObject({ transport: 'websocket' });
    expect(b.fleet.viewOf(post.uid)).toMatchObject({ transport: 'http' });

    // Plain text on the TLS port fails the handshake: no upgrade, no answer.
    await expect(wsOpen(`ws://127.0.0.1:${b.port}/v1/opamp`, {})).rejects.toThrow(/socket hang up|ECONNRESET/);
    await expect(fetch(`http://127.0.0.1:${b.port}/v1/opamp`, { method: 'POST', body: hello(randomUid()).subarray(1) })).rejects.toThrow();
    // A client that does not trust our CA refuses the server.
    await expect(wsOpen(b.wss, {})).rejects.toThrow(/unable to verify|self.signed|certificate/i);
    // And the endpoint still serves.
    expect((await attempt(b, 'websocket', { ca: pki.ca.cert })).status).toBe(101);
  });

  it('setTls refuses unusable material and keeps serving the current certificate', async () => {
    const b = await startBridge({ cert: pki.server.cert, key: pki.server.key });
    expect(() => b.server.setTls({ cert: 'not a certificate', key: pki.server.key })).toThrow(/invalid TLS material/);
    // A key of another certificate.
    expect(() => b.server.setTls({ cert: pki.server2.cert, key: pki.server.key })).toThrow(/invalid TLS material.*key values mismatch/);
    expect(() => b.server.setTls({ cert: pki.server2.cert, key: pki.server2.key, clientCa: pki.ca.cert })).toThrow(/without a client CA.*restart/);
    expect(await servedCert(b.port, pki.ca.cert)).toEqual(certId(pki.server.cert));
    expect((await attempt(b, 'http', { ca: pki.ca.cert })).status).toBe(200);

    const logger = pino({ level: 'silent' });
    const plain = new OpampServer({ handler: new Fleet({ logger, metrics: createMetrics({ defaultMetrics: false }) }), logger });
    expect(() => plain.setTls({ cert: pki.server.cert, key: pki.server.key })).toThrow(/started without TLS.*restart/);
  });

  it('reloads the certificate for new connections while an open WebSocket keeps being served', async () => {
    const b = await startBridge({ cert: pki.server.cert, key: pki.server.key });
    const open = await wsOpen(b.wss, { ca: pki.ca.cert });
    if (!('ws' in open)) throw new Error(`upgrade refused with ${open.status}`);
    const uid = randomUid();
    await wsExchange(open.ws, hello(uid, 0));

    b.server.setTls({ cert: pki.server2.cert, key: pki.server2.key });
    const now = await servedCert(b.port, pki.ca.cert);
    expect(now).toEqual(certId(pki.server2.cert));
    expect(now.fingerprint256).not.toBe(certId(pki.server.cert).fingerprint256);

    // The connection opened before the reload is the same socket, still answered.
    expect(open.ws.readyState).toBe(WebSocket.OPEN);
    const again = await wsExchange(open.ws, hello(uid, 1));
    expect(uidToString(again.instanceUid!)).toBe(uidToString(uid));
    expect(b.server.connectionCount).toBe(1);
    open.ws.close();
  });
});

describe.skipIf(skip)('mTLS client authentication', () => {
  const identities = {
    spiffe: { method: 'mtls', username: 'spiffe://cluster.local/ns/team-a/sa/collector', namespace: 'team-a', serviceAccount: 'collector' },
    serviceAccountCn: { method: 'mtls', username: 'system:serviceaccount:team-b:otel', namespace: 'team-b', serviceAccount: 'otel' },
    plain: { method: 'mtls', username: 'plain-name' },
  };
  let k8s: Bridge;
  let standalone: Bridge;
  const shared: (() => Promise<void>)[] = [];
  beforeAll(async () => {
    const tls = { cert: pki.server.cert, key: pki.server.key, clientCa: pki.ca.cert };
    k8s = await startBridge(tls, mtlsAuth({ requireNamespace: true }), [], shared);
    standalone = await startBridge(tls, mtlsAuth({ requireNamespace: false }), [], shared);
  });
  afterAll(async () => {
    await Promise.all(shared.map((f) => f()));
  });

  it('reloads the client CA: certificates of the new CA are accepted, those of the old one refused', async () => {
    const b = await startBridge({ cert: pki.server.cert, key: pki.server.key, clientCa: pki.ca.cert }, mtlsAuth({ requireNamespace: true }));
    expect((await attempt(b, 'http', withCert(pki.ca.cert, pki.clients.otherCa))).status).toBe(401);
    b.server.setTls({ cert: pki.server.cert, key: pki.server.key, clientCa: pki.otherCa.cert });
    const now = await attempt(b, 'http', withCert(pki.ca.cert, pki.clients.otherCa));
    expect(now.status).toBe(200);
    expect(b.fleet.viewOf(now.uid)?.verified).toMatchObject({ namespace: 'team-a', serviceAccount: 'collector' });
    expect((await attempt(b, 'websocket', withCert(pki.ca.cert, pki.clients.spiffe))).status).toBe(401);
    expect(() => b.server.setTls({ cert: pki.server.cert, key: pki.server.key })).toThrow(/with a client CA.*restart/);
  });

  describe.each(['websocket', 'http'] as const)('on the %s transport', (transport) => {
    const ok = transport === 'websocket' ? 101 : 200;

    it('accepts a SPIFFE ID and a service-account CN, with the namespace and ServiceAccount they name', async () => {
      const a = await attempt(k8s, transport, withCert(pki.ca.cert, pki.clients.spiffe));
      expect(a.status).toBe(ok);
      expect(uidToString(a.reply!.instanceUid!)).toBe(a.uid);
      expect(k8s.fleet.viewOf(a.uid)?.verified).toEqual(identities.spiffe);

      const b = await attempt(k8s, transport, withCert(pki.ca.cert, pki.clients.serviceAccountCn));
      expect(b.status).toBe(ok);
      expect(k8s.fleet.viewOf(b.uid)?.verified).toEqual(identities.serviceAccountCn);
    });

    it('refuses a certificate naming no namespace with 403 when one is required, and accepts it otherwise', async () => {
      const refused = await attempt(k8s, transport, withCert(pki.ca.cert, pki.clients.plain));
      expect(refused.status).toBe(403);
      expect(k8s.fleet.viewOf(refused.uid)).toBeUndefined();
      if (transport === 'http') expect(refused.text).toMatch(/names no namespace\/ServiceAccount.*plain-name/);

      const accepted = await attempt(standalone, transport, withCert(pki.ca.cert, pki.clients.plain));
      expect(accepted.status).toBe(ok);
      expect(standalone.fleet.viewOf(accepted.uid)?.verified).toEqual(identities.plain);
    });

    it('refuses a certificate of another CA, and no certificate, with 401 after a completed handshake', async () => {
      const other = await attempt(standalone, transport, withCert(pki.ca.cert, pki.clients.otherCa));
      expect(other.status).toBe(401);
      expect(standalone.fleet.viewOf(other.uid)).toBeUndefined();
      if (transport === 'http') expect(other.text).toMatch(/client certificate is not accepted: UNABLE_TO_VERIFY_LEAF_SIGNATURE|unable to verify/i);

      const none = await attempt(standalone, transport, withCert(pki.ca.cert));
      expect(none.status).toBe(401);
      if (transport === 'http') expect(none.text).toBe('a client certificate is required\n');
    });
  });
});

describe.skipIf(skipGo)('opamp-go agent over wss://', () => {
  let binary: string;
  beforeAll(async () => {
    const built = await buildGoAgent();
    if (!built) throw new Error(goMissingReason() ?? 'go agent was not built');
    binary = built;
  }, 240_000);

  async function startAgent(endpoint: string, opts: Omit<GoAgentOptions, 'endpoint' | 'binary'>): Promise<GoAgent> {
    const a = await startGoAgent({ endpoint, binary, instanceUid: randomUUID(), maxLifetime: '3m', ...opts });
    agents.push(a);
    return a;
  }

  it('connects with --ca-file, gets its config, and keeps its connection across a certificate reload', async () => {
    const role = `tls-${randomUUID().slice(0, 8)}`;
    const b = await startBridge({ cert: pki.server.cert, key: pki.server.key }, undefined, [collector('tls-reload', role)]);
    const agent = await startAgent(b.wss, { caFile: pki.ca.certFile, attrs: { role } });
    await agent.waitFor((e) => e.event === 'connected', EVENT);
    const first = await agent.waitForRemoteConfig((e) => e.body !== null && e.body.includes('basic'), EVENT);
    expect(first.client).toBe(1);
    const settings = await agent.waitFor((e) => e.event === 'connection_settings', EVENT);
    expect(settings.endpoint).toBe(b.wss);
    await vi.waitFor(() => expect(b.fleet.viewOf(agent.instanceUid)?.connected).toBe(true), { timeout: 5_000 });

    const since = agent.events.length;
    b.server.setTls({ cert: pki.server2.cert, key: pki.server2.key });
    expect(await servedCert(b.port, pki.ca.cert)).toEqual(certId(pki.server2.cert));

    // A config change is pushed over the connection opened with the old certificate.
    b.fleet.setDesiredState(new DesiredState([collector('tls-reload', role, 'detailed')]));
    const pushed = await agent.waitForRemoteConfig((e) => e.body !== null && e.body.includes('detailed'), { ...EVENT, since });
    expect(pushed.client).toBe(1);
    await agent.waitForConfigStatus('APPLIED', pushed.hash, { ...EVENT, since });
    await vi.waitFor(() => expect(b.fleet.viewOf(agent.instanceUid)?.remoteConfig.reportedHash).toBe(pushed.hash), { timeout: 5_000 });
    const reconnects = agent.events.slice(since).filter((e) => e.event === 'connected' || e.event === 'connect_failed' || e.event === 'stopped');
    expect(reconnects).toEqual([]);
    expect(b.server.connectionCount).toBe(1);
  });

  it('does not connect without the CA that signed the server certificate', async () => {
    const b = await startBridge({ cert: pki.server.cert, key: pki.server.key });
    const agent = await startAgent(b.wss, { caFile: pki.otherCa.certFile });
    const failed = await agent.waitFor((e) => e.event === 'connect_failed', EVENT);
    expect(String(failed.error)).toMatch(/x509|certificate/);
    expect(agent.events.some((e) => e.event === 'connected')).toBe(false);
  });

  it('authenticates with a client certificate (mTLS), and is refused with 401 without one', async () => {
    const b = await startBridge({ cert: pki.server.cert, key: pki.server.key, clientCa: pki.ca.cert }, mtlsAuth({ requireNamespace: true }));
    const agent = await startAgent(b.wss, { caFile: pki.ca.certFile, certFile: pki.clients.spiffe.certFile, keyFile: pki.clients.spiffe.keyFile });
    await agent.waitFor((e) => e.event === 'connected', EVENT);
    await vi.waitFor(
      () => expect(b.fleet.viewOf(agent.instanceUid)?.verified).toEqual({ method: 'mtls', username: 'spiffe://cluster.local/ns/team-a/sa/collector', namespace: 'team-a', serviceAccount: 'collector' }),
      { timeout: 5_000 },
    );

    const anonymous = await startAgent(b.wss, { caFile: pki.ca.certFile });
    await anonymous.waitFor((e) => e.event === 'connect_failed', EVENT);
    // opamp-go reports the refused upgrade's status on stderr only.
    await vi.waitFor(() => expect(anonymous.stderr()).toMatch(/status=401/), { timeout: 5_000 });
    expect(b.fleet.viewOf(anonymous.instanceUid)).toBeUndefined();
  });
});

describe.skipIf(skip)('admin endpoint over HTTPS', () => {
  function get(port: number, path: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest({ host: '127.0.0.1', port, path, ca: pki.ca.cert, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.once('error', reject);
      req.end();
    });
  }

  it('serves /healthz over HTTPS and reloads its certificate', async () => {
    const admin = new AdminServer({
      registry: createMetrics({ defaultMetrics: false }).registry,
      logger: pino({ level: 'silent' }),
      source: { ready: () => true, agents: () => [], agent: () => undefined, collectors: () => ({ collectors: [], invalidFiles: [] }) },
      tls: { cert: pki.server.cert, key: pki.server.key },
    });
    const { port } = await admin.listen(0);
    cleanups.push(() => admin.close());

    expect(await get(port, '/healthz')).toEqual({ status: 200, body: 'ok\n' });
    expect(await servedCert(port, pki.ca.cert)).toEqual(certId(pki.server.cert));
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();

    expect(() => admin.setTls({ cert: pki.server2.cert, key: 'not a key' })).toThrow(/invalid TLS material/);
    expect(await servedCert(port, pki.ca.cert)).toEqual(certId(pki.server.cert));
    admin.setTls({ cert: pki.server2.cert, key: pki.server2.key });
    expect(await servedCert(port, pki.ca.cert)).toEqual(certId(pki.server2.cert));
    expect(await get(port, '/readyz')).toEqual({ status: 200, body: 'ok\n' });

    const plain = new AdminServer({
      registry: createMetrics({ defaultMetrics: false }).registry,
      logger: pino({ level: 'silent' }),
      source: { ready: () => true, agents: () => [], agent: () => undefined, collectors: () => ({ collectors: [], invalidFiles: [] }) },
    });
    expect(() => plain.setTls({ cert: pki.server.cert, key: pki.server.key })).toThrow(/started without TLS.*restart/);
  });
});
