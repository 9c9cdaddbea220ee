/**
 * Agent packages (OpAMP PackagesAvailable / PackageStatuses) end to end, with the real opamp-go
 * client: the test agent (test/agents/opamp-go-agent, --accepts-packages) lets opamp-go's packages
 * syncer download each offered file, checks its SHA-256 itself, and reports statuses. The bridge
 * offers what Collectors declare, serves files from its packages directory or fetches them once
 * from an allowed source, and shows where every agent stands (API, Collector status, metrics).
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { AgentView } from '../../src/fleet/view-types.js';
import { buildGoAgent, goMissingReason, startGoAgent, type GoAgent, type GoAgentEvent } from '../harness/go-agent.js';
import { startTestBridge, type TestBridge } from '../harness/standalone.js';
import { skipUnlessOnCi } from '../harness/tools.js';

const skip = skipUnlessOnCi('packages.test', goMissingReason());
const WAIT = { timeout: 20_000, interval: 50 };
const EVENT = { timeoutMs: 20_000 };

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const CONFIG = '{ receivers: { otlp: { protocols: { grpc: {} } } }, exporters: { debug: {} }, service: { pipelines: { traces: { receivers: [otlp], exporters: [debug] } } } }';

function collector(name: string, group: string, packages: string, extra = ''): string {
  return `apiVersion: fleetbridge.dev/v1alpha1
kind: Collector
metadata: { name: ${name}, namespace: default }
spec:
  selector: { matchLabels: { pkg-group: ${group} } }
  config: ${CONFIG}
${extra}  packages:
${packages}`;
}

describe.skipIf(skip)('agent packages with the opamp-go client', () => {
  let bridge: TestBridge;
  let pkgDir: string;
  let outside: string;
  let source: Server;
  let sourceUrl: string;
  const sourceHits: { path: string; authorization: string | undefined }[] = [];
  const sourceFiles = new Map<string, Buffer>();
  const agents: GoAgent[] = [];
  const files = new Set<string>();

  beforeAll(async () => {
    await buildGoAgent();
    pkgDir = await mkdtemp(join(tmpdir(), 'fleetbridge-pkgs-'));
    outside = await mkdtemp(join(tmpdir(), 'fleetbridge-outside-'));
    // The "internet": a download source that answers only with the right token on /private/.
    source = createServer((req, res) => {
      sourceHits.push({ path: req.url ?? '', authorization: req.headers.authorization });
      const body = sourceFiles.get(req.url ?? '');
      if (!body) return void res.writeHead(404).end();
      if (req.url!.startsWith('/private/') && req.headers.authorization !== 'Bearer s3cr3t-download-token') return void res.writeHead(401).end();
      res.writeHead(200, { 'Content-Length': body.length }).end(body);
    });
    await new Promise<void>((r) => source.listen(0, '127.0.0.1', r));
    sourceUrl = `http://127.0.0.1:${(source.address() as AddressInfo).port}`;
    bridge = await startTestBridge({
      manifests: {
        'bridge.yaml': `apiVersion: fleetbridge.dev/v1alpha1
kind: OpAMPBridge
metadata: { name: bridge, namespace: default }
spec:
  auth: { mode: none }
  packages:
    directory: ${pkgDir}
    allowedSourcePrefixes: ["${sourceUrl}/mirror/"]
`,
        'secret.yaml': `apiVersion: v1
kind: Secret
metadata: { name: download-token, namespace: default }
stringData: { token: s3cr3t-download-token }
`,
      },
    });
  }, 300_000);

  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.stop()));
    for (const f of files) await bridge.removeManifest(f).catch(() => {});
    files.clear();
  });

  afterAll(async () => {
    await bridge?.stop();
    await new Promise((r) => source?.close(r));
    await rm(pkgDir, { recursive: true, force: true });
    await rm(outside, { recursive: true, force: true });
  });

  async function manifest(name: string, text: string) {
    files.add(name);
    await bridge.writeManifest(name, text);
  }

  async function agent(group: string, acceptsPackages = true): Promise<GoAgent> {
    const a = await startGoAgent({
      endpoint: bridge.opampWsUrl,
      instanceUid: randomUUID(),
      attrs: { 'pkg-group': group },
      acceptsPackages,
      heartbeatSeconds: 1,
      maxLifetime: '3m',
    });
    agents.push(a);
    return a;
  }

  const view = async (a: GoAgent) => (await bridge.getAgent(a.instanceUid)) as AgentView;
  const synced = (a: GoAgent, since = 0) => a.waitFor((e) => e.event === 'packages_synced', { ...EVENT, since });
  /** Resolves once the bridge has handled `n` more messages (1 s heartbeats) from the agent: each was a chance to offer again. */
  const handledMore = async (a: GoAgent, n: number) => {
    const from = BigInt((await view(a)).sequenceNum);
    await vi.waitFor(async () => expect(BigInt((await view(a)).sequenceNum) >= from + BigInt(n)).toBe(true), WAIT);
  };

  it('serves a file from its packages directory; the agent downloads it, checks its hash and reports it installed; a new version follows', async () => {
    const v1 = randomBytes(200_000);
    const v2 = randomBytes(150_000);
    await writeFile(join(pkgDir, 'otelcol-1.0.0.bin'), v1);
    await writeFile(join(pkgDir, 'otelcol-1.1.0.bin'), v2);
    const decl = (version: string, file: string, body: Buffer) => `    - { name: otelcol, version: "${version}", sha256: ${sha256(body)}, serve: { path: ${file} } }\n`;
    await manifest('c-served.yaml', collector('served', 'served', decl('1.0.0', 'otelcol-1.0.0.bin', v1)));
    const a = await agent('served');

    const offer = (await a.waitFor((e) => e.event === 'packages_available', EVENT)) as GoAgentEvent & { packages: Record<string, { url: string; contentHash: string; version: string }> };
    expect(offer.packages['otelcol']).toMatchObject({ version: '1.0.0', contentHash: sha256(v1), url: `${bridge.opampHttpUrl.replace('/v1/opamp', '')}/v1/packages/default/${sha256(v1)}` });
    const dl = await a.waitFor((e) => e.event === 'package_download', EVENT);
    expect(dl['status']).toBe(200);
    const installed = await a.waitFor((e) => e.event === 'package_installed', EVENT);
    expect(installed).toMatchObject({ name: 'otelcol', bytes: v1.length, sha256: sha256(v1) });
    expect((await synced(a))['statuses']).toMatchObject({ otelcol: { status: 'PackageStatusEnum_Installed', agentHasVersion: '1.0.0' } });

    await vi.waitFor(async () => {
      const v = await view(a);
      expect(v.packages?.state).toBe('installed');
      expect(v.packageStatuses?.packages['otelcol']).toMatchObject({ status: 'Installed', agentHasVersion: '1.0.0' });
      const c = await bridge.getCollector('served');
      expect(c?.status.packages).toEqual({ offered: 1, installed: 1, installing: 0, failed: 0, unsupported: 0 });
      expect(c?.packages?.packages).toEqual([{ name: 'otelcol', version: '1.0.0', sha256: sha256(v1) }]);
    }, WAIT);

    // A new version: offered to the connected agent without a reconnect.
    const mark = a.events.length;
    await manifest('c-served.yaml', collector('served', 'served', decl('1.1.0', 'otelcol-1.1.0.bin', v2)));
    const second = await a.waitFor((e) => e.event === 'package_installed', { ...EVENT, since: mark });
    expect(second).toMatchObject({ name: 'otelcol', sha256: sha256(v2) });
    await vi.waitFor(async () => {
      const v = await view(a);
      expect(v.packages?.state).toBe('installed');
      expect(v.packageStatuses?.packages['otelcol']?.agentHasVersion).toBe('1.1.0');
    }, WAIT);
    expect(await bridge.metricsText()).toMatch(/fleetbridge_package_downloads_total\{outcome="served"\} [2-9]/);
  }, 90_000);

  it('a file whose content does not match the declared SHA-256 is a failed install, with the agent\'s reason in the API and status', async () => {
    const real = randomBytes(50_000);
    const declared = sha256(randomBytes(10));
    await writeFile(join(pkgDir, 'tampered.bin'), real);
    await manifest('c-bad.yaml', collector('badhash', 'badhash', `    - { name: addon, type: Addon, version: "2.0", sha256: ${declared}, serve: { path: tampered.bin } }\n`));
    const a = await agent('badhash');
    const s = await synced(a);
    expect((s['statuses'] as Record<string, { status: string; errorMessage: string }>)['addon']).toMatchObject({ status: 'PackageStatusEnum_InstallFailed' });
    expect(a.events.some((e) => e.event === 'package_installed')).toBe(false);
    await vi.waitFor(async () => {
      const v = await view(a);
      expect(v.packages?.state).toBe('failed');
      expect(v.packages?.message).toContain('content hash mismatch');
      const c = await bridge.getCollector('badhash');
      expect(c?.status.packages?.failed).toBe(1);
      expect(c?.status.failing).toContainEqual(expect.objectContaining({ instanceUid: a.instanceUid, reason: 'PackageInstallFailed', message: expect.stringContaining(sha256(real)) }));
    }, WAIT);
    // No loop: the agent reported this offer, so it is not offered again (three later messages
    // handled; the answer to the first two has reached the agent by the time the third is handled).
    await handledMore(a, 3);
    expect(a.events.filter((e) => e.event === 'packages_available')).toHaveLength(1);
  }, 60_000);

  it('fetches a serve.url file once from an allowed source for several agents; a source outside the allowed prefixes holds the packages', async () => {
    const body = randomBytes(80_000);
    sourceFiles.set('/mirror/addon-3.bin', body);
    const hitsBefore = sourceHits.length;
    await manifest('c-proxy.yaml', collector('proxied', 'proxied', `    - { name: proxied-addon, type: Addon, version: "3", sha256: ${sha256(body)}, serve: { url: "${sourceUrl}/mirror/addon-3.bin" } }\n`));
    const [a, b] = await Promise.all([agent('proxied'), agent('proxied')]);
    for (const x of [a, b]) expect(await x.waitFor((e) => e.event === 'package_installed', EVENT)).toMatchObject({ sha256: sha256(body) });
    expect(sourceHits.slice(hitsBefore).filter((h) => h.path === '/mirror/addon-3.bin')).toHaveLength(1);

    // Outside the prefixes (and a climb out of them): never fetched, never offered, said why.
    sourceFiles.set('/elsewhere/x.bin', body);
    for (const url of [`${sourceUrl}/elsewhere/x.bin`, `${sourceUrl}/mirror/../elsewhere/x.bin`]) {
      await manifest('c-held.yaml', collector('held', 'held', `    - { name: x, version: "1", sha256: ${sha256(body)}, serve: { url: "${url}" } }\n`));
      await vi.waitFor(async () => {
        const c = await bridge.getCollector('held');
        expect(c?.packages?.issues.join()).toContain('allowedSourcePrefixes');
      }, WAIT);
    }
    const h = await agent('held');
    await vi.waitFor(async () => expect((await view(h)).packages?.state).toBe('held'), WAIT);
    await handledMore(h, 2);
    expect(h.events.some((e) => e.event === 'packages_available')).toBe(false);
    expect(sourceHits.some((x) => x.path.includes('elsewhere'))).toBe(false);
  }, 60_000);

  it('a direct url download carries headers with secret values the API never shows; agents without AcceptsPackages are counted, not offered', async () => {
    const body = randomBytes(30_000);
    sourceFiles.set('/private/agent.bin', body);
    await manifest(
      'c-direct.yaml',
      collector(
        'direct',
        'direct',
        `    - name: ""
      version: "9.9.9"
      sha256: ${sha256(body)}
      url: ${sourceUrl}/private/agent.bin
      headers: [{ name: Authorization, value: "Bearer \${secret:download-token/token}" }]
`,
        '  secretRefs: [{ name: download-token }]\n',
      ),
    );
    const a = await agent('direct');
    const plain = await agent('direct', false);
    const dl = await a.waitFor((e) => e.event === 'package_download', EVENT);
    expect(dl).toMatchObject({ url: `${sourceUrl}/private/agent.bin`, status: 200, authorization: 'Bearer s3cr3t-download-token' });
    expect(await a.waitFor((e) => e.event === 'package_installed', EVENT)).toMatchObject({ name: '', sha256: sha256(body) });
    await vi.waitFor(async () => {
      const c = await bridge.getCollector('direct');
      expect(c?.status.packages).toEqual({ offered: 1, installed: 1, installing: 0, failed: 0, unsupported: 1 });
      expect((await view(plain)).packages?.state).toBe('unsupported');
    }, WAIT);
    expect(plain.events.some((e) => e.event === 'packages_available')).toBe(false);
    const shown = JSON.stringify(await bridge.getAgents()) + JSON.stringify(await bridge.getCollectors()) + (await bridge.metricsText());
    expect(shown).not.toContain('s3cr3t-download-token');
  }, 60_000);

  it('serves only files a Collector of the namespace declares, never outside the packages directory, and byte ranges', async () => {
    const body = randomBytes(10_000);
    await writeFile(join(pkgDir, 'ranged.bin'), body);
    await writeFile(join(outside, 'secret.txt'), 'not for agents');
    await symlink(join(outside, 'secret.txt'), join(pkgDir, 'escape.bin'));
    const escapeSha = sha256(Buffer.from('not for agents'));
    await manifest(
      'c-files.yaml',
      collector('files', 'files', `    - { name: ranged, version: "1", sha256: ${sha256(body)}, serve: { path: ranged.bin } }\n    - { name: escape, version: "1", sha256: ${escapeSha}, serve: { path: escape.bin } }\n`),
    );
    const base = bridge.opampHttpUrl.replace('/v1/opamp', '/v1/packages');
    await vi.waitFor(async () => expect((await fetch(`${base}/default/${sha256(body)}`, { method: 'HEAD' })).status).toBe(200), WAIT);
    const part = await fetch(`${base}/default/${sha256(body)}`, { headers: { Range: 'bytes=100-199' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 100-199/${body.length}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(body.subarray(100, 200))).toBe(true);
    // Another namespace, an undeclared hash, a symlink out of the directory, a malformed path.
    expect((await fetch(`${base}/other-ns/${sha256(body)}`)).status).toBe(404);
    expect((await fetch(`${base}/default/${sha256(randomBytes(4))}`)).status).toBe(404);
    const esc = await fetch(`${base}/default/${escapeSha}`);
    expect(esc.status).toBe(403);
    expect(await esc.text()).not.toContain('not for agents');
    expect((await fetch(`${base}/default/..%2F..%2Fetc%2Fpasswd`)).status).toBe(404);
    expect((await fetch(`${base}/default/${sha256(body)}`, { method: 'POST' })).status).toBe(405);
    // The agent that is offered both installs one and reports the other failed with the HTTP status.
    const a = await agent('files');
    const s = (await synced(a))['statuses'] as Record<string, { status: string; errorMessage: string }>;
    expect(s['ranged']?.status).toBe('PackageStatusEnum_Installed');
    expect(s['escape']).toMatchObject({ status: 'PackageStatusEnum_InstallFailed', errorMessage: expect.stringContaining('403') });
  }, 60_000);
});
