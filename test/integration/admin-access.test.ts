/**
 * Access to the admin endpoint in standalone mode (docs/adr/0008-admin-access.md), on the real
 * command and in-process:
 * - an admin token from --admin-token-file or a Secret manifest (spec.admin.tokenSecretName):
 *   /healthz and /readyz open; the API and /metrics 401 without it or with a wrong one (counted),
 *   200 with it; --metrics-auth false opens /metrics only;
 * - nothing configured: open, listening on loopback only (said at start-up);
 * - POST /v1/metrics: an agent's own figures, sent with the credential offered to it, are kept;
 *   no credential (or its OpAMP token), a forged one, another agent's uid, a negative value and a
 *   time in 2100 are refused or dropped, and counted — the Collector's memory total stays true.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { AgentCapabilities as C } from '../../src/opamp/messages.js';
import { opentelemetry } from '../../src/otlp/generated/otlp.js';
import { bearerAuthManifests, metricValue, opampBridgeYaml, secretYaml, startBridgeProcess, waitUntil, type BridgeProcess } from '../harness/bridge-process.js';
import { RawWsAgent } from '../harness/raw-agent.js';
import { collectorYaml, startTestBridge, type TestBridge } from '../harness/standalone.js';

const Req = opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest;
const nanos = (ms: number) => (BigInt(ms) * 1_000_000n).toString();

async function status(url: string, headers: Record<string, string> = {}): Promise<number> {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(10_000) });
  await res.arrayBuffer();
  return res.status;
}

describe('the admin endpoint of the standalone command', () => {
  let withToken: BridgeProcess;
  let metricsOpen: BridgeProcess;
  const ADMIN = `admin-${randomUUID()}`;

  beforeAll(async () => {
    [withToken, metricsOpen] = await Promise.all([startBridgeProcess({ adminToken: ADMIN }), startBridgeProcess({ adminToken: ADMIN, extraArgs: ['--metrics-auth', 'false'] })]);
  }, 120_000);
  afterAll(async () => {
    await Promise.all([withToken?.stop(), metricsOpen?.stop()]);
  });

  it('--admin-token-file: probes open, API and /metrics need the token (401 otherwise, counted)', async () => {
    const api = withToken.apiUrl;
    expect(await status(`${api}/healthz`)).toBe(200);
    expect(await status(`${api}/readyz`)).toBe(200);
    const res = await fetch(`${api}/api/v1/agents`);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(await res.json()).toEqual({ error: 'an admin token (Authorization: Bearer) is required' });
    expect(await status(`${api}/api/v1/agents`, { Authorization: 'Bearer wrong' })).toBe(401);
    expect(await status(`${api}/api/v1/collectors`, { Authorization: `Basic ${Buffer.from(`x:${ADMIN}`).toString('base64')}` })).toBe(401);
    expect(await status(`${api}/metrics`)).toBe(401);
    expect(await status(`${api}/api/v1/agents`, withToken.adminHeaders)).toBe(200);
    const text = await withToken.metricsText();
    expect(metricValue(text, 'fleetbridge_admin_requests_denied_total', 'resource="api",reason="unauthenticated"')).toBe(3);
    expect(metricValue(text, 'fleetbridge_admin_requests_denied_total', 'resource="metrics",reason="unauthenticated"')).toBe(1);
    expect(withToken.logs.find((l) => l['msg'] === 'Fleetbridge standalone started')).toMatchObject({ adminAccess: 'token' });
    // Logged too (rate-limited); the harness copies the process's log lines every 200 ms.
    await waitUntil(() => withToken.logs.some((l) => l['msg'] === 'Admin request refused'), { timeoutMs: 10_000, what: 'the refusal logged' });
  });

  it('--metrics-auth false: /metrics open, the API still needs the token', async () => {
    expect(await status(`${metricsOpen.apiUrl}/metrics`)).toBe(200);
    expect(await status(`${metricsOpen.apiUrl}/api/v1/agents`)).toBe(401);
    expect(await status(`${metricsOpen.apiUrl}/api/v1/agents`, metricsOpen.adminHeaders)).toBe(200);
  });
});

describe('standalone in-process: admin token Secret, loopback default, and own metrics only from the agent', () => {
  const TOKEN = `agent-${randomUUID()}`;
  const ADMIN = `admin-${randomUUID()}`;
  let bridge: TestBridge;
  let open: TestBridge;
  const agents: RawWsAgent[] = [];

  beforeAll(async () => {
    const auth = bearerAuthManifests(TOKEN, { bridgeSpec: { admin: { tokenSecretName: 'admin-tokens' } } });
    bridge = await startTestBridge({
      adminHeaders: { Authorization: `Bearer ${ADMIN}` },
      manifests: {
        ...auth,
        'admin-tokens.yaml': secretYaml('admin-tokens', { ops: ADMIN }),
        'c.yaml': collectorYaml('measured', { 'test.group': 'adm' }, { receivers: { nop: {} }, exporters: { nop: {} }, service: { pipelines: { metrics: { receivers: ['nop'], exporters: ['nop'] } } } }),
      },
    });
    open = await startTestBridge({ manifests: { 'bridge.yaml': opampBridgeYaml({ auth: { mode: 'none' } }) } });
  }, 60_000);
  afterAll(async () => {
    for (const a of agents) a.terminate();
    await Promise.all([bridge?.stop(), open?.stop()]);
  });

  it('the admin token from a Secret manifest admits; a rotated Secret applies without a restart', async () => {
    expect(await status(`${bridge.apiUrl}/api/v1/agents`)).toBe(401);
    expect(await status(`${bridge.apiUrl}/api/v1/agents`, bridge.adminHeaders)).toBe(200);
    const NEXT = `admin-${randomUUID()}`;
    await bridge.writeManifest('admin-tokens.yaml', secretYaml('admin-tokens', { ops: NEXT }));
    await waitUntil(async () => (await status(`${bridge.apiUrl}/api/v1/agents`, { Authorization: `Bearer ${NEXT}` })) === 200, { timeoutMs: 15_000, what: 'the rotated admin token' });
    expect(await status(`${bridge.apiUrl}/api/v1/agents`, bridge.adminHeaders)).toBe(401);
    await bridge.writeManifest('admin-tokens.yaml', secretYaml('admin-tokens', { ops: ADMIN }));
    await waitUntil(async () => (await status(`${bridge.apiUrl}/api/v1/agents`, bridge.adminHeaders)) === 200, { timeoutMs: 15_000, what: 'the admin token back' });
  });

  it('without admin access control the endpoint is open and on loopback only', async () => {
    const started = open.logs.find((l) => l['msg'] === 'Fleetbridge standalone started');
    expect(started).toMatchObject({ adminAccess: 'none' });
    expect(new URL(open.apiUrl).hostname).toBe('127.0.0.1');
    expect(await status(`${open.apiUrl}/api/v1/agents`)).toBe(200);
  });

  async function agent(): Promise<{ a: RawWsAgent; endpoint: string; credential: string }> {
    const a = await RawWsAgent.connect(bridge.opampWsUrl, undefined, { Authorization: `Bearer ${TOKEN}` });
    agents.push(a);
    a.send({ capabilities: C.ReportsStatus | C.ReportsOwnMetrics, agentDescription: { nonIdentifyingAttributes: [{ key: 'test.group', value: { stringValue: 'adm' } }] } });
    const offer = await waitUntil(() => a.received.find((m) => m.connectionSettings?.ownMetrics)?.connectionSettings?.ownMetrics, { timeoutMs: 15_000, what: 'an own_metrics offer' });
    const headers = offer.headers?.headers ?? [];
    expect(headers.map((h) => h.key)).toEqual(['Authorization']);
    return { a, endpoint: offer.destinationEndpoint!, credential: headers[0]!.value! };
  }

  const body = (uid: string, rss: number, at = Date.now()) =>
    Buffer.from(
      Req.encode({
        resourceMetrics: [
          {
            resource: { attributes: [{ key: 'service.instance.id', value: { stringValue: uid } }] },
            scopeMetrics: [{ metrics: [{ name: 'otelcol_process_memory_rss', gauge: { dataPoints: [{ timeUnixNano: nanos(at), asInt: rss }] } }, { name: 'otelcol_process_cpu_seconds', sum: { dataPoints: [{ timeUnixNano: nanos(at), asDouble: 1.5 }] } }] }],
          },
        ],
      } as never).finish(),
    );
  const post = async (endpoint: string, b: Buffer, authorization?: string) => {
    const res = await fetch(endpoint, { method: 'POST', body: b, headers: { 'Content-Type': 'application/x-protobuf', ...(authorization ? { Authorization: authorization } : {}) }, signal: AbortSignal.timeout(10_000) });
    await res.arrayBuffer();
    return res.status;
  };

  it("keeps an agent's own figures; refuses forged ones and drops invalid points, counted", async () => {
    const [one, two] = [await agent(), await agent()];
    expect(one.endpoint).toBe(`${bridge.apiUrl}/v1/metrics`);
    expect(one.credential).not.toBe(two.credential);
    expect(one.credential).not.toContain(TOKEN);

    // Its own figures, with its credential: kept.
    expect(await post(one.endpoint, body(one.a.uidString, 50_000_000), one.credential)).toBe(200);
    expect((await bridge.getAgent(one.a.uidString))?.resources?.rssBytes).toBe(50_000_000);

    // No credential, the agents' OpAMP token, a forged credential, another agent's credential.
    expect(await post(one.endpoint, body(one.a.uidString, 1))).toBe(401);
    expect(await post(one.endpoint, body(one.a.uidString, 1), `Bearer ${TOKEN}`)).toBe(401);
    expect(await post(one.endpoint, body(one.a.uidString, 1), `Bearer fbom1.${Buffer.alloc(32).toString('base64url')}`)).toBe(403);
    expect(await post(one.endpoint, body(one.a.uidString, 1), two.credential)).toBe(403);
    expect(await post(one.endpoint, body(two.a.uidString, 1), one.credential)).toBe(403);
    // Negative memory and a time in 2100, with the right credential: the points are dropped.
    expect(await post(one.endpoint, body(one.a.uidString, -5e15), one.credential)).toBe(200);
    expect(await post(one.endpoint, body(one.a.uidString, 7, Date.UTC(2100, 0, 1)), one.credential)).toBe(200);
    expect((await bridge.getAgent(one.a.uidString))?.resources?.rssBytes).toBe(50_000_000);
    expect((await bridge.getAgent(two.a.uidString))?.resources).toBeNull();
    // A later true figure is taken (a point in 2100 would have pinned the old one forever).
    expect(await post(one.endpoint, body(one.a.uidString, 60_000_000), one.credential)).toBe(200);
    expect((await bridge.getAgent(one.a.uidString))?.resources?.rssBytes).toBe(60_000_000);
    expect(await post(two.endpoint, body(two.a.uidString, 40_000_000), two.credential)).toBe(200);

    const summary = (await bridge.getCollector('measured'))?.status.resources;
    expect(summary).toMatchObject({ agents: 2, memoryTotalBytes: 100_000_000, memoryMaxBytes: 60_000_000 });
    const text = await bridge.metricsText();
    expect(metricValue(text, 'fleetbridge_own_metrics_requests_total', 'outcome="unauthenticated"')).toBe(2);
    expect(metricValue(text, 'fleetbridge_own_metrics_requests_total', 'outcome="forbidden"')).toBe(3);
    expect(metricValue(text, 'fleetbridge_own_metrics_requests_total', 'outcome="accepted"')).toBe(5);
    expect(metricValue(text, 'fleetbridge_own_metrics_points_dropped_total', 'reason="negative"')).toBe(1);
    expect(metricValue(text, 'fleetbridge_own_metrics_points_dropped_total', 'reason="out_of_time"')).toBe(2);
    expect(bridge.logs.some((l) => l['msg'] === 'Own metrics refused')).toBe(true);
  });
});
