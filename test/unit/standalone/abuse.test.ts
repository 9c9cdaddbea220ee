/**
 * The manifest folder against hostile or broken files: each is reported for itself and never stops
 * the others; symlinks are followed inside the folder only; bearer tokens and identities are bound
 * to the namespace they were declared in.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { ManifestDirectory, parseManifestText, type ManifestSnapshot } from '../../../src/standalone/manifests.js';
import { startupRefusal } from '../../../src/standalone/bridge-settings.js';
import { standaloneIdentity } from '../../../src/standalone/identity.js';
import { BearerTokens } from '../../../src/opamp/bearer-auth.js';
import type { AgentRecord } from '../../../src/fleet/agent.js';
import { aliasBomb, manyAliases } from '../../harness/hostile-yaml.js';

const collector = (name: string, extra = '') =>
  `apiVersion: fleetbridge.dev/v1alpha1\nkind: Collector\nmetadata: { name: ${name} }\nspec:\n  selector: { matchLabels: { role: ${name} } }\n  config: { exporters: { debug: {} } }\n${extra}`;
const bridge = (spec: string) => `apiVersion: fleetbridge.dev/v1alpha1\nkind: OpAMPBridge\nmetadata: { name: fb, namespace: default }\nspec: ${spec}\n`;

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetbridge-abuse-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function loadOnce(dir: string, limits = {}): Promise<ManifestSnapshot> {
  const md = new ManifestDirectory({ dir, logger: pino({ level: 'silent' }), limits });
  try {
    return await md.load();
  } finally {
    await md.close();
  }
}

describe('hostile YAML', () => {
  it('refuses an alias bomb at once, with the reason, as an opaque file', () => {
    const t0 = Date.now();
    const r = parseManifestText(aliasBomb(), 'bomb.yaml');
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(r.collectors).toEqual([]);
    expect(r.opaque).toBe(true);
    expect(r.issues).toEqual([expect.stringMatching(/^bomb\.yaml: invalid YAML: its aliases expand it to more than 1,000,000 nodes; refused as an alias bomb \(FB_MANIFEST_ALIASES\)$/)]);
  });

  it('reads a legitimate file that uses one anchor 101 times (and merge keys)', () => {
    const r = parseManifestText(manyAliases(), 'anchors.yaml');
    expect(r.issues).toEqual([]);
    expect(Object.keys(r.collectors[0]!.input.config['processors'] as object)).toHaveLength(101);
    const merged = parseManifestText(
      'apiVersion: v1\nkind: ConfigMap\nmetadata: { name: m }\nbase: &b { x: 1 }\nmore: &c { y: 2 }\ndata:\n  <<: *b\n  <<: *c\n  z: 3\n',
      'm.yaml',
    );
    expect(merged.issues).toEqual([]);
  });

  it('finds duplicate keys in linear time, and still allows repeated merge keys', () => {
    expect(parseManifestText(collector('d').replace('spec:\n', 'spec:\n  priority: 1\n  priority: 2\n'), 'd.yaml').issues).toEqual(['d.yaml: invalid YAML: map keys must be unique: spec.priority appears twice (FB_MANIFEST_YAML)']);
    const keys = Array.from({ length: 60_000 }, (_, i) => `      k${i}: v`).join('\n');
    const t0 = Date.now();
    const r = parseManifestText(`apiVersion: v1\nkind: ConfigMap\nmetadata: { name: big }\ndata:\n  x:\n${keys}\n      k5: again\n`, 'big.yaml');
    expect(r.issues).toEqual(['big.yaml: invalid YAML: map keys must be unique: data.x.k5 appears twice (FB_MANIFEST_YAML)']);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('tells an invalid OpAMPBridge (file and field) from other problems', () => {
    const r = parseManifestText(bridge('{ heartbeatIntervalSeconds: 10s, auth: { mode: none } }'), 'bridge.yaml');
    expect(r.bridgeIssues).toEqual([expect.stringMatching(/^bridge\.yaml: OpAMPBridge: spec\.heartbeatIntervalSeconds: Invalid input: expected number/)]);
    expect(r.opaque).toBe(false);
    expect(parseManifestText(bridge('{}').replace('fleetbridge.dev/v1alpha1', 'v1'), 'b.yaml').bridgeIssues).toEqual(['b.yaml: an OpAMPBridge must have apiVersion fleetbridge.dev/v1alpha1, got "v1"']);
    expect(parseManifestText('kind: OpAMPBridge\nspec: {', 'y.yaml').opaque).toBe(true);
    expect(parseManifestText(collector('c').replace('role: c', 'role: [x'), 'c.yaml').bridgeIssues).toEqual([]);
  });
});

describe('ManifestDirectory: one bad file never stops the others', () => {
  it('reports an oversized file, invalid UTF-8, a directory and a FIFO named *.yaml, an alias bomb; loads the rest', async () => {
    await withDir(async (dir) => {
      await writeFile(join(dir, 'a-good.yaml'), collector('good'));
      await writeFile(join(dir, 'anchors.yaml'), manyAliases());
      await writeFile(join(dir, 'big.yaml'), `# ${'x'.repeat(2 * 1024 * 1024)}\n${collector('big')}`);
      await writeFile(join(dir, 'bomb.yaml'), aliasBomb());
      await writeFile(join(dir, 'latin1.yaml'), Buffer.concat([Buffer.from(collector('latin').replace('role: latin', 'role: caf')), Buffer.from([0xe9, 0x0a])]));
      await mkdir(join(dir, 'folder.yaml'));
      await writeFile(join(dir, 'folder.yaml', 'inner.yaml'), collector('inner'));
      execFileSync('mkfifo', [join(dir, 'pipe.yaml')]);
      const snap = await loadOnce(dir);
      expect(snap.collectors.map((c) => c.input.name).sort()).toEqual(['anchors', 'good', 'inner']);
      const issues = Object.fromEntries(snap.invalidFiles.map((f) => [f.path, f.issues.join(' ')]));
      expect(Object.keys(issues).sort()).toEqual(['big.yaml', 'bomb.yaml', 'latin1.yaml', 'pipe.yaml']);
      expect(issues['big.yaml']).toMatch(/^big\.yaml: \d+ bytes is larger than the largest manifest read, 1572864 bytes .*\(FB_MANIFEST_TOO_LARGE\)$/);
      expect(issues['bomb.yaml']).toMatch(/FB_MANIFEST_ALIASES/);
      expect(issues['latin1.yaml']).toBe('latin1.yaml: not valid UTF-8 text; not read (FB_MANIFEST_UNREADABLE)');
      expect(issues['pipe.yaml']).toBe('pipe.yaml: not a regular file; not read (FB_MANIFEST_UNREADABLE)');
      expect(snap.opaqueFiles.map((f) => f.path).sort()).toEqual(['big.yaml', 'bomb.yaml', 'latin1.yaml', 'pipe.yaml']);
      // Nothing here may be the bridge, and there is none: the bridge would not start.
      expect(startupRefusal(snap, dir)).toMatch(/^no valid OpAMPBridge was found in .*, and 4 files could not be read far enough/);
    });
  });

  it('bounds the number of files and bytes read', async () => {
    await withDir(async (dir) => {
      for (const n of ['a', 'b', 'c']) await writeFile(join(dir, `${n}.yaml`), collector(n));
      const byCount = await loadOnce(dir, { maxFiles: 2 });
      expect(byCount.collectors.map((c) => c.input.name)).toEqual(['a', 'b']);
      expect(byCount.invalidFiles).toEqual([{ path: 'c.yaml', issues: ['c.yaml: not read: the folder holds more than 2 manifest files (FB_MANIFEST_LIMIT)'] }]);
      const byBytes = await loadOnce(dir, { maxTotalBytes: collector('a').length * 2 + 10 });
      expect(byBytes.invalidFiles.map((f) => f.path)).toEqual(['c.yaml']);
      const byEntries = await loadOnce(dir, { maxEntries: 1 });
      expect(byEntries.invalidFiles[0]).toEqual({ path: '.', issues: [expect.stringMatching(/more than 1 entries/)] });
    });
  });

  it('refuses to start on an invalid OpAMPBridge even when another file is a valid one', async () => {
    await withDir(async (dir) => {
      await writeFile(join(dir, 'a.yaml'), bridge('{ auth: { mode: none } }'));
      await writeFile(join(dir, 'b.yaml'), bridge('{ heartbeatIntervalSeconds: 10s }'));
      expect(startupRefusal(await loadOnce(dir), dir)).toMatch(/OpAMPBridge manifest in .* is invalid.*b\.yaml: OpAMPBridge: spec\.heartbeatIntervalSeconds/);
    });
  });

  it('reads symlinks that resolve inside the folder (a ConfigMap volume) and refuses those that lead outside', async () => {
    await withDir(async (outside) => {
      await withDir(async (dir) => {
        await mkdir(join(dir, '..2024_01_01_a'));
        await writeFile(join(dir, '..2024_01_01_a', 'bridge.yaml'), bridge('{ auth: { mode: none } }'));
        await writeFile(join(dir, '..2024_01_01_a', 'c.yaml'), collector('one'));
        await symlink('..2024_01_01_a', join(dir, '..data'));
        await symlink('..data/bridge.yaml', join(dir, 'bridge.yaml'));
        await symlink('..data/c.yaml', join(dir, 'c.yaml'));
        await writeFile(join(outside, 'x.yaml'), collector('stolen'));
        await symlink(join(outside, 'x.yaml'), join(dir, 'x.yaml'));
        await symlink(join(dir, 'nowhere.yaml'), join(dir, 'dangling.yaml'));
        const md = new ManifestDirectory({ dir, logger: pino({ level: 'silent' }) });
        try {
          const snap = await md.load();
          expect(snap.bridge?.source).toBe('bridge.yaml');
          expect(snap.collectors.map((c) => c.input.name)).toEqual(['one']);
          expect(snap.invalidFiles).toEqual([
            { path: 'dangling.yaml', issues: [expect.stringMatching(/^dangling\.yaml: a symlink whose target cannot be resolved \(ENOENT\); not read/)] },
            { path: 'x.yaml', issues: [`x.yaml: a symlink that leads outside the manifest folder (to ${join(outside, 'x.yaml')}); refused (FB_MANIFEST_SYMLINK)`] },
          ]);
          // The kubelet's atomic swap: a new timestamped folder, a new ..data link renamed over the old.
          await mkdir(join(dir, '..2024_01_01_b'));
          await writeFile(join(dir, '..2024_01_01_b', 'bridge.yaml'), bridge('{ auth: { mode: none } }'));
          await writeFile(join(dir, '..2024_01_01_b', 'c.yaml'), collector('two'));
          await symlink('..2024_01_01_b', join(dir, '..data_tmp'));
          await rename(join(dir, '..data_tmp'), join(dir, '..data'));
          await rm(join(dir, '..2024_01_01_a'), { recursive: true });
          expect((await md.load()).collectors.map((c) => c.input.name)).toEqual(['two']);
        } finally {
          await md.close();
        }
      });
    });
  });
});

describe('namespaces of credentials', () => {
  const agent = (attributes: Record<string, string>, verified: AgentRecord['identity']['verified']) => ({ description: { attributes }, identity: { verified } }) as unknown as AgentRecord;

  it('a bearer token grants the namespace of its Secret; one in two namespaces is accepted in none', async () => {
    const b = new BearerTokens();
    const problems = b.setSources([
      { namespace: 'default', tokens: { token: 'tok-a', shared: 'same' }, currentKey: 'token' },
      { namespace: 'team-b', tokens: { token: 'tok-b', old: 'tok-b-old', shared: 'same' }, currentKey: 'token' },
      { namespace: 'team-c', tokens: {}, currentKey: 'token', problem: 'Secret team-c/agent-tokens not found' },
    ]);
    expect(problems).toEqual(['Secret team-c/agent-tokens not found', 'a token is declared in the Secrets of several namespaces (default, team-b); it is accepted in none of them']);
    const auth = (t: string) => b.authenticate({ headers: { authorization: `Bearer ${t}` } } as never);
    expect(await auth('tok-b-old')).toEqual({ ok: true, identity: { method: 'bearerToken', username: 'bearer-token:team-b/old', namespace: 'team-b', credential: { key: 'old', current: false } } });
    expect(await auth('same')).toMatchObject({ ok: false, status: 401, reason: expect.stringMatching(/several namespaces \(default, team-b\)/) });
    // Rotation offers the current token of the token's own namespace, never another's.
    expect(b.replacementFor('Bearer tok-b-old')).toBe('Bearer tok-b');
    expect(b.replacementFor('Bearer tok-a')).toBeUndefined();
    expect(b.namespaceOf('Bearer tok-a')).toBe('default');
    // The single-Secret form (Kubernetes mode) names no namespace, as before.
    const k = new BearerTokens();
    k.set({ token: 't' }, 'token');
    expect(await k.authenticate({ headers: { authorization: 'Bearer t' } } as never)).toEqual({ ok: true, identity: { method: 'bearerToken', username: 'bearer-token:token', credential: { key: 'token', current: true } } });
  });

  it('refuses an agent that claims another namespace than its credential grants', () => {
    const id = standaloneIdentity('default');
    const bearerB = { method: 'bearerToken' as const, username: 'bearer-token:team-b/token', namespace: 'team-b', credential: { key: 'token', current: true } };
    expect(id(agent({ 'k8s.namespace.name': 'team-a' }, bearerB))).toEqual({ ok: false, error: 'the agent claims namespace team-a but its bearer token (token) is declared in namespace team-b' });
    expect(id(agent({}, bearerB))).toMatchObject({ ok: true, namespace: 'team-b' });
    expect(id(agent({ 'k8s.namespace.name': 'team-b' }, bearerB))).toMatchObject({ ok: true, namespace: 'team-b' });
    // A certificate without a namespace binds to the bridge's namespace.
    expect(id(agent({ 'k8s.namespace.name': 'team-b' }, { method: 'mtls', username: 'CN=x' }))).toMatchObject({ ok: false, error: expect.stringMatching(/names no namespace, which binds it to the bridge's namespace default/) });
    // No authentication: the claim decides (and the bridge says namespaces are no boundary).
    expect(id(agent({ 'k8s.namespace.name': 'team-b' }, null))).toMatchObject({ ok: true, namespace: 'team-b' });
  });
});
