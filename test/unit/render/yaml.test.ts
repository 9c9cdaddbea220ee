/**
 * Collector config YAML is read and written as the collector reads it (src/render/yaml.ts,
 * docs/adr/0009-yaml-as-the-collector-reads-it.md). Readings are checked against the real thing: a
 * Go program decoding with go.yaml.in/yaml/v3, the collector's config loader's library and version.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseCollectorConfig, parseConfigYaml, renderMerged, stringifyConfigYaml, type CollectorInput } from '../../../src/render/index.js';
import { skipUnlessOnCi } from '../../harness/tools.js';
import { ensureGoyaml, goRead, goyamlMissingReason, GOYAML_DIR, normalise, typedOf, yamlV3Version } from './goyaml.js';

const FILE = 'test/unit/render/yaml.test.ts';

/** Plain scalars whose reading differs between YAML 1.1, YAML 1.2 and Go. */
const SCALARS = [
  'yes', 'no', 'on', 'off', 'y', 'n', 'Y', 'N', 'Yes', 'NO', 'On', 'OFF', 'true', 'True', 'TRUE', 'tRUE', 'false', 'False', 'FALSE',
  '0777', '0o17', '0O17', '0x1F', '0X1f', '-0x1F', '+0x1F', '0b101', '0B11', '-0b101', '0b-101', '0o-17', '1_000', '1__0', '_1', '1_', '0_1', '012_3',
  '+12', '-12', '-0', '+0', '00', '08', '09.5', '0x', '0o', '0b', '0xg', '0x_1F', '0o_17',
  '9007199254740991', '9007199254740993', '9223372036854775807', '9223372036854775808', '-9223372036854775808', '-9223372036854775809',
  '18446744073709551615', '18446744073709551616', '+18446744073709551615',
  '1e3', '1E3', '1.5E+3', '1.', '.5', '-.5', '+.5', '.5e3', '.5_0', '1.0', '1.10', '0.', '6.8523015e+5', '685.230_15e+03', '1e400', '1e-400', '0x1p-2',
  '.inf', '.Inf', '.INF', '+.inf', '-.inf', '-.Inf', '.nan', '.NaN', '.NAN', 'inf', 'nan', '.',
  '~', 'null', 'Null', 'NULL', 'nULL', '=', '<', '190:20:30', '1:20', '-1:20',
  '2001-12-14', '2001-1-2', '2001-12-14t21:59:43.10-05:00', '2001-12-14T21:59:43.10Z', '2001-12-14T21:59:43Z', '2001-12-14 21:59:43.10',
  '2001-12-14  21:59:43', '2001-12-14T21:59:43', '2001-1-2T3:4:5Z', '2001-12-14T21:59:43+24:00', '2001-12-14T21:59:43+23:60', '2001-12-14T21:59:43+23:61',
  '2001-12-14T21:59:43.123456789+01:00', '2001-02-29', '2000-02-29', '2100-02-29', '2001-13-01', '2001-12-32', '2001-12-14T24:00:00Z', '2001-12-14T23:60:00Z',
  '20011-12-14', '2001-12-14T21:59:43 Z', '2001-123-4', '0001-01-01',
  'localhost:4317', '0.0.0.0:4317', '${env:HOME}', '10s', '1h30m', '512MiB', 'v1.2.3', '1.2.3', '--', 'a b',
];

/** Whole documents: merge keys and their corner cases. */
const DOCS = [
  'base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n',
  'b: &b {x: 1}\no: &o {x: 5, z: 2}\nm:\n  <<: [*b, *o]\n',
  'b: &b {x: 1}\no: &o {z: 2}\nm:\n  <<: [*b, *o]\n  x: 9\n',
  'b: &b {x: 2}\nm: {x: 1, <<: *b}\n',
  'b: &b {x: {p: 1, q: 2}}\nm:\n  <<: *b\n  x: {p: 3}\n',
  'b: &b {x: 1}\nc: &c {<<: *b, y: 2}\nm:\n  <<: *c\n  z: 3\n',
  'm:\n  "<<": {x: 1}\n  y: 2\n',
  "m:\n  '<<': {x: 1}\n",
  'm:\n  !!str <<: {x: 1}\n',
  'm:\n  << : {x: 1}\n  x: 2\n',
  'm:\n  !!merge <<: {x: 1}\n',
  'm: {<<: {a: 1}, b: 2}\n',
  // Go rejects these: the collector would fail to load them.
  'b: &b [1]\nm:\n  <<: *b\n',
  'm:\n  <<: 3\n',
  'b: &b {x: 1}\nm:\n  <<: *b\n  <<: {y: 2}\n',
  'm: {x: 1, x: 2}\n',
  // Anchors on scalars and lists.
  'a: &a 0777\nb: *a\nl: &l [yes, 1_0]\nm: *l\n',
  'k: |\n  line one\n  0777\nf: >\n  folded\n  text\n',
  'a: {1: x, 0777: y, true: z}\n',
];

