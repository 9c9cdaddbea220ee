/**
 * Interop with the real OpenTelemetry Python OpAMP client (`opentelemetry-opamp-client` from PyPI,
 * pinned in test/agents/python-agent/requirements.txt) over plain HTTP.
 *
 * The Python client polls: its first request is a full state report (agent_description,
 * capabilities); later heartbeats carry only instance_uid, sequence_num and capabilities; remote
 * config status goes in a separate message. So every config change reaches it on a later poll.
 */
import { skipUnlessOnCi } from '../harness/tools.js';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { parse as parseYaml } from 'yaml';
import type { AgentView } from '../../src/fleet/view-types.js';
import type { JsonObject } from '../harness/child-process.js';
import { startTestBridge, type TestBridge } from '../harness/standalone.js';
import {
  ensurePythonAgent,
  findPython3,
  startPythonAgent,
  type PythonAgent,
  type PythonAgentOptions,
} from '../harness/python-agent.js';

const probe = await findPython3();
const skip = skipUnlessOnCi('python-client.test', probe.ok ? null : probe.reason);
const describeIfPython = skip ? describe.skip : describe;

/** Enough for a few 1 s polls on a busy 2-core machine. */
const WAIT = { timeout: 20_000, interval: 100 };
const EVENT_TIMEOUT_MS = 20_000;

type RemoteConfigEvent = {
  event: 'remote_config';
  hash: string;
  body: string | null;
  contentType: string | null;
  keys: string[];
  files: string[];
};
type StatusEvent = { event: string; hash: string; status: string; errorMessage: string };

function collectorManifest(name: string, matchLabels: Record<string, string>, config: Record<string, unknown>): string {
  // JSON is valid YAML; keeps the manifests exact without a YAML emitter.
  return JSON.stringify({
    apiVersion: 'fleetbridge.dev/v1alpha1',
    kind: 'Collector',
    metadata: { name, namespace: 'default' },
    spec: { selector: { matchLabels }, config },
  });
}

const PY_MANIFEST_V1 = `apiVersion: fleetbridge.dev/v1alpha1
kind: Collector
metadata: { name: py, namespace: default }
spec:
  selector: { matchLabels: { service.name: python-test-agent } }
  config: { receivers: { otlp: { protocols: { http: {} } } }, exporters: { debug: {} }, service: { pipelines: { logs: { receivers: [otlp], exporters: [debug] } } } }
`;

const PY_MANIFEST_V2 = collectorManifest(
  'py',
  { 'service.name': 'python-test-agent' },
  {
    receivers: { otlp: { protocols: { http: {} } } },
    processors: { batch: {} },
    exporters: { debug: { verbosity: 'detailed' } },
    service: { pipelines: { logs: { receivers: ['otlp'], processors: ['batch'], exporters: ['debug'] } } },
  },
);

/** Selects other agents only: must never be merged into the Python agent's config. */
const OTHER_MANIFEST = collectorManifest(
  'other',
  { 'service.name': 'someone-else' },
  {
    receivers: { otlp: { protocols: { grpc: {} } } },
    exporters: { 'debug/other': {} },
    service: { pipelines: { traces: { receivers: ['otlp'], exporters: ['debug/other'] } } },
  },
);

function isRemoteConfig(hash?: string) {
  return (e: JsonObject) => e.event === 'remote_config' && (hash === undefined || e.hash === hash);
}

