/**
 * The bridge (a real child process) under attack at the OpAMP server: malformed Host headers from
 * agents that accept packages, 200 WebSockets that upgrade and never speak, and raw TCP connections
 * that never finish a request. During each attack a bystander agent heartbeats and must be answered
 * within 2 s, an agent keeps receiving its config, and the attackers are refused or closed — each
 * decision observed as the status or close event that shows it.
 * The same guards on a bare OpampServer, with short deadlines: opamp-server-guards.test.ts.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { startBridgeProcess, metricValue, opampBridgeYaml, waitUntil, type BridgeProcess } from '../harness/bridge-process.js';
import { startBystander, type Bystander } from '../harness/bystander.js';
import { RawWsAgent, encodeAgent, randomUid } from '../harness/raw-agent.js';
import { postRequest, rawExchange, upgradeRequest } from '../harness/raw-socket.js';
import { AgentCapabilities as C } from '../../src/opamp/messages.js';

const PER_SOURCE = 4;
/** Rounds of the Host attack (each: every bad Host, as an upgrade and as a POST). */
const ROUNDS = 10;
/** The bridge's defaults: a first message within 10 s, a request head within 10 s (checked every second). */
const FIRST_MESSAGE_MS = 10_000;
const HEADERS_MS = 10_000;
const CAPS = C.ReportsStatus | C.AcceptsRemoteConfig | C.ReportsRemoteConfig | C.AcceptsPackages | C.ReportsPackageStatuses;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const config = (verbosity: string) =>
  `{ receivers: { otlp: { protocols: { grpc: {} } } }, exporters: { debug: { verbosity: ${verbosity} } }, service: { pipelines: { traces: { receivers: [otlp], exporters: [debug] } } } }`;
const collector = (verbosity: string, pkgSha: string) => `apiVersion: fleetbridge.dev/v1alpha1
kind: Collector
metadata: { name: abuse, namespace: default }
spec:
  selector: { matchLabels: { role: abuse } }
  config: ${config(verbosity)}
  packages:
    - { name: otelcol, version: "1.0.0", sha256: ${pkgSha}, serve: { path: otelcol.bin } }
`;
const description = { nonIdentifyingAttributes: [{ key: 'role', value: { stringValue: 'abuse' } }] };

let bridge: BridgeProcess;
let pkgDir: string;
let pkgSha: string;
let port: number;
let receiver: RawWsAgent;
let bystander: Bystander | undefined;
const sockets: { destroy(): void }[] = [];

/** An agent that accepts configs and packages, connected with its own Host header (default: the URL's). */
async function configAgent(headers: Record<string, string> = {}): Promise<RawWsAgent> {
  const a = await RawWsAgent.connect(bridge.opampWsUrl, randomUid(), headers);
  a.send({ capabilities: CAPS, agentDescription: description, remoteConfigStatus: {}, packageStatuses: {} });
  await a.waitForMessages(1, 10_000);
  return a;
}

const configBody = (a: RawWsAgent, from = 0) =>
  a.received
    .slice(from)
    .map((m) => m.remoteConfig?.config?.configMap?.['']?.body)
    .filter((b): b is Uint8Array => b != null)
    .map((b) => Buffer.from(b).toString());

async function expectConfigEdit(a: RawWsAgent, verbosity: string): Promise<void> {
  const from = a.received.length;
  await bridge.writeManifest('abuse.yaml', collector(verbosity, pkgSha));
  await waitUntil(() => configBody(a, from).some((b) => b.includes(`verbosity: ${verbosity}`)), { timeoutMs: 10_000, intervalMs: 50, what: `config with verbosity ${verbosity}`, describe: () => bridge.describe() });
}

