import { describe, expect, it, vi } from 'vitest';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { ManifestDirectory, parseManifestText } from '../../../src/standalone/manifests.js';

const good = `apiVersion: fleetbridge.dev/v1alpha1
kind: Collector
metadata: { name: a }
spec:
  selector: { matchLabels: { role: edge } }
  configYaml: "exporters: { debug: {} }"
`;

describe('parseManifestText', () => {
  it('loads a Collector, defaulting namespace and priority', () => {
    const r = parseManifestText(good, 'a.yaml');
    expect(r.issues).toEqual([]);
    expect(r.collectors[0]!.input).toMatchObject({ namespace: 'default', name: 'a', priority: 0, config: { exporters: { debug: {} } } });
  });

  it('reads several documents and skips empty ones', () => {
    const r = parseManifestText(`${good}---\n---\n${good.replace('name: a', 'name: b')}`, 'two.yaml');
    expect(r.issues).toEqual([]);
    expect(r.collectors.map((c) => c.input.name)).toEqual(['a', 'b']);
  });

  it('reports invalid YAML with file, document and position', () => {
    const r = parseManifestText('kind: Collector\nmetadata: {name: [\n', 'bad.yaml');
    expect(r.collectors).toEqual([]);
    expect(r.issues[0]).toMatch(/^bad\.yaml: invalid YAML: .*line 3/);
  });

  it('reports schema errors with the field path', () => {
    const r = parseManifestText(good.replace('matchLabels: { role: edge }', 'matchExpressions: [{ key: role, operator: Like, values: [x] }]'), 'x.yaml');
    expect(r.issues).toHaveLength(1);
    expect(r.issues[0]).toMatch(/^x\.yaml: Collector: spec\.selector\.matchExpressions\.0\.operator: Invalid option: expected one of "In"\|"NotIn"\|"Exists"\|"DoesNotExist"/);
  });

  it('reports In without values and unknown fields', () => {
    const r = parseManifestText(good.replace('matchLabels: { role: edge }', 'matchExpressions: [{ key: role, operator: In }]').replace('spec:', 'spec:\n  replicas: 3'), 'y.yaml');
    expect(r.issues.join('\n')).toMatch(/operator In needs a non-empty values list/);
    expect(r.issues.join('\n')).toMatch(/Unrecognized key: "replicas"/);
  });

  it('reports an invalid name, a wrong apiVersion and an unknown kind', () => {
    expect(parseManifestText(good.replace('name: a', 'name: Not_Valid'), 'n.yaml').issues[0]).toMatch(/metadata\.name: must be a lowercase RFC 1123 subdomain/);
    expect(parseManifestText(good.replace('fleetbridge.dev/v1alpha1', 'fleetbridge.dev/v1'), 'v.yaml').issues[0]).toBe('v.yaml: apiVersion must be fleetbridge.dev/v1alpha1, got "fleetbridge.dev/v1"');
    expect(parseManifestText(good.replace('apiVersion: fleetbridge.dev/v1alpha1\n', ''), 'n.yaml').issues[0]).toBe('n.yaml: apiVersion must be fleetbridge.dev/v1alpha1, got null');
    expect(parseManifestText(good.replace('kind: Collector', 'kind: Pipeline'), 'k.yaml').issues[0]).toBe('k.yaml: unknown kind "Pipeline"; expected Collector or OpAMPBridge');
  });

  it('reports a collector config that is not valid YAML, naming the Collector', () => {
    const r = parseManifestText(good.replace('"exporters: { debug: {} }"', '"exporters: { debug: {"'), 'c.yaml');
    expect(r.issues[0]).toMatch(/^c\.yaml: Collector default\/a: spec\.configYaml: config is not valid YAML/);
  });

  it('skips documents of other API groups, such as the Pod and ConfigMap of a sidecar', () => {
    const r = parseManifestText(`apiVersion: v1\nkind: ConfigMap\nmetadata: { name: s }\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: { name: d }\n---\n${good}`, 'mixed.yaml');
    expect(r.issues).toEqual([]);
    expect(r.collectors).toHaveLength(1);
    expect(r.skipped).toEqual(['mixed.yaml (document 1): ConfigMap (v1)', 'mixed.yaml (document 2): Deployment (apps/v1)']);
  });

  it('loads an OpAMPBridge with defaults', () => {
    const r = parseManifestText('apiVersion: fleetbridge.dev/v1alpha1\nkind: OpAMPBridge\nmetadata: { name: b }\n', 'b.yaml');
    expect(r.issues).toEqual([]);
    expect(r.bridges[0]!.resource.spec).toMatchObject({ endpoint: { port: 4320, path: '/v1/opamp' }, heartbeatIntervalSeconds: 30 });
  });
});

