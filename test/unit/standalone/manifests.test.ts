import { describe, expect, it } from 'vitest';
import { parseManifestText } from '../../../src/standalone/manifests.js';

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