function openIdle(localAddress: string): Promise<{ ws: WebSocket; openedAt: number; closed: Promise<{ code: number; reason: string; afterMs: number }> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(bridge.opampWsUrl, { perMessageDeflate: false, localAddress });
    sockets.push({ destroy: () => ws.terminate() });
    let openedAt = 0;
    const closed = new Promise<{ code: number; reason: string; afterMs: number }>((r) => ws.once('close', (code, reason) => r({ code, reason: reason.toString(), afterMs: Date.now() - openedAt })));
    ws.once('open', () => {
      openedAt = Date.now();
      resolve({ ws, openedAt, closed });
    });
    ws.once('unexpected-response', (_q, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

beforeAll(async () => {
  pkgDir = await mkdtemp(join(tmpdir(), 'fleetbridge-abuse-pkgs-'));
  const pkg = randomBytes(4096);
  pkgSha = sha256(pkg);
  await writeFile(join(pkgDir, 'otelcol.bin'), pkg);
  bridge = await startBridgeProcess({
    manifests: {
      'bridge.yaml': opampBridgeYaml({ auth: { mode: 'none' }, limits: { maxConnectionsPerSource: PER_SOURCE }, packages: { directory: pkgDir } }),
      'abuse.yaml': collector('basic', pkgSha),
    },
    logLevel: 'info',
  });
  port = Number(new URL(bridge.opampWsUrl).port);
  receiver = await configAgent();
}, 300_000);

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await bystander?.stop().catch(() => {});
  bystander = undefined;
});

afterAll(async () => {
  receiver?.close();
  await bridge?.stop();
  if (pkgDir) await rm(pkgDir, { recursive: true, force: true });
});

describe('abuse at the OpAMP server, with a bystander agent', () => {
  it('refuses malformed Host headers from agents that accept packages with 400; the fleet, its views and config pushes go on', async () => {
    // The served package is offered at the host the agent used: for the receiver, the URL's.
    const offered = receiver.received.find((m) => m.packagesAvailable)?.packagesAvailable?.packages?.['otelcol'];
    expect(offered?.file?.downloadUrl).toBe(`http://127.0.0.1:${port}/v1/packages/default/${pkgSha}`);
    bystander = await startBystander(bridge.opampWsUrl);

    const body = encodeAgent({ instanceUid: randomUid(), capabilities: CAPS, agentDescription: description, packageStatuses: {} });
    const bad = ['a b', 'a/b', '[::1', 'h'.repeat(300), 'a\r\n b', 'x\r\nHost: y', `a b:${port}`, `evil.example/x:${port}`];
    const statuses: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      await Promise.all(
        bad.flatMap((h, i) =>
          [upgradeRequest(h), postRequest(h, body)].map(async (req) => {
            const r = await rawExchange(port, '127.0.0.1', req, { localAddress: `127.0.0.${100 + i}`, track: (s: Socket) => sockets.push(s) });
            statuses.push(r.statusLine);
          }),
        ),
      );
      // The views answer while the attack goes on.
      const res = await fetch(`${bridge.apiUrl}/api/v1/agents`, { signal: AbortSignal.timeout(5000) });
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
    expect(statuses).toHaveLength(ROUNDS * bad.length * 2);
    expect(new Set(statuses)).toEqual(new Set(['HTTP/1.1 400 Bad Request']));

    // A valid IPv6 Host is served, and offered a download URL that parses (in brackets).
    const v6 = await configAgent({ Host: `[::1]:${port}` });
    const v6Offer = v6.received.find((m) => m.packagesAvailable)?.packagesAvailable?.packages?.['otelcol'];
    expect(v6Offer?.file?.downloadUrl).toBe(`http://[::1]:${port}/v1/packages/default/${pkgSha}`);
    expect((await fetch(`${bridge.apiUrl}/api/v1/agents`)).status).toBe(200);

    // Both agents still receive a config edit.
    await expectConfigEdit(receiver, 'detailed');
    await waitUntil(() => configBody(v6).some((b) => b.includes('verbosity: detailed')), { timeoutMs: 10_000, intervalMs: 50, what: 'the IPv6-Host agent got the edit' });
    v6.close();

    expect(bystander.worstMs()).toBeLessThan(2000);
    await bystander.stop();
    const m = await bridge.metricsText();
    // The folded header (CR LF SP) is refused by Node's parser itself and never reaches the server: 7 of 8 are counted.
    expect(metricValue(m, 'fleetbridge_opamp_protocol_errors_total', 'transport="websocket",code="FB_OPAMP_BAD_HOST"')).toBeGreaterThanOrEqual(ROUNDS * 7);
    expect(metricValue(m, 'fleetbridge_opamp_protocol_errors_total', 'transport="http",code="FB_OPAMP_BAD_HOST"')).toBeGreaterThanOrEqual(ROUNDS * 7);
  }, 90_000);

  it('closes 200 WebSockets that never send at the first-message deadline; agents from the same address still connect meanwhile', async () => {
    bystander = await startBystander(bridge.opampWsUrl); // an agent of 127.0.0.1, like the receiver
    // Agents of earlier tests are gone (the bridge counts them off its address as it sees them close).
    await waitUntil(async () => (await bridge.getAgents()).filter((a) => a.connected).length === 2, { timeoutMs: 10_000, what: 'only the receiver and the bystander connected' });
    // 200 silent sockets: 50 addresses with PER_SOURCE each (no eviction among them).
    const idle = await Promise.all(Array.from({ length: 200 }, (_, i) => openIdle(`127.0.0.${2 + Math.floor(i / PER_SOURCE)}`)));
    // 127.0.0.1 too, up to its pending limit (PER_SOURCE, the default): it already has 2 agents.
    const local = [];
    for (let i = 0; i < PER_SOURCE; i++) local.push(await openIdle('127.0.0.1'));
    // Agents from 127.0.0.1 connect and are served: silent sockets hold no agent slot, and each new
    // connection makes room by closing the address's oldest silent one.
    const agents: RawWsAgent[] = [];
    for (let i = 0; i < PER_SOURCE - 2; i++) {
      if (i > 0) local.push(await openIdle('127.0.0.1')); // the address's pending slots are full again
      const evicted = local[i]!.closed;
      agents.push(await configAgent());
      expect(await evicted).toMatchObject({ code: 1008, reason: 'too many connections without an OpAMP message from this address' });
    }
    // The address now holds PER_SOURCE agents (bystander, receiver, two more): the next is refused at the upgrade.
    await expect(RawWsAgent.connect(bridge.opampWsUrl)).rejects.toThrow(/HTTP 429/);

    // Every silent socket is closed at the deadline, with the reason.
    const closes = await Promise.all([...idle, ...local.slice(PER_SOURCE - 2)].map((s) => s.closed));
    for (const c of closes) {
      expect(c).toMatchObject({ code: 1008, reason: `no OpAMP message within ${FIRST_MESSAGE_MS / 1000} s` });
      expect(c.afterMs).toBeGreaterThanOrEqual(FIRST_MESSAGE_MS - 500);
      expect(c.afterMs).toBeLessThan(FIRST_MESSAGE_MS + 5000);
    }
    // The agents were not touched, and a config edit reaches them.
    await expectConfigEdit(agents[0]!, 'normal');
    expect(agents.every((a) => a.closeInfo === null)).toBe(true);
    expect(bystander.worstMs()).toBeLessThan(2000);
    await bystander.stop();
    for (const a of agents) a.close();

    const m = await bridge.metricsText();
    expect(metricValue(m, 'fleetbridge_opamp_protocol_errors_total', 'transport="websocket",code="FB_OPAMP_IDLE_CONNECTION"')).toBeGreaterThanOrEqual(200 + PER_SOURCE);
    // Counted every time, logged at most 10 lines per code in 10 s (with the count of the rest).
    const lines = bridge.logs.filter((l) => l['code'] === 'FB_OPAMP_IDLE_CONNECTION');
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.length).toBeLessThanOrEqual(30);
  }, 90_000);

  it('cuts raw TCP connections that send half a request line, half a request head, or nothing, at the headers timeout', async () => {
    bystander = await startBystander(bridge.opampWsUrl);
    const texts = ['GET /v1/op', 'GET /v1/opamp HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n', 'POST /v1/opamp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n', ''];
    const attempts = Array.from({ length: 200 }, (_, i) =>
      rawExchange(port, '127.0.0.1', texts[i % texts.length]!, { localAddress: `127.0.0.${60 + (i % 40)}`, timeoutMs: HEADERS_MS + 10_000, track: (s: Socket) => sockets.push(s) }),
    );
    const results = await Promise.all(attempts);
    for (const r of results) {
      expect(r.statusLine).toBe('HTTP/1.1 408 Request Timeout');
      expect(r.closedAfterMs).toBeGreaterThanOrEqual(HEADERS_MS - 500);
      expect(r.closedAfterMs).toBeLessThan(HEADERS_MS + 5000);
    }
    expect(bystander.worstMs()).toBeLessThan(2000);
    await bystander.stop();
    const m = await bridge.metricsText();
    expect(metricValue(m, 'fleetbridge_opamp_protocol_errors_total', 'transport="http",code="FB_OPAMP_REQUEST_TIMEOUT"')).toBeGreaterThanOrEqual(200);
  }, 90_000);
});
