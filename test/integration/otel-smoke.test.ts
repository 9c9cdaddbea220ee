/**
 * Smoke test of the OpenTelemetry end-to-end harness (test/harness/otel) against the standalone
 * bridge: a real OpAMP Supervisor running a real collector gets its pipeline from a Collector
 * manifest, a manifest edit goes live without restarting the supervisor, a broken config is
 * reported FAILED, and a collector with only the opamp extension (read-only agent) is visible.
 *
 * Needs Go to build the binaries (tools/otel, cached in .cache/otel); pre-build with tools/otel/build.sh.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureOtelBinaries, otelMissingReason } from '../harness/otel/binaries.js';
import { freePort, readFileExporterLogs, sendOtlpLog } from '../harness/otel/otlp.js';
import { waitUntil } from '../harness/otel/processes.js';
import {
  startCollectorWithOpampExtension,
  startSupervisedCollector,
  type ExtensionCollector,
  type SupervisedCollector,
} from '../harness/otel/supervised-collector.js';
import { collectorYaml, startTestBridge, type TestBridge } from '../harness/standalone.js';
import { skipUnlessOnCi } from '../harness/tools.js';

const FILE = 'test/integration/otel-smoke.test.ts';
const skip = skipUnlessOnCi(FILE, otelMissingReason() === null ? null : 'go missing');

const GROUP = 'otel-smoke';

describe.skipIf(skip)('OpenTelemetry agents against the standalone bridge', () => {
  let workDir: string;
  let bridge: TestBridge;
  let agent: SupervisedCollector | undefined;
  let extAgent: ExtensionCollector | undefined;
  let otlpPort: number;
  const podName = `smoke-${randomUUID().slice(0, 8)}`;

  const pipeline = (marker: string, exporter: Record<string, unknown> = { file: { path: join(workDir, `logs-${marker}.jsonl`), flush_interval: '200ms' } }) => ({
    receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${otlpPort}` } } } },
    processors: {
      'attributes/marker': { actions: [{ key: 'test.marker', value: marker, action: 'insert' }] },
      batch: { timeout: '200ms' },
    },
    exporters: exporter,
    service: {
      pipelines: { logs: { receivers: ['otlp'], processors: ['attributes/marker', 'batch'], exporters: Object.keys(exporter) } },
    },
  });
  const manifest = (cfg: object) => collectorYaml('smoke', { 'test.group': GROUP }, cfg);

  const describeState = async (uid?: string) => {
    const a = uid ? await bridge.getAgent(uid) : undefined;
    const c = await bridge.getCollector('smoke');
    return [
      `agent view: ${JSON.stringify(a ? { ...a, effectiveConfig: a.effectiveConfig ? '(present)' : null } : a, null, 1)?.slice(0, 4000)}`,
      `collector view: ${JSON.stringify(c)}`,
      `supervisor output tail:\n${agent?.logs().slice(-5000) ?? '(none)'}`,
    ].join('\n');
  };

  /** Waits until the agent reports APPLIED for the bridge's current desired hash and is healthy. */
  const waitInSync = (uid: string, timeoutMs: number, notHash?: string | null) =>
    waitUntil(
      async () => {
        const a = await bridge.getAgent(uid);
        return a && a.remoteConfig.inSync && a.health?.healthy === true && a.remoteConfig.desiredHash !== notHash ? a : undefined;
      },
      { timeoutMs, intervalMs: 100, what: `agent ${uid} APPLIED and healthy`, describe: () => describeState(uid) },
    );

  const sendUntilExported = (marker: string, body: string, path: string) =>
    waitUntil(
      async () => {
        const found = readFileExporterLogs(path).find((r) => r.body === body);
        if (found) return found;
        await sendOtlpLog(otlpPort, { body, attributes: { 'test.case': 'otel-smoke' } }).catch(() => 0);
        await new Promise((r) => setTimeout(r, 700));
        return readFileExporterLogs(path).find((r) => r.body === body);
      },
      { timeoutMs: 20_000, intervalMs: 100, what: `log "${body}" in ${path} (marker ${marker})`, describe: () => describeState(agent?.instanceUid) },
    );

  beforeAll(async () => {
    const t0 = Date.now();
    const bins = await ensureOtelBinaries({ log: (l) => console.log(`[otel-binaries] ${l}`) });
    console.log(`[otel-smoke] binaries ready in ${Date.now() - t0} ms: ${JSON.stringify(bins)}`);
    workDir = await mkdtemp(join(tmpdir(), 'fleetbridge-otel-'));
    otlpPort = await freePort();
    bridge = await startTestBridge({ manifests: { 'c.yaml': manifest(pipeline('v1')) } });
  }, 30 * 60_000);

  afterAll(async () => {
    await Promise.allSettled([agent?.stop(), extAgent?.stop()]);
    await bridge?.stop();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  }, 60_000);

  it('a supervised collector gets the pushed pipeline (marker v1)', async () => {
    const t0 = Date.now();
    const instanceUid = randomUUID();
    agent = await startSupervisedCollector({
      endpoint: bridge.opampWsUrl,
      instanceUid,
      healthcheckPort: await freePort(),
      attributes: { 'k8s.pod.name': podName, 'k8s.namespace.name': 'default', 'k8s.pod.uid': randomUUID(), 'test.group': GROUP },
      otlpPort,
      workDir: join(workDir, 'supervised'),
    });
    const a = await waitInSync(agent.instanceUid, 60_000);
    console.log(`[otel-smoke] supervised collector ${agent.instanceUid} APPLIED+healthy ${Date.now() - t0} ms after start`);
    console.log(`[otel-smoke] capabilities: ${a.capabilities.raw} ${JSON.stringify(a.capabilities.names)}`);
    console.log(`[otel-smoke] description: ${JSON.stringify(a.description)}`);
    console.log(`[otel-smoke] health: ${JSON.stringify(a.health)}`);
    console.log(`[otel-smoke] effective config keys: ${JSON.stringify(Object.keys(a.effectiveConfig ?? {}))}; body:\n${Object.values(a.effectiveConfig ?? {})[0]?.body}`);

    expect(agent.instanceUid).toBe(instanceUid);
    expect(a.description?.identifying['service.instance.id']).toBe(instanceUid);
    expect(a.description?.nonIdentifying['k8s.pod.name']).toBe(podName);
    expect((await fetch(agent.healthUrl!, { signal: AbortSignal.timeout(5000) })).status).toBe(200);
    expect(a.capabilities.names).toEqual(expect.arrayContaining(['AcceptsRemoteConfig', 'ReportsRemoteConfig', 'ReportsEffectiveConfig', 'ReportsHealth']));
    expect(a.remoteConfig.collectors).toEqual(['default/smoke']);

    const rec = await sendUntilExported('v1', `hello-v1-${randomUUID()}`, join(workDir, 'logs-v1.jsonl'));
    expect(rec.attributes['test.marker']).toBe('v1');
    expect(rec.attributes['test.case']).toBe('otel-smoke');
  }, 120_000);

  it('a manifest edit (marker v2) goes live without restarting the supervisor', async () => {
    if (!agent) throw new Error('no agent (previous test failed)');
    const before = (await bridge.getAgent(agent.instanceUid))!;
    const collectorPidBefore = agent.collectorPid();
    const t0 = Date.now();
    await bridge.writeManifest('c.yaml', manifest(pipeline('v2')));
    const a = await waitInSync(agent.instanceUid, 60_000, before.remoteConfig.desiredHash);
    const editToApplied = Date.now() - t0;
    console.log(`[otel-smoke] manifest edit -> APPLIED (v2): ${editToApplied} ms (config_apply_timeout 3 s is part of it)`);
    const collectorPidAfter = agent.collectorPid();
    console.log(`[otel-smoke] collector pid ${collectorPidBefore} -> ${collectorPidAfter}; supervisor pid ${agent.pid} unchanged`);
    expect(a.remoteConfig.desiredHash).not.toBe(before.remoteConfig.desiredHash);
    expect(process.kill(agent.pid, 0)).toBe(true);

    const rec = await sendUntilExported('v2', `hello-v2-${randomUUID()}`, join(workDir, 'logs-v2.jsonl'));
    expect(rec.attributes['test.marker']).toBe('v2');
  }, 120_000);

  it('a collector with only the opamp extension is visible and not counted as failed', async () => {
    extAgent = await startCollectorWithOpampExtension({
      endpoint: bridge.opampWsUrl,
      attributes: { 'k8s.pod.name': `${podName}-ro`, 'test.group': GROUP },
      workDir: join(workDir, 'extension-only'),
    });
    const uid = extAgent.instanceUid;
    const a = await waitUntil(
      async () => {
        const v = await bridge.getAgent(uid);
        return v && v.description && v.health && v.effectiveConfig ? v : undefined;
      },
      { timeoutMs: 30_000, what: `extension-only agent ${uid} with description, health and effective config`, describe: async () => `${await describeState(uid)}\ncollector output:\n${extAgent?.logs().slice(-4000)}` },
    );
    console.log(`[otel-smoke] extension-only capabilities: ${a.capabilities.raw} ${JSON.stringify(a.capabilities.names)}`);
    console.log(`[otel-smoke] extension-only description: ${JSON.stringify(a.description)}`);
    console.log(`[otel-smoke] extension-only health: ${JSON.stringify(a.health)}`);
    console.log(`[otel-smoke] extension-only remoteConfig: ${JSON.stringify(a.remoteConfig)}`);
    expect(a.capabilities.names).not.toContain('AcceptsRemoteConfig');
    expect(a.description?.nonIdentifying['k8s.pod.name']).toBe(`${podName}-ro`);
    expect(a.health?.healthy).toBe(true);
    const col = (await bridge.getCollector('smoke'))!;
    console.log(`[otel-smoke] collector status with both agents: ${JSON.stringify(col.status)}`);
    expect(col.status.matched).toBe(2);
    expect(col.status.failed).toBe(0);
    expect(col.status.failing.map((f) => f.instanceUid)).not.toContain(uid);
  }, 60_000);

  it('a config with an unknown exporter type is reported FAILED, and a good one recovers', async () => {
    if (!agent) throw new Error('no agent (previous test failed)');
    const uid = agent.instanceUid;
    const before = (await bridge.getAgent(uid))!;
    const t0 = Date.now();
    await bridge.writeManifest('c.yaml', manifest(pipeline('v3', { 'doesnotexist/x': {} })));
    const failed = await waitUntil(
      async () => {
        const v = await bridge.getAgent(uid);
        return v && v.remoteConfig.desiredHash !== before.remoteConfig.desiredHash && v.remoteConfig.reportedHash === v.remoteConfig.desiredHash && v.remoteConfig.status === 'FAILED' ? v : undefined;
      },
      { timeoutMs: 60_000, what: 'FAILED for the broken config', describe: () => describeState(uid) },
    );
    console.log(`[otel-smoke] broken config -> FAILED in ${Date.now() - t0} ms: ${JSON.stringify(failed.remoteConfig)}`);
    console.log(`[otel-smoke] health while failed: ${JSON.stringify(failed.health)}`);
    const col = (await bridge.getCollector('smoke'))!;
    console.log(`[otel-smoke] collector status: ${JSON.stringify(col.status)}`);
    expect(col.status.failed).toBe(1);
    expect(col.status.failing.map((f) => f.instanceUid)).toEqual([uid]);

    const t1 = Date.now();
    await bridge.writeManifest('c.yaml', manifest(pipeline('v4')));
    await waitInSync(uid, 60_000, failed.remoteConfig.desiredHash);
    console.log(`[otel-smoke] good config after FAILED -> APPLIED in ${Date.now() - t1} ms`);
    const rec = await sendUntilExported('v4', `hello-v4-${randomUUID()}`, join(workDir, 'logs-v4.jsonl'));
    expect(rec.attributes['test.marker']).toBe('v4');
  }, 150_000);
});
