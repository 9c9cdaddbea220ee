/**
 * The OpAMPBridge manifest is applied live in standalone mode (docs/adr/0010): heartbeat, limits,
 * endpoint path, transports and TLS Secrets change while agents stay connected; turning TLS on is
 * reported as needing a restart and changes nothing meanwhile.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { goMissingReason, startGoAgent, type GoAgent } from '../harness/go-agent.js';
import { collectorYaml, startTestBridge, type TestBridge } from '../harness/standalone.js';
import { skipUnlessOnCi } from '../harness/tools.js';
import { RawWsAgent } from '../harness/raw-agent.js';
import { AgentCapabilities as C } from '../../src/opamp/messages.js';

const skip = skipUnlessOnCi('live-settings.test', goMissingReason());
const WAIT = { timeout: 20_000, interval: 100 };
const bridgeYaml = (spec: object) => `apiVersion: fleetbridge.dev/v1alpha1\nkind: OpAMPBridge\nmetadata: { name: fb, namespace: default }\nspec: ${JSON.stringify({ auth: { mode: 'none' }, ...spec })}\n`;
const cleanups: (() => Promise<unknown>)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

const post = (url: string, bytes: number) => fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/x-protobuf' }, body: new Uint8Array(bytes) });

describe.skipIf(skip)('standalone mode: the OpAMPBridge applied live', () => {
  async function bridge(manifests: Record<string, string>): Promise<TestBridge> {
    const b = await startTestBridge({ manifests, heartbeatIntervalSeconds: null });
    cleanups.push(() => b.stop());
    return b;
  }
  async function agent(endpoint: string): Promise<GoAgent> {
    const a = await startGoAgent({ endpoint, acceptsConnectionSettings: true });
    cleanups.push(() => a.stop());
    return a;
  }

  it('offers a new heartbeat to a connected agent, and applies new limits, path and transports to the next request', async () => {
    const b = await bridge({ 'bridge.yaml': bridgeYaml({ heartbeatIntervalSeconds: 20 }), 'all.yaml': collectorYaml('all', {}, { exporters: { debug: {} } }) });
    const a = await agent(b.opampWsUrl);
    await a.waitForConfigStatus('APPLIED');
    await a.waitFor((e) => e.event === 'connection_settings' && e.heartbeatIntervalSeconds === 20, { timeoutMs: WAIT.timeout });

    await b.writeManifest('bridge.yaml', bridgeYaml({ heartbeatIntervalSeconds: 7, limits: { maxMessageBytes: 4096 } }));
    await a.waitFor((e) => e.event === 'connection_settings' && e.heartbeatIntervalSeconds === 7, { timeoutMs: WAIT.timeout });
    // The agent stayed connected throughout: one uid, still connected, config still applied.
    const view = await b.getAgent(a.instanceUid);
    expect(view).toMatchObject({ connected: true, remoteConfig: { status: 'APPLIED' } });
    // A message over the new bound is refused; one under it is read (400: not an AgentToServer).
    expect((await post(b.opampHttpUrl, 8192)).status).toBe(413);
    expect((await post(b.opampHttpUrl, 1024)).status).not.toBe(413);

    // A new path: served there, no longer at the old one; HTTP turned off.
    await b.writeManifest('bridge.yaml', bridgeYaml({ heartbeatIntervalSeconds: 7, endpoint: { path: '/opamp/v2' }, transports: ['websocket'] }));
    const moved = b.opampHttpUrl.replace('/v1/opamp', '/opamp/v2');
    await vi.waitFor(async () => expect((await post(b.opampHttpUrl, 10)).status).toBe(404), WAIT);
    // The new path answers: HTTP is off there, as the manifest now says.
    expect((await post(moved, 10)).status).toBe(405);
  });

  it('offers new own-telemetry destinations to connected agents that report that signal', async () => {
    const b = await bridge({ 'bridge.yaml': bridgeYaml({ ownTelemetry: { logs: { endpoint: 'http://127.0.0.1:4318/v1/logs' } } }) });
    const a = await RawWsAgent.connect(b.opampWsUrl);
    cleanups.push(async () => a.terminate());
    a.send({ capabilities: C.ReportsStatus | C.ReportsOwnLogs | C.AcceptsOpAMPConnectionSettings, agentDescription: { identifyingAttributes: [{ key: 'service.name', value: { stringValue: 'raw' } }] } });
    const logsEndpoint = () => a.received.map((m) => m.connectionSettings?.ownLogs?.destinationEndpoint).filter(Boolean).at(-1);
    await vi.waitFor(() => expect(logsEndpoint()).toBe('http://127.0.0.1:4318/v1/logs'), WAIT);
    await b.writeManifest('bridge.yaml', bridgeYaml({ ownTelemetry: { logs: { endpoint: 'http://127.0.0.1:4319/v1/logs' } } }));
    await vi.waitFor(() => expect(logsEndpoint()).toBe('http://127.0.0.1:4319/v1/logs'), WAIT);
    expect(a.ws.readyState).toBe(a.ws.OPEN);
  });

  it('reports that turning TLS on needs a restart, and keeps serving plain text meanwhile', async () => {
    const b = await bridge({ 'bridge.yaml': bridgeYaml({}) });
    await b.writeManifest('bridge.yaml', bridgeYaml({ tls: { secretName: 'opamp-tls' } }));
    await vi.waitFor(
      () => expect(b.logs).toContainEqual(expect.objectContaining({ level: 40, fields: ['tls'], msg: expect.stringMatching(/^The OpAMPBridge manifest changed; applied except tls, .*restart it to apply the change$/) })),
      WAIT,
    );
    expect((await post(b.opampHttpUrl, 1)).status).toBe(400);
  });
});
