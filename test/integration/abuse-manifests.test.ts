/**
 * The manifest folder under abuse, against the real bridge process (`fleetbridge standalone`):
 * authentication fails closed (an invalid or unreadable OpAMPBridge stops the start, and an invalid
 * edit keeps the settings it started with), symlinks are followed inside the folder only (a
 * ConfigMap volume and its atomic `..data` swap), hostile files (an alias bomb, an oversized file)
 * are reported one by one while other edits apply and agents stay answered, and bearer tokens are
 * bound to the namespace of the Secret they are declared in.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import {
  bearerAuthManifests,
  bearerHeaders,
  buildBridge,
  collectorYaml,
  metricValue,
  opampBridgeYaml,
  secretYaml,
  startBridgeProcess,
  waitUntil,
  type BridgeProcess,
} from '../harness/bridge-process.js';
import { startBystander } from '../harness/bystander.js';
import { RawWsAgent } from '../harness/raw-agent.js';
import { aliasBomb, manyAliases } from '../harness/hostile-yaml.js';

const WAIT = { timeoutMs: 20_000, intervalMs: 100 };
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function bridgeProcess(manifests: Record<string, string>, extraArgs: string[] = []): Promise<BridgeProcess> {
  const b = await startBridgeProcess({ manifests, extraArgs });
  cleanups.push(() => b.stop());
  return b;
}
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'fleetbridge-abuse-'));
  cleanups.push(() => rm(d, { recursive: true, force: true }));
  return d;
}

/** Runs `fleetbridge standalone` on `dir` expecting it not to start: its exit code and stderr. */
async function failedStart(dir: string): Promise<{ code: number | null; stderr: string }> {
  const main = await buildBridge();
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [main, 'standalone', '--manifests', dir, '--host', '127.0.0.1', '--opamp-port', '0', '--http-port', '0'],
      { timeout: 30_000, env: { ...process.env, FLEETBRIDGE_LOG_FORMAT: 'json' } },
      (err, _stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr }),
    );
  });
}

async function agent(url: string, attrs: Record<string, string>, headers: Record<string, string> = {}): Promise<RawWsAgent> {
  const a = await RawWsAgent.connect(url, undefined, headers);
  cleanups.push(async () => a.close());
  a.send({ capabilities: 1 | 2 | 4, agentDescription: { nonIdentifyingAttributes: Object.entries(attrs).map(([key, v]) => ({ key, value: { stringValue: v } })) }, remoteConfigStatus: {} });
  await a.waitForMessages(1, 10_000);
  return a;
}
const configs = (a: RawWsAgent) => a.received.filter((m) => m.remoteConfig).map((m) => Buffer.from(m.remoteConfig!.config!.configMap!['']!.body!).toString());
const post = (url: string, headers: Record<string, string> = {}) => fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/x-protobuf', ...headers }, body: new Uint8Array([0]) });

/** A legitimate Collector of nearly the largest size read (1.5 MiB): many processors. */
function heavyCollector(bytes = 1_500_000): string {
  let s = 'apiVersion: fleetbridge.dev/v1alpha1\nkind: Collector\nmetadata: { name: heavy }\nspec:\n  selector: { matchLabels: { role: heavy } }\n  config:\n    processors:\n';
  for (let i = 0; s.length < bytes; i++) s += `      attributes/p${i}: { actions: [ { key: k${i}, value: "v-${i}-abcdefgh", action: upsert } ] }\n`;
  return s;
}