/** Strings that must come back as the very same string after we write them. */
const STRINGS = [
  ...SCALARS, '', ' ', ' lead', 'trail ', '<<', '*', '&a', '!x', '%x', '@x', '`x', '#x', 'a #b', 'a: b', 'a:b', '- a', '? x', '[x]', '{x}', 'x,y',
  '-', '@x', '"', "'", '\\', 'tab\there', 'multi\nline', 'multi\nline\n', '\n', 'ünïcödé', '\u0000', 'yes\n', '0777 ', '|', '>', '---', '...',
];

const skip = skipUnlessOnCi(FILE, goyamlMissingReason());

describe.skipIf(skip)('YAML as the collector reads it (checked against go.yaml.in/yaml/v3)', () => {
  let bin: string;
  beforeAll(async () => {
    bin = await ensureGoyaml();
  }, 600_000);

  it('pins the yaml.v3 version the collector and the OpAMP Supervisor use', () => {
    const mine = yamlV3Version(readFileSync(join(GOYAML_DIR, 'go.mod'), 'utf8'));
    expect(mine).toMatch(/^v3\./);
    for (const mod of ['collector', 'supervisor']) {
      expect(yamlV3Version(readFileSync(join(GOYAML_DIR, '..', '..', '..', '..', 'tools', 'otel', mod, 'go.mod'), 'utf8')), mod).toBe(mine);
    }
  });

  it('reads every plain scalar as Go does', () => {
    const texts = SCALARS.map((s) => `v: ${s}\n`);
    const go = goRead(bin, texts);
    const diffs: string[] = [];
    texts.forEach((t, i) => {
      const ours = typedOf((parseConfigYaml(t) as { v: unknown }).v);
      const theirs = normalise((go[i]!.value as { map: Record<string, never> }).map['v']);
      if (JSON.stringify(ours) !== JSON.stringify(theirs)) diffs.push(`${JSON.stringify(SCALARS[i])}: ours ${JSON.stringify(ours)}, Go ${JSON.stringify(theirs)}`);
    });
    expect(diffs).toEqual([]);
  });

  it('reads merge keys, quoted "<<" keys and anchors as Go does, and rejects what Go rejects', () => {
    const go = goRead(bin, DOCS);
    DOCS.forEach((d, i) => {
      const g = go[i]!;
      if (g.error !== undefined) {
        expect(() => parseConfigYaml(d), `${d} (Go: ${g.error})`).toThrow();
        return;
      }
      expect(typedOf(parseConfigYaml(d)), d).toEqual(normalise(g.value));
    });
  });

  it('writes values so that Go reads them back identically, with no anchors or merge keys', () => {
    const values = DOCS.flatMap((d) => {
      try {
        return [parseConfigYaml(d)];
      } catch {
        return [];
      }
    });
    values.push(Object.fromEntries(STRINGS.map((s, i) => [`k${i}`, s])), Object.fromEntries(STRINGS.map((s) => [s, 1])), STRINGS);
    values.push(parseConfigYaml(`v:\n${SCALARS.map((s) => `  - ${s}`).join('\n')}\n`));
    const texts = values.map((v) => stringifyConfigYaml(v));
    const go = goRead(bin, texts);
    texts.forEach((t, i) => {
      expect(go[i]!.error, t).toBeUndefined();
      expect(normalise(go[i]!.value), t).toEqual(typedOf(values[i]));
      expect(t).not.toMatch(/(^|\s)[&*][A-Za-z0-9]|^\s*<<:/m);
      // And as written back by the OpAMP Supervisor, except where a literal "<<" key is involved.
      if (!JSON.stringify(typedOf(values[i])).includes('"<<"')) expect(normalise(go[i]!.supervised), t).toEqual(typedOf(values[i]));
    });
  });

  it('a literal "<<" key is turned into a merge by the OpAMP Supervisor: we keep it quoted and warn', () => {
    const text = 'receivers:\n  otlp:\n    protocols:\n      "<<": {http: {}}\n';
    const parsed = parseCollectorConfig(text);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.warnings.join('\n')).toMatch(/receivers\.otlp\.protocols\.<<: a literal "<<" key/);
    const out = stringifyConfigYaml(parsed.config);
    expect(out).toContain('"<<":');
    const [g] = goRead(bin, [out]);
    expect(normalise(g!.value)).toEqual(typedOf(parsed.config));
    // The Supervisor's re-marshal prints it unquoted; the collector then merges it.
    expect(normalise(g!.supervised)).toEqual(typedOf({ receivers: { otlp: { protocols: { http: {} } } } }));
  });
});

