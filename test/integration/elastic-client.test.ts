/**
 * Interop with a real OpAMP client written by others: @elastic/opamp-client-node (HTTP transport).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parse } from 'yaml';
import { createOpAMPClient, RemoteConfigStatuses } from '@elastic/opamp-client-node';
import { AgentCapabilities as C } from '../../src/opamp/messages.js';
import { collectorYaml, startTestBridge, type TestBridge } from '../harness/standalone.js';

type Client = ReturnType<typeof createOpAMPClient>;
interface Received { hash: string; body: string }

let bridge: TestBridge;
const clients: Client[] = [];

beforeAll(async () => {
  bridge = await startTestBridge({
    manifests: {
      'svc.yaml': collectorYaml('node-svc', { 'deployment.environment': 'elastic-test' }, { exporters: { otlphttp: { endpoint: 'https://one.example' } }, receivers: { otlp: { protocols: { http: {} } } }, service: { pipelines: { traces: { receivers: ['otlp'], exporters: ['otlphttp'] } } } }),
    },
  });
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.shutdown()));
  await bridge?.stop();
});

/** A client that applies (or fails) every config it gets, the way a real agent would. */
function startClient(env: string, mode: { fail?: string } = {}): { client: Client; received: Received[] } {
  const received: Received[] = [];
  const client: Client = createOpAMPClient({
    endpoint: bridge.opampHttpUrl,
    heartbeatIntervalSeconds: 0.3,
    capabilities: BigInt(C.AcceptsRemoteConfig | C.ReportsRemoteConfig),
    onMessage: ({ remoteConfig }) => {
      if (!remoteConfig) return;
      const hash = Buffer.from(remoteConfig.configHash).toString('hex');
      const body = Buffer.from(remoteConfig.config?.configMap?.['']?.body ?? new Uint8Array()).toString('utf8');
      received.push({ hash, body });
      client.setRemoteConfigStatus(
        mode.fail
          ? { status: RemoteConfigStatuses.RemoteConfigStatuses_FAILED, lastRemoteConfigHash: remoteConfig.configHash, errorMessage: mode.fail }
          : { status: RemoteConfigStatuses.RemoteConfigStatuses_APPLIED, lastRemoteConfigHash: remoteConfig.configHash },
      );
    },
  });
  client.setAgentDescription({
    identifyingAttributes: { 'service.name': 'elastic-node-agent' },
    nonIdentifyingAttributes: { 'deployment.environment': env, 'host.name': `host-${env}` },
  });
  client.start();
  clients.push(client);
  return { client, received };
}

describe('@elastic/opamp-client-node over HTTP', () => {
  it('receives the config selected by its attributes, reports APPLIED, and the API shows it', async () => {
    const { received } = startClient('elastic-test');
    await vi.waitFor(() => expect(received.length).toBeGreaterThan(0), { timeout: 10_000 });
    expect(parse(received[0]!.body)).toMatchObject({ exporters: { otlphttp: { endpoint: 'https://one.example' } } });
    const agents = await bridge.getAgents();
    const mine = agents.find((a) => a.labels['host.name'] === 'host-elastic-test')!;
    expect(mine).toMatchObject({ transport: 'http', connected: true });
    expect(mine.remoteConfig.desiredHash).toBe(received[0]!.hash);
    await vi.waitFor(async () => {
      const a = await bridge.getAgent(mine.instanceUid);
      expect(a!.remoteConfig).toMatchObject({ status: 'APPLIED', inSync: true, reportedHash: received[0]!.hash });
    }, { timeout: 10_000 });
    const col = await bridge.getCollector('node-svc');
    expect(col!.status).toMatchObject({ matched: 1, connected: 1, applied: 1, failed: 0 });

    // Edit the manifest: the new config arrives with a following poll.
    await bridge.writeManifest('svc.yaml', collectorYaml('node-svc', { 'deployment.environment': 'elastic-test' }, { exporters: { otlphttp: { endpoint: 'https://two.example' } }, receivers: { otlp: { protocols: { http: {} } } }, service: { pipelines: { traces: { receivers: ['otlp'], exporters: ['otlphttp'] } } } }));
    await vi.waitFor(() => expect(received.length).toBe(2), { timeout: 10_000 });
    expect(parse(received[1]!.body)).toMatchObject({ exporters: { otlphttp: { endpoint: 'https://two.example' } } });
    expect(received[1]!.hash).not.toBe(received[0]!.hash);
    await vi.waitFor(async () => expect((await bridge.getAgent(mine.instanceUid))!.remoteConfig).toMatchObject({ status: 'APPLIED', inSync: true, reportedHash: received[1]!.hash }), { timeout: 10_000 });
  });

  it('reports FAILED with its message, and the server does not send that config again', async () => {
    await bridge.writeManifest('fail.yaml', collectorYaml('node-fail', { 'deployment.environment': 'elastic-fail' }, { exporters: { debug: {} } }));
    const { received } = startClient('elastic-fail', { fail: 'exporter "debug" is not in this build' });
    await vi.waitFor(async () => {
      const col = await bridge.getCollector('node-fail');
      expect(col!.status.failed).toBe(1);
      expect(col!.status.failing[0]!.message).toBe('exporter "debug" is not in this build');
    }, { timeout: 10_000 });
    const agent = (await bridge.getAgents()).find((a) => a.labels['host.name'] === 'host-elastic-fail')!;
    expect(agent.remoteConfig).toMatchObject({ status: 'FAILED', errorMessage: 'exporter "debug" is not in this build', inSync: false });
    // Let it poll several more times (it polls every 0.3 s): the failed hash is not re-sent.
    const seq = Number(agent.sequenceNum);
    await vi.waitFor(async () => expect(Number((await bridge.getAgent(agent.instanceUid))!.sequenceNum)).toBeGreaterThan(seq + 5), { timeout: 10_000 });
    expect(received).toHaveLength(1);
  });

  it('gets nothing when no Collector selects it', async () => {
    const { received } = startClient('elastic-nobody');
    await vi.waitFor(async () => {
      const a = (await bridge.getAgents()).find((x) => x.labels['host.name'] === 'host-elastic-nobody');
      expect(Number(a?.sequenceNum ?? 0)).toBeGreaterThan(3);
      expect(a!.remoteConfig.desiredHash).toBeNull();
    }, { timeout: 10_000 });
    expect(received).toHaveLength(0);
  });
});