describe('Secret manifests', () => {
  const b64 = (v: string) => Buffer.from(v).toString('base64');

  it('decodes data, adds stringData (which wins on the same key), and defaults the namespace', () => {
    const r = parseManifestText(
      `apiVersion: v1\nkind: Secret\nmetadata: { name: creds }\ntype: Opaque\ndata: { a: ${b64('from-data')}, both: ${b64('data-side')} }\nstringData: { b: plain, both: string-side }\n---\n` +
        'apiVersion: v1\nkind: Secret\nmetadata: { name: tls, namespace: ops }\ntype: kubernetes.io/tls\nstringData: { tls.crt: CERT, tls.key: KEY }\n',
      's.yaml',
    );
    expect(r.issues).toEqual([]);
    expect(r.skipped).toEqual([]);
    expect(r.secrets).toEqual([
      { namespace: 'default', name: 'creds', data: { a: 'from-data', both: 'string-side', b: 'plain' }, source: 's.yaml' },
      { namespace: 'ops', name: 'tls', data: { 'tls.crt': 'CERT', 'tls.key': 'KEY' }, source: 's.yaml' },
    ]);
  });

  it('reports bad base64, non-string values and bad keys by key, never with the value', () => {
    const value = 'sup3r-s3cret-value';
    const r = parseManifestText(
      `apiVersion: v1\nkind: Secret\nmetadata: { name: a }\ndata: { k: "${value}!" }\n---\n` +
        `apiVersion: v1\nkind: Secret\nmetadata: { name: b }\nstringData: { k: { nested: ${value} }, n: 42 }\n---\n` +
        `apiVersion: v1\nkind: Secret\nmetadata: { name: c }\nstringData: { "bad key": ${value} }\n`,
      'bad.yaml',
    );
    expect(r.secrets).toEqual([]);
    expect(r.issues).toEqual([
      'bad.yaml (document 1): Secret: data.k: must be base64 (or put the value in stringData)',
      'bad.yaml (document 2): Secret: stringData.k: must be a string',
      'bad.yaml (document 2): Secret: stringData.n: must be a string',
      expect.stringMatching(/^bad\.yaml \(document 3\): Secret: stringData\.bad key: keys are letters, digits/),
    ]);
    expect(r.issues.join('\n')).not.toContain(value);
  });

  it('still skips other core kinds', () => {
    const r = parseManifestText('apiVersion: v1\nkind: ConfigMap\nmetadata: { name: c }\ndata: { x: "not base64!" }\n', 'cm.yaml');
    expect(r).toMatchObject({ issues: [], secrets: [], skipped: ['cm.yaml: ConfigMap (v1)'] });
  });

  it('gives Collectors their secretRefs, refuses references to other Secrets, and puts secretRefs in the revision', () => {
    const collector = (refs: string) =>
      `apiVersion: fleetbridge.dev/v1alpha1\nkind: Collector\nmetadata: { name: a }\nspec:\n  selector: {}\n${refs}  config: { exporters: { otlp: { headers: { k: "\${secret:creds/key}" } } } }\n`;
    const withRefs = parseManifestText(collector('  secretRefs: [{ name: creds }]\n'), 'a.yaml');
    expect(withRefs.issues).toEqual([]);
    expect(withRefs.collectors[0]!.input.secretNames).toEqual(['creds']);
    const without = parseManifestText(collector(''), 'a.yaml');
    expect(without.issues).toEqual([expect.stringMatching(/^a\.yaml: Collector default\/a: spec\.config: .*references Secret creds, which is not listed in spec\.secretRefs/)]);
    const extra = parseManifestText(collector('  secretRefs: [{ name: creds }, { name: other }]\n'), 'a.yaml');
    expect(extra.collectors[0]!.input.revision).not.toBe(withRefs.collectors[0]!.input.revision);
  });

  it('keeps the last good version of a Secret file that turns bad, and reports a Secret defined twice', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fleetbridge-secrets-'));
    const md = new ManifestDirectory({ dir, logger: pino({ level: 'silent' }) });
    try {
      await writeFile(join(dir, 'creds.yaml'), 'apiVersion: v1\nkind: Secret\nmetadata: { name: creds }\nstringData: { key: one }\n');
      expect((await md.load()).secrets.map((x) => x.data)).toEqual([{ key: 'one' }]);
      await writeFile(join(dir, 'creds.yaml'), 'apiVersion: v1\nkind: Secret\nmetadata: { name: creds }\ndata: { key: "two!" }\n');
      await writeFile(join(dir, 'dup.yaml'), 'apiVersion: v1\nkind: Secret\nmetadata: { name: creds, namespace: default }\nstringData: { key: three }\n');
      const snap = await md.load();
      expect(snap.secrets.map((x) => [x.source, x.data])).toEqual([['creds.yaml', { key: 'one' }]]);
      expect(snap.invalidFiles).toEqual([
        { path: 'creds.yaml', issues: ['creds.yaml: Secret: data.key: must be base64 (or put the value in stringData)'] },
        { path: 'dup.yaml', issues: ['Secret default/creds is also defined in creds.yaml; this definition is ignored (FB_MANIFEST_DUPLICATE)'] },
      ]);
      expect(JSON.stringify(snap.invalidFiles)).not.toMatch(/one|three/);
    } finally {
      await md.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('sees every edit made by renaming a new file into place, and files in folders made after it started, without the periodic rescan', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fleetbridge-watch-'));
    const seen: string[] = [];
    // An hour between rescans: only the watchers can notice these changes within the test.
    const md = new ManifestDirectory({ dir, logger: pino({ level: 'silent' }), debounceMs: 0, rescanMs: 3_600_000, onChange: (snap) => seen.push(snap.collectors.map((c) => `${c.input.name}:${JSON.stringify(c.input.config)}`).join(',')) });
    const put = async (path: string, verbosity: string, name = 'a') => {
      await writeFile(join(dir, '.tmp'), good.replace('name: a', `name: ${name}`).replace('{ debug: {} }', `{ debug: { verbosity: ${verbosity} } }`));
      await rename(join(dir, '.tmp'), join(dir, path));
    };
    try {
      await put('a.yaml', 'basic');
      await md.load();
      md.watch();
      for (const v of ['detailed', 'normal', 'basic', 'detailed']) {
        await put('a.yaml', v);
        await vi.waitFor(() => expect(seen.at(-1)).toContain(`"verbosity":"${v}"`), { timeout: 5000, interval: 10 });
        await new Promise((r) => setTimeout(r, 300));
      }
      await mkdir(join(dir, 'team'));
      await vi.waitFor(() => expect(md.snapshot.collectors).toHaveLength(1), { timeout: 5000, interval: 10 });
      await new Promise((r) => setTimeout(r, 50));
      await writeFile(join(dir, 'team', 'b.yaml'), good.replace('name: a', 'name: b'));
      await vi.waitFor(() => expect(seen.at(-1)).toMatch(/^a:.*,b:/), { timeout: 5000, interval: 10 });
    } finally {
      await md.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
