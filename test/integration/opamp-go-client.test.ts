/**
 * Interop with the real opamp-go client library (github.com/open-telemetry/opamp-go, WebSocket
 * transport), through the test agent in test/agents/opamp-go-agent driven by
 * test/harness/go-agent.ts.
 *
 * One bridge for the file, with a 1 s heartbeat offer. Every test has its own instance uid,
 * its own Collector names and its own label values, so tests do not see each other's configs.
 */
import { randomUUID } from 'node:crypto';
import { skipUnlessOnCi } from '../harness/tools.js';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { parse as parseYaml } from 'yaml';
import type { AgentView, CollectorView } from '../../src/fleet/view-types.js';
import { buildGoAgent, goMissingReason, startGoAgent, type GoAgent, type GoAgentOptions } from '../harness/go-agent.js';
import { startTestBridge, type TestBridge } from '../harness/standalone.js';

const missing = goMissingReason();
const skip = skipUnlessOnCi('opamp-go-client.test', missing);

/** Generous for a loaded CI machine; every wait ends as soon as its condition holds. */
const WAIT = { timeout: 15_000, interval: 50 };
const EVENT_TIMEOUT_MS = 15_000;
const TEST_TIMEOUT_MS = 60_000;

/** What the agent advertises with its default flags (OpAMP AgentCapabilities bits). */
const EXPECTED_CAPABILITIES = {
  ReportsStatus: 0x1,
  AcceptsRemoteConfig: 0x2,
  ReportsEffectiveConfig: 0x4,
  AcceptsOpAMPConnectionSettings: 0x100,
  ReportsHealth: 0x800,
  ReportsRemoteConfig: 0x1000,
  ReportsHeartbeat: 0x2000,
} as const;

function collectorManifest(name: string, environment: string, exporterVerbosity?: string): string {
  const debug = exporterVerbosity ? `{ verbosity: ${exporterVerbosity} }` : '{}';
  return `apiVersion: fleetbridge.dev/v1alpha1
kind: Collector
metadata: { name: ${name}, namespace: default }
spec:
  selector: { matchLabels: { deployment.environment: ${environment} } }
  priority: 0
  config:
    receivers: { otlp: { protocols: { grpc: {} } } }
    exporters: { debug: ${debug} }
    service: { pipelines: { traces: { receivers: [otlp], exporters: [debug] } } }
`;
}