describeIfPython('real Python OpAMP client (opentelemetry-opamp-client, HTTP)', () => {
  let bridge: TestBridge | undefined;
  let python: string;
  const agents: PythonAgent[] = [];
  let current: PythonAgent | undefined;

  beforeAll(async () => {
    // First run creates the venv and pip-installs from PyPI; later runs reuse it.
    const env = await ensurePythonAgent();
    if (!env) throw new Error('python3 disappeared between collection and beforeAll');
    python = env.python;
    bridge = await startTestBridge({
      manifests: { 'py.yaml': PY_MANIFEST_V1, 'other.yaml': OTHER_MANIFEST },
      heartbeatIntervalSeconds: 1,
    });
  }, 240_000);

  afterAll(async () => {
    await Promise.allSettled(agents.map((a) => a.stop()));
    await bridge?.stop();
  }, 30_000);

  beforeEach((ctx) => {
    ctx.onTestFailed(() => {
      if (current) console.error(`python agent ${current.instanceUid}:\n${current.describe()}`);
    });
  });

  async function start(opts: Omit<PythonAgentOptions, 'endpoint' | 'python'>): Promise<PythonAgent> {
    const agent = await startPythonAgent({ endpoint: bridge!.opampHttpUrl, python, heartbeatSeconds: 1, ...opts });
    agents.push(agent);
    current = agent;
    return agent;
  }

  async function agentView(uid: string, check: (a: AgentView) => void = () => {}): Promise<AgentView> {
    return vi.waitFor(async () => {
      const view = await bridge!.getAgent(uid);
      expect(view, `agent ${uid} listed by the API`).toBeDefined();
      check(view!);
      return view!;
    }, WAIT);
  }

  async function nextConfig(agent: PythonAgent, hash: string): Promise<RemoteConfigEvent> {
    return (await agent.waitFor(isRemoteConfig(hash), { timeoutMs: EVENT_TIMEOUT_MS })) as unknown as RemoteConfigEvent;
  }

  async function statusSent(agent: PythonAgent, hash: string, status: string): Promise<StatusEvent> {
    return (await agent.waitFor(
      (e) => e.event === 'config_status_sent' && e.hash === hash && e.status === status,
      { timeoutMs: EVENT_TIMEOUT_MS },
    )) as unknown as StatusEvent;
  }

  describe('scenario: one agent, service.name=python-test-agent, env=dev', () => {
    let agent: PythonAgent;
    let firstHash: string;

    it('connects over HTTP and the API lists it with labels from its attributes', async () => {
      agent = await start({ attrs: { env: 'dev', 'host.name': 'py-host-1' } });
      expect(agent.libraryVersion).toBe('0.5b0');
      expect(agent.instanceUid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      const connected = await agent.waitFor((e) => e.event === 'connected', { timeoutMs: EVENT_TIMEOUT_MS });
      // Observed through a requests response hook on the library's own RequestsTransport.
      expect(connected.http).toMatchObject({ status: 200, contentType: 'application/x-protobuf' });

      const view = await agentView(agent.instanceUid, (a) => {
        expect(a.description).not.toBeNull();
      });
      expect(view.instanceUid).toBe(agent.instanceUid);
      expect(view.transport).toBe('http');
      expect(view.connected).toBe(true);
      expect(view.labels).toMatchObject({ 'service.name': 'python-test-agent', env: 'dev', 'host.name': 'py-host-1' });
      // The client's default capabilities: ReportsStatus, AcceptsRemoteConfig, ReportsEffectiveConfig,
      // ReportsRemoteConfig, ReportsHeartbeat.
      expect(view.capabilities.raw).toBe(0x1 | 0x2 | 0x4 | 0x1000 | 0x2000);
    });

    it('receives the config selected by its attributes, with the desired hash', async () => {
      const view = await agentView(agent.instanceUid, (a) => {
        expect(a.remoteConfig.desiredHash).toMatch(/^[0-9a-f]{64}$/);
      });
      firstHash = view.remoteConfig.desiredHash!;
      expect(view.remoteConfig.collectors).toEqual(['default/py']);

      const rc = await nextConfig(agent, firstHash);
      expect(rc.files).toContain('');
      expect(rc.contentType).toBe('text/yaml');
      expect(rc.body).not.toBeNull();
      const doc = parseYaml(rc.body!) as Record<string, any>;
      expect(Object.keys(doc)).toEqual(expect.arrayContaining(['receivers', 'exporters', 'service']));
      expect(rc.keys).toEqual(expect.arrayContaining(['receivers', 'exporters', 'service']));
      expect(doc.receivers).toHaveProperty('otlp');
      expect(doc.exporters).toHaveProperty('debug');
      expect(doc.exporters).not.toHaveProperty('debug/other');
      expect(doc.service.pipelines.logs).toMatchObject({ receivers: ['otlp'], exporters: ['debug'] });
      expect(doc.service.pipelines).not.toHaveProperty('traces');
    });

    it('reports APPLIED and the API shows it applied and in sync', async () => {
      await statusSent(agent, firstHash, 'APPLIED');
      const view = await agentView(agent.instanceUid, (a) => {
        expect(a.remoteConfig.status).toBe('APPLIED');
        expect(a.remoteConfig.inSync).toBe(true);
      });
      expect(view.remoteConfig.reportedHash).toBe(firstHash);
      expect(view.remoteConfig.errorMessage).toBe('');
    });

    it('gets the edited manifest on a following poll and applies it', async () => {
      await bridge!.writeManifest('py.yaml', PY_MANIFEST_V2);
      const view = await agentView(agent.instanceUid, (a) => {
        expect(a.remoteConfig.desiredHash).toMatch(/^[0-9a-f]{64}$/);
        expect(a.remoteConfig.desiredHash).not.toBe(firstHash);
      });
      const secondHash = view.remoteConfig.desiredHash!;

      const rc = await nextConfig(agent, secondHash);
      const doc = parseYaml(rc.body!) as Record<string, any>;
      expect(doc.processors).toHaveProperty('batch');
      expect(doc.exporters.debug).toMatchObject({ verbosity: 'detailed' });
      expect(doc.service.pipelines.logs.processors).toEqual(['batch']);

      await statusSent(agent, secondHash, 'APPLIED');
      const after = await agentView(agent.instanceUid, (a) => {
        expect(a.remoteConfig.reportedHash).toBe(secondHash);
        expect(a.remoteConfig.inSync).toBe(true);
      });
      expect(after.remoteConfig.status).toBe('APPLIED');
    });

    it('stops cleanly: AgentDisconnect is sent and the API no longer shows it connected', async () => {
      agent.send({ cmd: 'stop' });
      await agent.waitFor((e) => e.event === 'stopped', { timeoutMs: EVENT_TIMEOUT_MS });
      expect(await agent.exited).toBe(0);
      // Well under the bridge's silence threshold for HTTP agents (3 heartbeats + 10 s), so only
      // the AgentDisconnect message can have marked it; the record itself is retained.
      await vi.waitFor(async () => {
        const view = await bridge!.getAgent(agent.instanceUid);
        expect(view, 'disconnected agents stay listed for a while').toBeDefined();
        expect(view!.connected).toBe(false);
      }, { timeout: 5_000, interval: 100 });
    });
  });

  it('fail mode: a rejected config shows as FAILED with its message', async () => {
    const serviceName = 'python-test-agent-fail';
    const message = 'exporter "debug" refused by python test agent';
    const agent = await start({ idAttrs: { 'service.name': serviceName }, attrs: { env: 'qa' } });
    agent.send({ cmd: 'mode', remoteConfig: 'fail', error: message });
    await agent.waitFor((e) => e.event === 'ack' && e.cmd === 'mode', { timeoutMs: EVENT_TIMEOUT_MS });

    await bridge!.writeManifest(
      'py-fail.yaml',
      collectorManifest(
        'py-fail',
        { 'service.name': serviceName },
        {
          receivers: { otlp: { protocols: { http: {} } } },
          exporters: { debug: {} },
          service: { pipelines: { metrics: { receivers: ['otlp'], exporters: ['debug'] } } },
        },
      ),
    );
    const view = await agentView(agent.instanceUid, (a) => {
      expect(a.remoteConfig.desiredHash).toMatch(/^[0-9a-f]{64}$/);
    });
    const hash = view.remoteConfig.desiredHash!;
    expect(view.remoteConfig.collectors).toEqual(['default/py-fail']);

    await nextConfig(agent, hash);
    const sent = await statusSent(agent, hash, 'FAILED');
    expect(sent.errorMessage).toBe(message);

    const failed = await agentView(agent.instanceUid, (a) => {
      expect(a.remoteConfig.status).toBe('FAILED');
      expect(a.remoteConfig.errorMessage).toBe(message);
    });
    expect(failed.remoteConfig.reportedHash).toBe(hash);
    expect(failed.remoteConfig.inSync).toBe(false);

    await vi.waitFor(async () => {
      const { collectors } = await bridge!.getCollectors();
      const c = collectors.find((x) => x.namespace === 'default' && x.name === 'py-fail');
      expect(c, 'Collector default/py-fail').toBeDefined();
      expect(c!.status.failed).toBe(1);
      expect(c!.status.failing).toEqual([expect.objectContaining({ instanceUid: agent.instanceUid, message })]);
    }, WAIT);
  });
});