describe('authentication fails closed', () => {
  it('an invalid OpAMPBridge, or one behind a symlink out of the folder, stops the start naming file and field', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'bridge.yaml'), opampBridgeYaml({ auth: { mode: 'bearerToken', bearerToken: { secretName: 't' } } }).replace('spec: {', 'spec: { heartbeatIntervalSeconds: 10s, '));
    await writeFile(join(dir, 'all.yaml'), collectorYaml('all', {}, { exporters: { debug: {} } }));
    const r = await failedStart(dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^fleetbridge: the OpAMPBridge manifest in .* is invalid, so the bridge does not start .*: bridge\.yaml: OpAMPBridge: spec\.heartbeatIntervalSeconds: Invalid input: expected number/m);

    const outside = await tempDir();
    await writeFile(join(outside, 'bridge.yaml'), opampBridgeYaml({ auth: { mode: 'bearerToken', bearerToken: { secretName: 't' } } }));
    await unlink(join(dir, 'bridge.yaml'));
    await symlink(join(outside, 'bridge.yaml'), join(dir, 'bridge.yaml'));
    const r2 = await failedStart(dir);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/no valid OpAMPBridge was found .*bridge\.yaml: a symlink that leads outside the manifest folder .*refused \(FB_MANIFEST_SYMLINK\)/);
  });

  it('an invalid edit at runtime keeps the settings it started with: an agent without a token is still refused', async () => {
    const token = 'tok-runtime-0123456789';
    const b = await bridgeProcess({ ...bearerAuthManifests(token), 'all.yaml': collectorYaml('all', {}, { exporters: { debug: {} } }) });
    expect((await post(b.opampHttpUrl)).status).toBe(401);
    await b.writeManifest('bridge.yaml', opampBridgeYaml({ heartbeatIntervalSeconds: '10s', auth: { mode: 'none' } }));
    await waitUntil(() => b.logs.find((l) => l['msg'] === 'The OpAMPBridge manifest is invalid; the bridge keeps serving with its last valid settings (auth, TLS, endpoint, limits), never with none or defaults'), { ...WAIT, describe: () => b.describe() });
    expect((await post(b.opampHttpUrl)).status).toBe(401);
    const a = await agent(b.opampWsUrl, {}, bearerHeaders(token));
    await waitUntil(() => configs(a).length === 1, WAIT);
    // Removing the bridge file at runtime does not turn authentication off either.
    await b.removeManifest('bridge.yaml');
    await waitUntil(() => b.logs.find((l) => typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('The OpAMPBridge manifest changed;')), WAIT);
    expect((await post(b.opampHttpUrl)).status).toBe(401);
  });

  it('without an OpAMPBridge, listens on loopback only whatever --host says, and says namespaces are no boundary', async () => {
    const b = await bridgeProcess(
      { 'a.yaml': collectorYaml('a', {}, { exporters: { debug: {} } }), 'b.yaml': collectorYaml('b', {}, { exporters: { debug: {} } }, { namespace: 'team-b' }) },
      ['--host', '0.0.0.0'],
    );
    expect(b.logs).toContainEqual(expect.objectContaining({ level: 40, requestedHost: '0.0.0.0', host: '127.0.0.1', msg: expect.stringMatching(/^No OpAMPBridge manifest in the folder: .*loopback only \(127\.0\.0\.1\)/) }));
    expect(b.logs).toContainEqual(expect.objectContaining({ level: 40, namespaces: ['default', 'team-b'], msg: expect.stringMatching(/^Namespaces are not a boundary/) }));
  });
});

