/**
 * Standalone mode's watched manifest folder, end to end over a real WebSocket agent.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parse } from 'yaml';
import { collectorYaml, startTestBridge, type TestBridge } from '../harness/standalone.js';
import { RawWsAgent } from '../harness/raw-agent.js';
import { AgentCapabilities as C } from '../../src/opamp/messages.js';

const CAPS = C.ReportsStatus | C.AcceptsRemoteConfig | C.ReportsRemoteConfig;
let bridge: TestBridge;

beforeAll(async () => {
  bridge = await startTestBridge();
});
afterAll(async () => {
  await bridge?.stop();
});

async function agentWith(attrs: Record<string, string>): Promise<RawWsAgent> {
  const a = await RawWsAgent.connect(bridge.opampWsUrl);
  a.send({ capabilities: CAPS, agentDescription: { nonIdentifyingAttributes: Object.entries(attrs).map(([key, v]) => ({ key, value: { stringValue: v } })) }, remoteConfigStatus: {} });
  await a.waitForMessages(1);
  return a;
}

/** Reports APPLIED for the latest config it got, as a real agent would. */
function applyLatest(a: RawWsAgent): string {
  const last = [...a.received].reverse().find((m) => m.remoteConfig)!;
  a.send({ capabilities: CAPS, remoteConfigStatus: { lastRemoteConfigHash: last.remoteConfig!.configHash, status: 1 } });
  return Buffer.from(last.remoteConfig!.configHash!).toString('hex');
}

const configs = (a: RawWsAgent) => a.received.filter((m) => m.remoteConfig).map((m) => parse(Buffer.from(m.remoteConfig!.config!.configMap!['']!.body!).toString()) as Record<string, any>);

