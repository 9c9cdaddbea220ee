/**
 * Available components against the real OpAMP Supervisor and collector: the supervisor reports
 * the collector's components (capabilities.reports_available_components), the bridge asks for the
 * full list, and a Collector whose config names a component type our collector build lacks (it
 * has the debug, file and nop exporters; no otlphttp) is not pushed: the agent shows failed with
 * reason MissingComponents. Fixing the config pushes it and the agent applies it.
 *
 * Needs Go to build the binaries (tools/otel, cached in .cache/otel); pre-build with tools/otel/build.sh.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureOtelBinaries, otelMissingReason } from '../harness/otel/binaries.js';
import { freePort } from '../harness/otel/otlp.js';
import { waitUntil } from '../harness/otel/processes.js';
import { startSupervisedCollector, type SupervisedCollector } from '../harness/otel/supervised-collector.js';
import { collectorYaml, startTestBridge, type TestBridge } from '../harness/standalone.js';
import { skipUnlessOnCi } from '../harness/tools.js';

const FILE = 'test/integration/available-components.test.ts';
const skip = skipUnlessOnCi(FILE, otelMissingReason() === null ? null : 'go missing');

const GROUP = 'available-components';

describe.skipIf(skip)('available components: the real Supervisor reports them, and configs it cannot run are not pushed', () => {
  let workDir: string;
  let bridge: TestBridge;
  let agent: SupervisedCollector | undefined;
  let otlpPort: number;

  const config = (exporters: Record<string, unknown>) => ({
    receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${otlpPort}` } } } },
    processors: { batch: { timeout: '200ms' } },
    exporters,
    service: { pipelines: { logs: { receivers: ['otlp'], processors: ['batch'], exporters: Object.keys(exporters) } } },
  });
  const manifest = (cfg: object) => collectorYaml('components', { 'test.group': GROUP }, cfg);

  const describeState = async (uid?: string) => {
    const a = uid ? await bridge.getAgent(uid) : undefined;
    const c = await bridge.getCollector('components');
    return [
      `agent view: ${JSON.stringify(a ? { ...a, effectiveConfig: a.effectiveConfig ? '(present)' : null } : a, null, 1)?.slice(0, 6000)}`,
      `collector view: ${JSON.stringify(c)}`,
      `supervisor output tail:\n${agent?.logs().slice(-5000) ?? '(none)'}`,
    ].join('\n');
  };

  beforeAll(async () => {
    const t0 = Date.now();
    const bins = await ensureOtelBinaries({ log: (l) => console.log(`[otel-binaries] ${l}`) });
    console.log(`[available-components] binaries ready in ${Date.now() - t0} ms: ${JSON.stringify(bins)}`);
    workDir = await mkdtemp(join(tmpdir(), 'fleetbridge-components-'));
    otlpPort = await freePort();
    bridge = await startTestBridge({ manifests: { 'c.yaml': manifest(config({ otlphttp: { endpoint: 'http://127.0.0.1:9' } })) } });
  }, 30 * 60_000);

  afterAll(async () => {
    await agent?.stop();
    await bridge?.stop();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  }, 60_000);

  it('a config naming an exporter the collector lacks is not pushed; the agent is failed with MissingComponents', async () => {
    const t0 = Date.now();
    agent = await startSupervisedCollector({
      endpoint: bridge.opampWsUrl,
      instanceUid: randomUUID(),
      attributes: { 'host.name': 'components-1', 'test.group': GROUP },
      otlpPort,
      workDir: join(workDir, 'supervised'),
      extraConfig: { capabilities: { reports_available_components: true } },
    });
    const uid = agent.instanceUid;
    const a = await waitUntil(
      async () => {
        const v = await bridge.getAgent(uid);
        return v && v.remoteConfig.missingComponents.length > 0 ? v : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 100, what: `agent ${uid} judged as lacking components`, describe: () => describeState(uid) },
    );
    console.log(`[available-components] judged ${Date.now() - t0} ms after start; capabilities ${a.capabilities.raw} ${JSON.stringify(a.capabilities.names)}`);
    console.log(`[available-components] available components as reported: ${JSON.stringify(a.availableComponents)}`);

    expect(a.capabilities.names).toContain('ReportsAvailableComponents');
    const ac = a.availableComponents!;
    expect(ac.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(Object.keys(ac.components).sort()).toEqual(['connectors', 'exporters', 'extensions', 'processors', 'receivers']);
    expect(Object.keys(ac.components['exporters']!.components).sort()).toEqual(['debug', 'file', 'nop']);
    expect(Object.keys(ac.components['receivers']!.components)).toEqual(expect.arrayContaining(['otlp', 'nop']));
    expect(Object.keys(ac.components['processors']!.components)).toContain('batch');
    expect(Object.keys(ac.components['extensions']!.components)).toContain('opamp');
    expect(ac.components['exporters']!.components['debug']!.metadata['code.namespace']).toMatch(/debugexporter/);

    expect(a.remoteConfig.missingComponents).toEqual(['exporters/otlphttp']);
    expect(a.remoteConfig.desiredHash).not.toBeNull();
    expect(a.remoteConfig.reportedHash).not.toBe(a.remoteConfig.desiredHash);
    expect(a.remoteConfig.inSync).toBe(false);

    const col = (await bridge.getCollector('components'))!;
    console.log(`[available-components] collector status: ${JSON.stringify(col.status)}`);
    expect(col.valid).toBe(true);
    expect(col.status).toMatchObject({ matched: 1, failed: 1, applied: 0, applying: 0 });
    expect(col.status.failing).toEqual([{ instanceUid: uid, name: 'components-1', reason: 'MissingComponents', message: 'the agent lacks exporters/otlphttp' }]);

    // Never sent: the bridge logged its decision not to send, no push was logged for it, and the supervisor never wrote it.
    await waitUntil(() => bridge.logs.some((l) => l['msg'] === 'Remote config not sent: the agent lacks components it uses' && l['instanceUid'] === uid), {
      timeoutMs: 10_000,
      what: `the bridge's decision not to send to ${uid}`,
      describe: () => describeState(uid),
    });
    const pushes = bridge.logs.filter((l) => l['msg'] === 'Sent remote config' && l['instanceUid'] === uid);
    expect(pushes).toEqual([]);
    expect(bridge.logs.some((l) => l['msg'] === 'Remote config not sent: the agent lacks components it uses' && l['instanceUid'] === uid)).toBe(true);
    expect(agent.effectiveConfigFile() ?? '').not.toContain('otlphttp');
    expect((await bridge.getAgent(uid))!.remoteConfig.missingComponents).toEqual(['exporters/otlphttp']);
  }, 120_000);

  it('fixing the config (debug instead of otlphttp) pushes it and the agent applies it', async () => {
    if (!agent) throw new Error('no agent (previous test failed)');
    const uid = agent.instanceUid;
    const before = (await bridge.getAgent(uid))!;
    const t0 = Date.now();
    await bridge.writeManifest('c.yaml', manifest(config({ debug: {} })));
    const a = await waitUntil(
      async () => {
        const v = await bridge.getAgent(uid);
        return v && v.remoteConfig.desiredHash !== before.remoteConfig.desiredHash && v.remoteConfig.inSync && v.health?.healthy === true ? v : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 100, what: `agent ${uid} APPLIED the fixed config and healthy`, describe: () => describeState(uid) },
    );
    console.log(`[available-components] fixed config -> APPLIED in ${Date.now() - t0} ms`);
    expect(a.remoteConfig.missingComponents).toEqual([]);
    expect(a.remoteConfig.status).toBe('APPLIED');
    expect(agent.effectiveConfigFile() ?? '').toContain('debug');
    const col = (await bridge.getCollector('components'))!;
    expect(col.status).toMatchObject({ matched: 1, failed: 0, applied: 1 });
    // (`debug: {}`, not `verbosity: basic`: the collector leaves a zero-valued `omitempty` field out of
    // its effective config, which the drift check would report as missing.)
    expect(col.status.failing).toEqual([]);
  }, 120_000);
});