describe.skipIf(skip)('opamp-go client (WebSocket) against the standalone bridge', () => {
  let bridge: TestBridge;
  let binary: string;
  const running: GoAgent[] = [];
  const manifests: string[] = [];

  beforeAll(async () => {
    // The first build downloads Go modules and compiles opamp-go: allow minutes. Later runs reuse .cache/bin.
    const built = await buildGoAgent();
    if (!built) throw new Error(goMissingReason() ?? 'go agent was not built');
    binary = built;
    bridge = await startTestBridge({ heartbeatIntervalSeconds: 1 });
  }, 240_000);

  afterEach(async (ctx) => {
    if (ctx.task.result?.state === 'fail') {
      for (const a of running) console.error(`opamp-go agent ${a.instanceUid}:\n${a.describe()}`);
    }
    await Promise.all(running.splice(0).map((a) => a.stop()));
    await Promise.all(manifests.splice(0).map((f) => bridge.removeManifest(f)));
  });

  afterAll(async () => {
    await bridge?.stop();
  });

  /** A short unique suffix for names and label values. */
  const unique = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;

  async function startAgent(opts: Omit<GoAgentOptions, 'endpoint' | 'binary'> = {}): Promise<GoAgent> {
    const agent = await startGoAgent({
      endpoint: bridge.opampWsUrl,
      binary,
      instanceUid: randomUUID(),
      maxLifetime: '5m',
      ...opts,
    });
    running.push(agent);
    return agent;
  }

  async function agentView(uid: string): Promise<AgentView> {
    const view = await bridge.getAgent(uid);
    if (!view) throw new Error(`agent ${uid} is not in the API (yet)`);
    return view;
  }

  async function collectorView(name: string): Promise<CollectorView> {
    const { collectors } = await bridge.getCollectors();
    const view = collectors.find((c) => c.namespace === 'default' && c.name === name);
    if (!view) throw new Error(`Collector default/${name} is not in the API (yet)`);
    return view;
  }

  /** Writes a Collector manifest and waits until the bridge has loaded this version of it. */
  async function writeCollector(name: string, environment: string, exporterVerbosity?: string): Promise<CollectorView> {
    const file = `${name}.yaml`;
    const before = await bridge.getCollectors();
    const previousHash = before.collectors.find((c) => c.namespace === 'default' && c.name === name)?.configHash ?? null;
    await bridge.writeManifest(file, collectorManifest(name, environment, exporterVerbosity));
    if (!manifests.includes(file)) manifests.push(file);
    return vi.waitFor(async () => {
      const view = await collectorView(name);
      expect(view.valid, view.issues.join('; ')).toBe(true);
      expect(view.configHash).not.toBeNull();
      expect(view.configHash).not.toBe(previousHash);
      return view;
    }, WAIT);
  }

  /** Waits until the API has seen at least `count` more messages (heartbeats) from the agent, by lastSeen moving. */
  async function waitForHeartbeats(uid: string, count: number): Promise<void> {
    const seen = new Set<string>();
    await vi.waitFor(
      async () => {
        const view = await agentView(uid);
        seen.add(view.lastSeen);
        expect(seen.size, `distinct lastSeen values of ${uid}`).toBeGreaterThan(count);
      },
      { timeout: 5_000 + count * 3_000, interval: 100 },
    );
  }

  it('connects over WebSocket and shows its attributes as labels and its capabilities', async () => {
    const env = unique('go-connect');
    const agent = await startAgent({
      idAttrs: { 'service.name': 'go-connect-agent', 'service.instance.id': 'go-connect-1' },
      attrs: { 'deployment.environment': env, 'host.name': 'go-host-1' },
    });
    await agent.waitFor((e) => e.event === 'connected', { timeoutMs: EVENT_TIMEOUT_MS });

    const view = await vi.waitFor(async () => {
      const v = await agentView(agent.instanceUid);
      expect(v.connected).toBe(true);
      return v;
    }, WAIT);
    expect(view.instanceUid).toBe(agent.instanceUid);
    expect(view.transport).toBe('websocket');
    expect(view.labels).toMatchObject({
      'service.name': 'go-connect-agent',
      'service.instance.id': 'go-connect-1',
      'deployment.environment': env,
      'host.name': 'go-host-1',
    });
    expect(view.description?.identifying).toMatchObject({ 'service.name': 'go-connect-agent', 'service.instance.id': 'go-connect-1' });
    expect(view.description?.nonIdentifying).toMatchObject({ 'deployment.environment': env, 'host.name': 'go-host-1' });

    const expectedRaw = Object.values(EXPECTED_CAPABILITIES).reduce((a, b) => a | b, 0);
    expect(view.capabilities.raw).toBe(expectedRaw);
    const names = view.capabilities.names.map((n) => n.replace(/^AgentCapabilities_/, ''));
    expect(names.sort()).toEqual(Object.keys(EXPECTED_CAPABILITIES).sort());
  }, TEST_TIMEOUT_MS);

  it('accepts the heartbeat interval the bridge offers through OpAMP connection settings', async () => {
    const agent = await startAgent({ attrs: { 'deployment.environment': unique('go-settings') } });
    const offer = await agent.waitFor((e) => e.event === 'connection_settings', { timeoutMs: EVENT_TIMEOUT_MS });
    expect(offer.heartbeatIntervalSeconds).toBe(1);
    // The offer takes effect: messages keep arriving about every second with nothing to report.
    await waitForHeartbeats(agent.instanceUid, 2);
  }, TEST_TIMEOUT_MS);

  it('receives the config its labels select and reports APPLIED', async () => {
    const name = unique('go-cfg');
    const collector = await writeCollector(name, name);
    const agent = await startAgent({ attrs: { 'deployment.environment': name } });

    const rc = await agent.waitForRemoteConfig((e) => e.body !== null, { timeoutMs: EVENT_TIMEOUT_MS });
    expect(rc.keys).toEqual(['']);
    expect(rc.contentType).toBe('text/yaml');
    const body = parseYaml(rc.body!) as Record<string, any>;
    expect(Object.keys(body)).toEqual(expect.arrayContaining(['receivers', 'exporters', 'service']));
    expect(body.receivers).toHaveProperty('otlp');
    expect(body.exporters).toHaveProperty('debug');
    expect(body.service.pipelines.traces).toEqual({ receivers: ['otlp'], exporters: ['debug'] });

    await agent.waitForConfigStatus('APPLIED', rc.hash, { timeoutMs: EVENT_TIMEOUT_MS });
    const view = await vi.waitFor(async () => {
      const v = await agentView(agent.instanceUid);
      expect(v.remoteConfig.status).toBe('APPLIED');
      expect(v.remoteConfig.inSync).toBe(true);
      return v;
    }, WAIT);
    expect(view.remoteConfig.desiredHash).toBe(rc.hash);
    expect(view.remoteConfig.reportedHash).toBe(rc.hash);
    expect(view.remoteConfig.collectors).toEqual([`default/${name}`]);
    // The agent reported the applied config as its effective config.
    expect(view.effectiveConfig?.['']?.body).toBe(rc.body);
    expect(collector.configHash).not.toBeNull();

    await vi.waitFor(async () => {
      const c = await collectorView(name);
      expect(c.status).toMatchObject({ matched: 1, connected: 1, applied: 1, failed: 0 });
    }, WAIT);
  }, TEST_TIMEOUT_MS);

  it('shows a FAILED apply with its message, lists the agent as failing, and does not push that config again', async () => {
    const name = unique('go-fail');
    const message = 'exporters::debug: simulated apply failure';
    await writeCollector(name, name);
    const agent = await startAgent({ attrs: { 'deployment.environment': name }, heartbeatSeconds: 1 });
    const first = await agent.waitForRemoteConfig((e) => e.body !== null, { timeoutMs: EVENT_TIMEOUT_MS });
    await agent.waitForConfigStatus('APPLIED', first.hash, { timeoutMs: EVENT_TIMEOUT_MS });

    await agent.command({ cmd: 'mode', remoteConfig: 'fail', error: message });
    await writeCollector(name, name, 'detailed');

    const second = await agent.waitForRemoteConfig((e) => e.hash !== first.hash, { timeoutMs: EVENT_TIMEOUT_MS });
    expect(parseYaml(second.body!)).toMatchObject({ exporters: { debug: { verbosity: 'detailed' } } });
    await agent.waitForConfigStatus('FAILED', second.hash, { timeoutMs: EVENT_TIMEOUT_MS });

    const view = await vi.waitFor(async () => {
      const v = await agentView(agent.instanceUid);
      expect(v.remoteConfig.status).toBe('FAILED');
      return v;
    }, WAIT);
    expect(view.remoteConfig.errorMessage).toBe(message);
    expect(view.remoteConfig.reportedHash).toBe(second.hash);
    expect(view.remoteConfig.desiredHash).toBe(second.hash);
    expect(view.remoteConfig.inSync).toBe(false);

    await vi.waitFor(async () => {
      const c = await collectorView(name);
      expect(c.status.failed).toBe(1);
      expect(c.status.failing).toEqual([expect.objectContaining({ instanceUid: agent.instanceUid, message })]);
    }, WAIT);

    // A few heartbeats later the bridge still has not re-sent the config the agent rejected.
    await waitForHeartbeats(agent.instanceUid, 3);
    expect(agent.remoteConfigs().filter((e) => e.hash === second.hash)).toHaveLength(1);
    expect((await agentView(agent.instanceUid)).remoteConfig.status).toBe('FAILED');
  }, TEST_TIMEOUT_MS);

  it('shows a health change, including the nested component map', async () => {
    const agent = await startAgent({ attrs: { 'deployment.environment': unique('go-health') } });
    await vi.waitFor(async () => expect((await agentView(agent.instanceUid)).health?.healthy).toBe(true), WAIT);

    await agent.command({
      cmd: 'health',
      healthy: false,
      status: 'StatusRecoverableError',
      lastError: 'exporter otlp/backend: connection refused',
      components: {
        'pipeline:traces': {
          healthy: false,
          status: 'StatusRecoverableError',
          components: {
            'receiver:otlp': { healthy: true, status: 'StatusOK' },
            'exporter:otlp/backend': { healthy: false, status: 'StatusRecoverableError', lastError: 'connection refused' },
          },
        },
        'pipeline:metrics': { healthy: true, status: 'StatusOK' },
      },
    });

    const health = await vi.waitFor(async () => {
      const h = (await agentView(agent.instanceUid)).health;
      expect(h?.healthy).toBe(false);
      return h!;
    }, WAIT);
    expect(health).toMatchObject({
      healthy: false,
      status: 'StatusRecoverableError',
      lastError: 'exporter otlp/backend: connection refused',
      componentHealthMap: {
        'pipeline:traces': {
          healthy: false,
          status: 'StatusRecoverableError',
          componentHealthMap: {
            'receiver:otlp': { healthy: true, status: 'StatusOK', lastError: '' },
            'exporter:otlp/backend': { healthy: false, status: 'StatusRecoverableError', lastError: 'connection refused' },
          },
        },
        'pipeline:metrics': { healthy: true, status: 'StatusOK', componentHealthMap: {} },
      },
    });
    expect(BigInt(health.startTimeUnixNano)).toBeGreaterThan(0n);
    expect(BigInt(health.statusTimeUnixNano)).toBeGreaterThanOrEqual(BigInt(health.startTimeUnixNano));
  }, TEST_TIMEOUT_MS);

  it('shows the effective config the agent reports', async () => {
    const agent = await startAgent({ attrs: { 'deployment.environment': unique('go-effective') } });
    await agent.waitFor((e) => e.event === 'connected', { timeoutMs: EVENT_TIMEOUT_MS });
    const yamlText = 'receivers:\n  otlp:\n    protocols:\n      http: {}\nexporters:\n  debug: {}\n';

    await agent.command({ cmd: 'effective_config', body: yamlText });

    await vi.waitFor(async () => {
      const v = await agentView(agent.instanceUid);
      expect(v.effectiveConfig).toEqual({ '': { body: yamlText, contentType: 'text/yaml' } });
    }, WAIT);
  }, TEST_TIMEOUT_MS);

  it('asks a restarted client (sequence_num back to 0) for full state and keeps its description and health', async () => {
    // opamp-go has no public way to skip a sequence_num on a live connection (see the agent's
    // agent.go); a new client for the same instance uid starts again at 0, which is a gap.
    const env = unique('go-restart');
    const agent = await startAgent({ attrs: { 'deployment.environment': env } });
    await agent.command({ cmd: 'description', attrs: { 'deployment.environment': env, 'host.name': 'restart-host' } });
    await agent.command({ cmd: 'health', healthy: false, status: 'StatusPermanentError', lastError: 'disk full' });
    await vi.waitFor(async () => {
      const v = await agentView(agent.instanceUid);
      expect(v.labels['host.name']).toBe('restart-host');
      expect(v.health?.lastError).toBe('disk full');
    }, WAIT);

    const since = agent.events.length;
    await agent.command({ cmd: 'restart' });
    await agent.waitFor((e) => e.event === 'connected' && e.client === 2, { since, timeoutMs: EVENT_TIMEOUT_MS });
    // opamp-go answers ReportFullState by re-sending everything; the agent reports that request.
    await agent.waitFor((e) => e.event === 'full_state_requested' && e.client === 2, { since, timeoutMs: EVENT_TIMEOUT_MS });

    const view = await vi.waitFor(async () => {
      const v = await agentView(agent.instanceUid);
      expect(v.connected).toBe(true);
      return v;
    }, WAIT);
    expect(view.description?.nonIdentifying).toMatchObject({ 'deployment.environment': env, 'host.name': 'restart-host' });
    expect(view.labels).toMatchObject({ 'deployment.environment': env, 'host.name': 'restart-host' });
    expect(view.health).toMatchObject({ healthy: false, status: 'StatusPermanentError', lastError: 'disk full' });
  }, TEST_TIMEOUT_MS);

  it('shows the agent disconnected soon after it says goodbye', async () => {
    const agent = await startAgent({ attrs: { 'deployment.environment': unique('go-bye') } });
    await vi.waitFor(async () => expect((await agentView(agent.instanceUid)).connected).toBe(true), WAIT);

    await agent.command({ cmd: 'disconnect' });
    expect(await agent.exited).toBe(0);

    await vi.waitFor(async () => expect((await agentView(agent.instanceUid)).connected).toBe(false), WAIT);
  }, TEST_TIMEOUT_MS);

  it('sends no remote config to an agent whose labels match no Collector', async () => {
    const name = unique('go-nomatch');
    await writeCollector(name, `${name}-other`);
    const agent = await startAgent({ attrs: { 'deployment.environment': name }, heartbeatSeconds: 1 });

    await vi.waitFor(async () => {
      const v = await agentView(agent.instanceUid);
      expect(v.connected).toBe(true);
      expect(v.remoteConfig.desiredHash).toBeNull();
      expect(v.remoteConfig.collectors).toEqual([]);
    }, WAIT);
    await waitForHeartbeats(agent.instanceUid, 2);

    expect(agent.remoteConfigs()).toEqual([]);
    const view = await agentView(agent.instanceUid);
    expect(view.remoteConfig.status).toBe('UNSET');
    expect((await collectorView(name)).status.matched).toBe(0);
  }, TEST_TIMEOUT_MS);
});