describe('standalone manifest folder', () => {
  it('pushes a new file, an edit and a higher-priority overlay within a second, and reports counts', async () => {
    const a = await agentWith({ role: 'watch', 'host.name': 'w1' });
    expect(configs(a)).toHaveLength(0);
    await bridge.writeManifest('watch.yaml', collectorYaml('watch', { role: 'watch' }, { exporters: { otlp: { endpoint: 'a:4317' } } }));
    await vi.waitFor(() => expect(configs(a)).toHaveLength(1), { timeout: 3000, interval: 50 });
    applyLatest(a);
    await bridge.writeManifest('watch.yaml', collectorYaml('watch', { role: 'watch' }, { exporters: { otlp: { endpoint: 'b:4317' } } }));
    await vi.waitFor(() => expect(configs(a)).toHaveLength(2), { timeout: 3000, interval: 50 });
    expect(configs(a)[1]!.exporters.otlp.endpoint).toBe('b:4317');
    applyLatest(a);
    await bridge.writeManifest('overlay.yaml', collectorYaml('watch-overlay', { 'host.name': 'w1' }, { exporters: { otlp: { endpoint: 'override:4317' }, debug: {} } }, { priority: 5 }));
    await vi.waitFor(() => expect(configs(a)).toHaveLength(3), { timeout: 3000, interval: 50 });
    expect(configs(a)[2]!.exporters).toEqual({ otlp: { endpoint: 'override:4317' }, debug: {} });
    const hash = applyLatest(a);
    await vi.waitFor(async () => {
      const w = await bridge.getCollector('watch');
      expect(w!.status).toMatchObject({ matched: 1, connected: 1, applied: 1 });
      expect((await bridge.getAgent(a.uidString))!.remoteConfig).toMatchObject({ collectors: ['default/watch', 'default/watch-overlay'], desiredHash: hash, inSync: true });
    }, { timeout: 3000 });
    a.close();
  });

  it('reports a bad file with its path and problem, keeps the last good version, and changes nothing else', async () => {
    await bridge.writeManifest('keep.yaml', collectorYaml('keep', { role: 'keep' }, { exporters: { debug: {} } }));
    const a = await agentWith({ role: 'keep' });
    await vi.waitFor(() => expect(configs(a)).toHaveLength(1), { timeout: 3000, interval: 50 });
    applyLatest(a);
    await bridge.writeManifest('keep.yaml', 'apiVersion: fleetbridge.dev/v1alpha1\nkind: Collector\nmetadata: { name: keep\nspec: {}\n');
    await bridge.writeManifest('broken-new.yaml', collectorYaml('broken', { role: 'x' }, { exporters: { debug: {} } }).replace('priority: 0', 'priority: high'));
    await vi.waitFor(async () => {
      const { invalidFiles, collectors } = await bridge.getCollectors();
      expect(invalidFiles.map((f) => f.path).sort()).toEqual(['broken-new.yaml', 'keep.yaml']);
      expect(invalidFiles.find((f) => f.path === 'keep.yaml')!.issues[0]).toMatch(/^keep\.yaml: invalid YAML/);
      expect(invalidFiles.find((f) => f.path === 'broken-new.yaml')!.issues[0]).toMatch(/spec\.priority: Invalid input: expected number/);
      // The last good "keep" is still in effect; the never-good "broken" is not.
      expect(collectors.map((c) => c.name)).toContain('keep');
      expect(collectors.map((c) => c.name)).not.toContain('broken');
    }, { timeout: 3000 });
    expect(configs(a)).toHaveLength(1);
    expect(await bridge.metricsText()).toMatch(/fleetbridge_manifest_invalid_files 2/);
    expect(bridge.logs.some((l) => l['msg'] === 'Manifest file is invalid; it was skipped and nothing else changed' && l['file'] === 'keep.yaml')).toBe(true);
    // Fixing the file recovers.
    await bridge.writeManifest('keep.yaml', collectorYaml('keep', { role: 'keep' }, { exporters: { debug: { verbosity: 'detailed' } } }));
    await vi.waitFor(() => expect(configs(a)).toHaveLength(2), { timeout: 3000, interval: 50 });
    await bridge.removeManifest('broken-new.yaml');
    await vi.waitFor(async () => expect((await bridge.getCollectors()).invalidFiles).toEqual([]), { timeout: 3000 });
    a.close();
  });

  it('sends nothing when a deleted Collector leaves an agent unmatched, and shows that in the API', async () => {
    await bridge.writeManifest('gone.yaml', collectorYaml('gone', { role: 'gone' }, { exporters: { debug: {} } }));
    const a = await agentWith({ role: 'gone' });
    await vi.waitFor(() => expect(configs(a)).toHaveLength(1), { timeout: 3000, interval: 50 });
    applyLatest(a);
    await bridge.removeManifest('gone.yaml');
    await vi.waitFor(async () => expect((await bridge.getAgent(a.uidString))!.remoteConfig.desiredHash).toBeNull(), { timeout: 3000 });
    // Still served, and no (empty) config was pushed: an empty map would stop a supervised collector.
    a.send({ capabilities: CAPS });
    const m = await a.waitForMessages(a.received.length + 1);
    expect(m.remoteConfig).toBeNull();
    expect(configs(a)).toHaveLength(1);
    a.close();
  });

  it('holds back a merged config that names undefined components and reports it on the Collector', async () => {
    await bridge.writeManifest('dangling.yaml', collectorYaml('dangling', { role: 'dangling' }, { receivers: { otlp: {} }, service: { pipelines: { traces: { receivers: ['otlp'], exporters: ['otlp/missing'] } } } }));
    const a = await agentWith({ role: 'dangling' });
    await vi.waitFor(async () => {
      const c = await bridge.getCollector('dangling');
      expect(c!.valid).toBe(false);
      expect(c!.issues[0]).toMatch(/pipeline traces names exporter "otlp\/missing", which is not defined/);
      expect(c!.status.failed).toBe(1);
    }, { timeout: 3000 });
    expect(configs(a)).toHaveLength(0);
    a.close();
  });

  it('reports the same Collector defined in two files', async () => {
    await bridge.writeManifest('dup-a.yaml', collectorYaml('dup', { role: 'dup' }, { exporters: { debug: {} } }));
    await bridge.writeManifest('dup-b.yaml', collectorYaml('dup', { role: 'dup' }, { exporters: { debug: {} } }));
    await vi.waitFor(async () => {
      const f = (await bridge.getCollectors()).invalidFiles.find((x) => x.path === 'dup-b.yaml');
      expect(f!.issues[0]).toMatch(/Collector default\/dup is also defined in dup-a\.yaml/);
    }, { timeout: 3000 });
  });

  it('notices every edit made by renaming a file into place through the watcher alone (no rescan), and a file in a new folder', async () => {
    const quiet = await startTestBridge({ watchRescanMs: 3_600_000 });
    try {
      const hash = async () => (await quiet.getCollector('renamed'))?.configHash;
      for (const v of ['basic', 'detailed', 'normal', 'basic', 'detailed']) {
        const before = await hash();
        await quiet.writeManifest('renamed.yaml', collectorYaml('renamed', { role: 'renamed' }, { exporters: { debug: { verbosity: v } } }));
        await vi.waitFor(async () => expect(await hash()).not.toBe(before), { timeout: 5000, interval: 20 });
        await new Promise((r) => setTimeout(r, 300));
      }
      const { mkdir, writeFile } = await import('node:fs/promises');
      const { join } = await import('node:path');
      await mkdir(join(quiet.manifestsDir, 'team'));
      await new Promise((r) => setTimeout(r, 300));
      await writeFile(join(quiet.manifestsDir, 'team', 'nested.yaml'), collectorYaml('nested', { role: 'nested' }, { exporters: { debug: {} } }));
      await vi.waitFor(async () => expect(await quiet.getCollector('nested')).toBeDefined(), { timeout: 5000, interval: 20 });
    } finally {
      await quiet.stop();
    }
  });
});