describe('symlinks', () => {
  it('reads a ConfigMap-style folder of symlinks (the OpAMPBridge included), follows its ..data swap, and refuses a symlink out of the folder', async () => {
    const [t1, t2] = ['tok-cm-one-0123456789', 'tok-cm-two-0123456789'];
    const b = await bridgeProcess({ ...bearerAuthManifests(t1) });
    const dir = b.manifestsDir;
    const version = async (name: string, token: string, collector: string) => {
      await mkdir(join(dir, name));
      await writeFile(join(dir, name, 'bridge.yaml'), bearerAuthManifests(token)['bridge.yaml']!);
      await writeFile(join(dir, name, 'agent-tokens.yaml'), bearerAuthManifests(token)['agent-tokens.yaml']!);
      await writeFile(join(dir, name, 'collector.yaml'), collectorYaml(collector, {}, { exporters: { debug: { verbosity: collector === 'cm-one' ? 'basic' : 'detailed' } } }));
    };
    // What the kubelet makes of a ConfigMap volume: timestamped folder, ..data, and one symlink per key.
    await version('..2024_01_01_00_00_00.1', t1, 'cm-one');
    await symlink('..2024_01_01_00_00_00.1', join(dir, '..data'));
    for (const f of ['bridge.yaml', 'agent-tokens.yaml']) await unlink(join(dir, f));
    for (const f of ['bridge.yaml', 'agent-tokens.yaml', 'collector.yaml']) await symlink(`..data/${f}`, join(dir, f));
    await b.restart('SIGTERM');
    expect((await post(b.opampHttpUrl)).status).toBe(401);
    const a = await agent(b.opampWsUrl, {}, bearerHeaders(t1));
    await waitUntil(() => configs(a).some((c) => c.includes('basic')), WAIT);

    // The atomic swap: a new folder, a new ..data link renamed over the old one, the old folder removed.
    await version('..2024_01_01_00_01_00.2', t2, 'cm-two');
    await symlink('..2024_01_01_00_01_00.2', join(dir, '..data_tmp'));
    await rename(join(dir, '..data_tmp'), join(dir, '..data'));
    await rm(join(dir, '..2024_01_01_00_00_00.1'), { recursive: true });
    await waitUntil(async () => (await b.getCollector('cm-two')) && !(await b.getCollector('cm-one')), { ...WAIT, describe: () => b.describe() });
    expect((await post(b.opampHttpUrl, bearerHeaders(t1))).status).toBe(401);
    const a2 = await agent(b.opampWsUrl, {}, bearerHeaders(t2));
    await waitUntil(() => configs(a2).some((c) => c.includes('detailed')), WAIT);

    const outside = await tempDir();
    await writeFile(join(outside, 'stolen.yaml'), collectorYaml('stolen', {}, { exporters: { debug: {} } }));
    await symlink(join(outside, 'stolen.yaml'), join(dir, 'stolen.yaml'));
    const f = await waitUntil(async () => (await b.getCollectors()).invalidFiles.find((x) => x.path === 'stolen.yaml'), WAIT);
    expect(f.issues).toEqual([`stolen.yaml: a symlink that leads outside the manifest folder (to ${join(outside, 'stolen.yaml')}); refused (FB_MANIFEST_SYMLINK)`]);
    expect(await b.getCollector('stolen')).toBeUndefined();
    await waitUntil(() => b.logs.find((l) => l['file'] === 'stolen.yaml' && l['msg'] === 'Manifest file is invalid; it was skipped and nothing else changed'), WAIT);
  });
});