describe('rendering configs written with anchors and merge keys', () => {
  const input = (name: string, configYaml: string): CollectorInput => {
    const p = parseCollectorConfig(configYaml);
    if (!p.ok) throw new Error(p.issues.join('; '));
    return { namespace: 'default', name, generation: 1, revision: name, priority: 0, selector: {}, config: p.config };
  };
  const anchored = [
    'x-common: &common {timeout: 1s, send_batch_size: 0777}',
    'receivers: {otlp: {protocols: {grpc: {endpoint: "0.0.0.0:4317"}}}}',
    'processors:',
    '  batch/a: {<<: *common}',
    '  batch/b:',
    '    <<: *common',
    '    timeout: 2s',
    'exporters: {debug: {}}',
    'service: {pipelines: {traces: {receivers: [otlp], processors: [batch/a, batch/b], exporters: [debug]}}}',
  ].join('\n');
  const expanded = [
    'x-common: {timeout: 1s, send_batch_size: 511}',
    'receivers: {otlp: {protocols: {grpc: {endpoint: "0.0.0.0:4317"}}}}',
    'processors:',
    '  batch/a: {timeout: 1s, send_batch_size: 511}',
    '  batch/b: {timeout: 2s, send_batch_size: 511}',
    'exporters: {debug: {}}',
    'service: {pipelines: {traces: {receivers: [otlp], processors: [batch/a, batch/b], exporters: [debug]}}}',
  ].join('\n');

  it('renders the expanded config: no anchors or merge keys, same text and hash as the expanded form', () => {
    const a = renderMerged([input('a', anchored)]);
    const b = renderMerged([input('a', expanded)]);
    expect(a.issues).toEqual([]);
    const text = a.body.toString('utf8');
    expect(text).not.toMatch(/[&*]common|<<|0777/);
    expect(text).toContain('send_batch_size: 511');
    expect(text).toBe(b.body.toString('utf8'));
    expect(a.hashHex).toBe(b.hashHex);
  });

  it('quotes strings the collector would read as another type', () => {
    const r = renderMerged([input('q', 'exporters: {debug: {}}\nprocessors: {attributes: {actions: [{key: k, value: "yes", action: insert}, {key: m, value: "0777", action: insert}, {key: n, value: "1_000", action: insert}]}}\nservice: {pipelines: {logs: {receivers: [], exporters: [debug]}}}')]);
    const text = r.body.toString('utf8');
    expect(text).toContain('value: "yes"');
    expect(text).toContain('value: "0777"');
    expect(text).toContain('value: "1_000"');
  });

  it('reports a merge Go would reject as invalid YAML', () => {
    const p = parseCollectorConfig('b: &b [1]\nreceivers:\n  <<: *b\n');
    expect(p.ok).toBe(false);
    if (!p.ok) expect(p.issues[0]).toMatch(/not valid YAML: .*[Mm]erge/);
    const dup = parseCollectorConfig('b: &b {x: 1}\nreceivers:\n  <<: *b\n  <<: {y: 2}\n');
    expect(dup.ok).toBe(false);
  });
});

describe('standalone manifests with merge keys', () => {
  it('expands merge keys in a manifest, as kubectl does', async () => {
    const { parseManifestText } = await import('../../../src/standalone/manifests.js');
    const text = [
      'apiVersion: fleetbridge.dev/v1alpha1',
      'kind: Collector',
      'metadata: {name: m}',
      'spec:',
      '  selector: {matchLabels: {a: b}}',
      '  config:',
      '    receivers: {otlp: {protocols: {grpc: {}}}}',
      '    exporters:',
      '      otlphttp/a: &exp {endpoint: "http://x:4318", compression: none}',
      '      otlphttp/b: {<<: *exp, endpoint: "http://y:4318"}',
      '    service: {pipelines: {logs: {receivers: [otlp], exporters: [otlphttp/a, otlphttp/b]}}}',
    ].join('\n');
    const r = parseManifestText(text, 'm.yaml');
    expect(r.issues).toEqual([]);
    expect(r.collectors[0]!.input.config['exporters']).toEqual({
      'otlphttp/a': { endpoint: 'http://x:4318', compression: 'none' },
      'otlphttp/b': { endpoint: 'http://y:4318', compression: 'none' },
    });
  });
});
