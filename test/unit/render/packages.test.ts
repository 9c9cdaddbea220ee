import { describe, expect, it } from 'vitest';
import { AgentPackage, CollectorSpec } from '../../../src/schema/v1alpha1/index.js';
import { combinePackages, packageSpecIssues, servePolicy, sourceAllowed, type PackagesCollector } from '../../../src/render/packages.js';
import { parsePackagePath, packageDownloadUrl } from '../../../src/fleet/packages.js';
import { DesiredState, type CollectorInput } from '../../../src/render/index.js';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const pkg = (p: unknown) => AgentPackage.parse(p);
const allow = servePolicy({ directory: '/pkgs', allowedSourcePrefixes: ['https://mirror.example/otel/'] });

function input(name: string, priority: number, packages: unknown[], labels: Record<string, string> = {}): CollectorInput {
  return {
    namespace: 'ns',
    name,
    generation: 1,
    revision: `${name}-${JSON.stringify(packages)}`,
    priority,
    selector: { matchLabels: labels },
    config: { receivers: { otlp: {} }, exporters: { debug: {} }, service: { pipelines: { traces: { receivers: ['otlp'], exporters: ['debug'] } } } },
    packages: packages.map(pkg),
  };
}

describe('packages declared by Collectors', () => {
  it('the schema takes exactly one source and refuses paths that climb, duplicate names and a bad hash', () => {
    expect(AgentPackage.safeParse({ version: '1', sha256: A, url: 'https://x/y' }).success).toBe(true);
    expect(AgentPackage.parse({ version: '1', sha256: A, url: 'https://x/y' })).toMatchObject({ name: '', type: 'TopLevel' });
    expect(AgentPackage.safeParse({ version: '1', sha256: A }).success).toBe(false);
    expect(AgentPackage.safeParse({ version: '1', sha256: A, url: 'https://x/y', serve: { path: 'f' } }).success).toBe(false);
    expect(AgentPackage.safeParse({ version: '1', sha256: A, serve: { path: 'f', url: 'https://x/' } }).success).toBe(false);
    expect(AgentPackage.safeParse({ version: '1', sha256: A, serve: { path: '../etc/passwd' } }).success).toBe(false);
    expect(AgentPackage.safeParse({ version: '1', sha256: A, serve: { path: '/etc/passwd' } }).success).toBe(false);
    expect(AgentPackage.safeParse({ version: '1', sha256: A.toUpperCase(), url: 'https://x/y' }).success).toBe(false);
    expect(AgentPackage.safeParse({ version: '1', sha256: A, serve: { path: 'f' }, headers: [{ name: 'A', value: 'b' }] }).success).toBe(false);
    const spec = (packages: unknown[]) => CollectorSpec.safeParse({ selector: {}, config: {}, packages });
    expect(spec([{ name: 'x', version: '1', sha256: A, url: 'https://x/1' }, { name: 'x', version: '2', sha256: B, url: 'https://x/2' }]).success).toBe(false);
  });

  it('header secret references must be declared in secretRefs', () => {
    const p = [pkg({ version: '1', sha256: A, url: 'https://x/y', headers: [{ name: 'Authorization', value: 'Bearer ${secret:tok/token}' }] })];
    expect(packageSpecIssues(p, [])).toEqual(['spec.packages[0].headers: Secret tok is not listed in spec.secretRefs']);
    expect(packageSpecIssues(p, ['tok'])).toEqual([]);
  });

  it('combines by name, the higher priority winning; hashes are stable and change with what the agent installs, not with header values', () => {
    const low = input('low', 0, [{ name: 'otelcol', version: '1', sha256: A, url: 'https://x/1' }, { name: 'addon', type: 'Addon', version: '1', sha256: B, url: 'https://x/a' }]);
    const high = input('high', 10, [{ name: 'otelcol', version: '2', sha256: B, url: 'https://x/2' }]);
    const d = combinePackages([low, high], undefined, allow)!;
    expect(d.packages.map((p) => [p.name, p.version, p.collector])).toEqual([['addon', '1', 'ns/low'], ['otelcol', '2', 'ns/high']]);
    expect(d.collectors.sort()).toEqual(['ns/high', 'ns/low']);
    expect(combinePackages([low, high], undefined, allow)!.allHashHex).toBe(d.allHashHex);
    const otherVersion = input('high', 10, [{ name: 'otelcol', version: '3', sha256: B, url: 'https://x/2' }]);
    expect(combinePackages([low, otherVersion], undefined, allow)!.allHashHex).not.toBe(d.allHashHex);
    const secrets = { get: (_ns: string, name: string) => (name === 'tok' ? { data: { token: 'v1' }, version: 'r1' } : undefined) };
    const withHeader = (v: string) => input('h', 0, [{ version: '1', sha256: A, url: 'https://x/1', headers: [{ name: 'Authorization', value: v }] }]);
    const h1 = combinePackages([withHeader('Bearer ${secret:tok/token}')], secrets, allow)!;
    expect(h1.issues).toEqual([]);
    expect(h1.packages[0]!.source).toEqual({ kind: 'url', url: 'https://x/1', headers: [{ name: 'Authorization', value: 'Bearer v1' }] });
    expect(h1.secretValues).toEqual(['v1']);
    expect(combinePackages([withHeader('Bearer other')], secrets, allow)!.allHashHex).toBe(h1.allHashHex);
    const missing = combinePackages([withHeader('Bearer ${secret:nope/token}')], secrets, allow)!;
    expect(missing.issues[0]).toContain('Secret ns/nope not found');
  });

  it('the bridge decides what it serves: no directory, no path; only allowed URL prefixes, normalised', () => {
    const none = servePolicy(undefined);
    expect(none({ path: 'f' })).toContain('spec.packages.directory');
    expect(none({ url: 'https://mirror.example/otel/f' })).toContain('allowedSourcePrefixes');
    expect(allow({ path: 'f' })).toBeNull();
    expect(allow({ url: 'https://mirror.example/otel/f.tgz' })).toBeNull();
    expect(allow({ url: 'https://mirror.example/other/f.tgz' })).toContain('does not start with');
    expect(sourceAllowed('https://mirror.example/otel/../admin', ['https://mirror.example/otel/'])).toBe(false);
    expect(sourceAllowed('https://mirror.example/otel%2F..%2F/x', ['https://mirror.example/otel/'])).toBe(false);
    expect(sourceAllowed('https://user:pw@mirror.example/otel/x', ['https://mirror.example/otel/'])).toBe(false);
    expect(sourceAllowed('https://mirror.example.evil/otel/x', ['https://mirror.example/otel/'])).toBe(false);
    const held = combinePackages([input('s', 0, [{ version: '1', sha256: A, serve: { url: 'https://evil.example/x' } }])], undefined, allow)!;
    expect(held.issues).toHaveLength(1);
    expect(held.packages[0]!.problem).toContain('allowedSourcePrefixes');
  });

  it('DesiredState: per agent by selector, none across namespaces, served files looked up by namespace and hash', () => {
    const served = input('served', 0, [{ name: 'f', version: '1', sha256: A, serve: { path: 'f.bin' } }], { app: 'x' });
    const state = new DesiredState([served], undefined, { servePolicy: allow });
    expect(state.packagesFor('ns', { app: 'x' })?.packages.map((p) => p.name)).toEqual(['f']);
    expect(state.packagesFor('ns', { app: 'y' })).toBeNull();
    expect(state.packagesFor('other', { app: 'x' })).toBeNull();
    expect(state.servedPackage('ns', A)?.collector).toBe('ns/served');
    expect(state.servedPackage('other', A)).toBeUndefined();
    expect(state.servedPackage('ns', B)).toBeUndefined();
    // Without the bridge's directory the package is held and not served.
    const strict = new DesiredState([served]);
    expect(strict.packagesFor('ns', { app: 'x' })?.issues[0]).toContain('serve');
    expect(strict.servedPackage('ns', A)).toBeUndefined();
  });

  it('download URLs follow the endpoint the agent used, and only well-formed paths parse', () => {
    expect(packageDownloadUrl('wss://bridge.ns.svc:4320/v1/opamp', 'team-a', A)).toBe(`https://bridge.ns.svc:4320/v1/packages/team-a/${A}`);
    expect(packageDownloadUrl('ws://127.0.0.1:9/x', 'default', A)).toBe(`http://127.0.0.1:9/v1/packages/default/${A}`);
    expect(parsePackagePath(`/v1/packages/team-a/${A}`)).toEqual({ namespace: 'team-a', sha256: A });
    for (const bad of [`/v1/packages/team-a/${A}/x`, '/v1/packages/team-a/abc', `/v1/packages/..%2F/${A}`, `/v1/packages/Team/${A}`, `/v1/opamp/${A}`]) expect(parsePackagePath(bad)).toBeNull();
  });
});