describe('hostile files', () => {
  it('reports an alias bomb and an oversized file, reads a file using an anchor 101 times and a 1.5 MiB one, applies other edits, and keeps agents answered', async () => {
    const token = 'tok-hostile-0123456789';
    const b = await bridgeProcess({ ...bearerAuthManifests(token), 'edit.yaml': collectorYaml('edit', { role: 'edit' }, { exporters: { debug: { verbosity: 'basic' } } }) });
    const bystander = await startBystander(b.opampWsUrl, { headers: bearerHeaders(token) });
    const hashBefore = (await b.getCollector('edit'))!.configHash;
    await b.writeManifest('bomb.yaml', aliasBomb());
    await b.writeManifest('big.yaml', `# ${'x'.repeat(50 * 1024 * 1024)}\n${collectorYaml('big', {}, { exporters: { debug: {} } })}`);
    await b.writeManifest('anchors.yaml', manyAliases());
    await b.writeManifest('heavy.yaml', heavyCollector());
    await b.writeManifest('edit.yaml', collectorYaml('edit', { role: 'edit' }, { exporters: { debug: { verbosity: 'detailed' } } }));
    await waitUntil(async () => (await b.getCollector('edit'))!.configHash !== hashBefore && (await b.getCollector('heavy')) && (await b.getCollector('anchors')), { ...WAIT, timeoutMs: 60_000, describe: () => b.describe() });
    const { invalidFiles } = await b.getCollectors();
    expect(invalidFiles.map((f) => f.path).sort()).toEqual(['big.yaml', 'bomb.yaml']);
    expect(invalidFiles.find((f) => f.path === 'bomb.yaml')!.issues[0]).toMatch(/aliases expand it to more than 1,000,000 nodes; refused as an alias bomb \(FB_MANIFEST_ALIASES\)/);
    expect(invalidFiles.find((f) => f.path === 'big.yaml')!.issues[0]).toMatch(/larger than the largest manifest read, 1572864 bytes/);
    expect(metricValue(await b.metricsText(), 'fleetbridge_manifest_invalid_files')).toBe(2);
    // Removing the bad file and editing again: applied.
    await b.removeManifest('bomb.yaml');
    await b.writeManifest('edit.yaml', collectorYaml('edit', { role: 'edit' }, { exporters: { debug: { verbosity: 'normal' } } }));
    await waitUntil(async () => (await b.getCollectors()).invalidFiles.length === 1 && (await b.getCollector('edit'))!.configHash !== hashBefore, WAIT);
    const latencies = await bystander.stop();
    expect(latencies.length).toBeGreaterThan(3);
    expect(Math.max(...latencies)).toBeLessThan(2000);
  }, 120_000);
});

describe('namespaces of bearer tokens', () => {
  it('a token grants the namespace of its Secret: claiming another gets nothing and is reported', async () => {
    const [tDefault, tB] = ['tok-default-0123456789', 'tok-team-b-0123456789'];
    const b = await bridgeProcess({
      'bridge.yaml': opampBridgeYaml({ auth: { mode: 'bearerToken', bearerToken: { secretName: 'agent-tokens', namespaces: ['team-b'] } } }),
      'tokens-default.yaml': secretYaml('agent-tokens', { token: tDefault }),
      'tokens-b.yaml': secretYaml('agent-tokens', { token: tB }, 'team-b'),
      'creds-b.yaml': secretYaml('creds', { key: 'team-b-secret-value' }, 'team-b'),
      'd.yaml': collectorYaml('d', {}, { exporters: { debug: {} } }),
      'b.yaml': collectorYaml('b', {}, { exporters: { otlphttp: { endpoint: 'https://b.example', headers: { k: '${secret:creds/key}' } } } }, { namespace: 'team-b' }).replace('spec:\n', 'spec:\n  secretRefs: [{ name: creds }]\n'),
    });
    const liar = await agent(b.opampWsUrl, { 'k8s.namespace.name': 'team-b' }, bearerHeaders(tDefault));
    const view = await waitUntil(async () => {
      const v = await b.getAgent(liar.uidString);
      return v?.identityError ? v : undefined;
    }, WAIT);
    expect(view.identityError).toBe('the agent claims namespace team-b but its bearer token (token) is declared in namespace default');
    expect(view.verified).toMatchObject({ method: 'bearerToken', namespace: 'default' });
    expect(metricValue(await b.metricsText(), 'fleetbridge_agents_unbound')).toBe(1);
    await waitUntil(() => b.logs.find((l) => l['instanceUid'] === liar.uidString && l['msg'] === 'Agent gets no config: its identity is not accepted'), WAIT);

    const member = await agent(b.opampWsUrl, {}, bearerHeaders(tB));
    await waitUntil(() => configs(member).length === 1, WAIT);
    expect(parse(configs(member)[0]!).exporters.otlphttp.headers.k).toBe('team-b-secret-value');
    expect((await b.getAgent(member.uidString))!.namespace).toBe('team-b');
    expect(configs(liar)).toEqual([]);
    expect(liar.received.some((m) => m.packagesAvailable)).toBe(false);
  });
});
