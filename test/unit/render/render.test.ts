import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { configMapHash } from '../../../src/render/hash.js';
import { deepMerge } from '../../../src/render/merge.js';
import { DesiredState } from '../../../src/render/desired.js';
import { parseCollectorConfig, renderMerged, type CollectorInput } from '../../../src/render/render.js';
import { validateCollectorConfig } from '../../../src/render/validate.js';

function input(name: string, config: Record<string, unknown>, extra: Partial<CollectorInput> = {}): CollectorInput {
  return { namespace: 'default', name, generation: 1, revision: name + JSON.stringify(config), priority: 0, selector: {}, config, ...extra };
}

describe('deepMerge', () => {
  it('merges maps deeply and replaces lists and scalars', () => {
    const a = { x: { y: 1, list: [1, 2] }, keep: true };
    const b = { x: { z: 2, list: [3] }, keep: false };
    expect(deepMerge(a, b)).toEqual({ x: { y: 1, z: 2, list: [3] }, keep: false });
  });

  it('does not modify its inputs', () => {
    const a = { x: { y: 1 } };
    const b = { x: { z: 2 } };
    deepMerge(a, b);
    expect(a).toEqual({ x: { y: 1 } });
    expect(b).toEqual({ x: { z: 2 } });
  });
});

describe('configMapHash', () => {
  it('is the same for the same content regardless of key order', () => {
    const f = (s: string) => ({ body: Buffer.from(s), contentType: 'text/yaml' });
    const h1 = configMapHash({ a: f('1'), b: f('2') });
    const h2 = configMapHash(new Map([['b', f('2')], ['a', f('1')]]));
    expect(h1.equals(h2)).toBe(true);
    expect(h1).toHaveLength(32);
  });

  it('cannot be fooled by moving bytes between key, content type and body', () => {
    const h1 = configMapHash({ ab: { body: Buffer.from('c'), contentType: '' } });
    const h2 = configMapHash({ a: { body: Buffer.from('bc'), contentType: '' } });
    const h3 = configMapHash({ a: { body: Buffer.from('c'), contentType: 'b' } });
    expect(new Set([h1, h2, h3].map((h) => h.toString('hex'))).size).toBe(3);
  });
});

describe('renderMerged', () => {
  it('merges in the given order so later (higher priority) collectors win', () => {
    const base = input('base', { exporters: { otlp: { endpoint: 'a:4317' } }, service: { pipelines: { traces: { receivers: ['otlp'], exporters: ['otlp'] } } }, receivers: { otlp: {} } });
    const over = input('over', { exporters: { otlp: { endpoint: 'b:4317' }, debug: {} } }, { priority: 5 });
    const r = renderMerged([base, over]);
    const cfg = parse(r.body.toString()) as Record<string, any>;
    expect(cfg.exporters.otlp.endpoint).toBe('b:4317');
    expect(cfg.exporters.debug).toEqual({});
    expect(r.collectors).toEqual(['default/base', 'default/over']);
    expect(r.issues).toEqual([]);
    expect(r.hashHex).toBe(configMapHash({ '': { body: r.body, contentType: 'text/yaml' } }).toString('hex'));
  });

  it('renders byte-identical output and hash for equal input (stable across restarts)', () => {
    const mk = () => renderMerged([input('a', { receivers: { otlp: { protocols: { grpc: {} } } }, exporters: { debug: {} } })]);
    expect(mk().hashHex).toBe(mk().hashHex);
  });

  it('reports dangling references of the merged config', () => {
    const r = renderMerged([input('a', { receivers: { otlp: {} }, service: { pipelines: { traces: { receivers: ['otlp'], exporters: ['nope'] } } } })]);
    expect(r.issues).toEqual(['pipeline traces names exporter "nope", which is not defined']);
  });
});

describe('DesiredState', () => {
  it('orders by priority then name and keeps namespaces apart', () => {
    const ds = new DesiredState([
      input('z-low', { a: 1 }, { priority: 0 }),
      input('a-high', { a: 2 }, { priority: 10 }),
      input('b-low', { a: 3 }, { priority: 0 }),
      input('other-ns', { a: 4 }, { namespace: 'team-b' }),
    ]);
    const r = ds.forAgent('default', {})!;
    expect(r.collectors).toEqual(['default/b-low', 'default/z-low', 'default/a-high']);
    expect((parse(r.body.toString()) as { a: number }).a).toBe(2);
    expect(ds.forAgent('team-b', {})!.collectors).toEqual(['team-b/other-ns']);
    expect(ds.forAgent('team-c', {})).toBeNull();
  });

  it('returns null when nothing matches', () => {
    const ds = new DesiredState([input('a', { a: 1 }, { selector: { matchLabels: { role: 'edge' } } })]);
    expect(ds.forAgent('default', { role: 'gateway' })).toBeNull();
  });

  it('renders once per distinct set of matching collectors', () => {
    const ds = new DesiredState([input('a', { a: 1 })]);
    expect(ds.forAgent('default', { x: '1' })).toBe(ds.forAgent('default', { x: '2' }));
  });
});

describe('parseCollectorConfig', () => {
  it('parses YAML text and objects alike', () => {
    const a = parseCollectorConfig('receivers:\n  otlp: {}\n');
    const b = parseCollectorConfig({ receivers: { otlp: {} } });
    expect(a).toEqual(b);
    expect(a.ok).toBe(true);
  });

  it('reports invalid YAML with its position', () => {
    const r = parseCollectorConfig('receivers:\n  otlp: {\n');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.issues[0]).toMatch(/^config is not valid YAML: .*line/i);
  });

  it('refuses a config that is not a mapping', () => {
    expect(parseCollectorConfig('- a\n- b\n')).toEqual({ ok: false, issues: ['config must be a YAML mapping (receivers, exporters, service, ...)'] });
  });

  it('drops the Supervisor-owned opamp extension and says so', () => {
    const r = parseCollectorConfig({ extensions: { opamp: { server: {} }, health_check: {} }, service: { extensions: ['opamp', 'health_check'] } });
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.config).toEqual({ extensions: { health_check: {} }, service: { extensions: ['health_check'] } });
      expect(r.warnings).toHaveLength(2);
    }
  });

  it('leaves dangling references to the merged config but refuses structural errors', () => {
    expect(parseCollectorConfig({ service: { pipelines: { traces: { receivers: ['otlp'] } } } }).ok).toBe(true);
    const r = parseCollectorConfig({ receivers: ['otlp'] });
    expect(r).toEqual({ ok: false, issues: ['receivers must be a mapping'] });
  });
});

describe('validateCollectorConfig', () => {
  it('accepts connectors as receivers and exporters', () => {
    expect(
      validateCollectorConfig({
        receivers: { otlp: {} },
        connectors: { spanmetrics: {} },
        exporters: { debug: {} },
        service: { pipelines: { traces: { receivers: ['otlp'], exporters: ['spanmetrics'] }, metrics: { receivers: ['spanmetrics'], exporters: ['debug'] } } },
      }),
    ).toEqual([]);
  });

  it('names every undefined component and extension', () => {
    expect(
      validateCollectorConfig({
        receivers: { otlp: {} },
        service: { extensions: ['health_check'], pipelines: { logs: { receivers: ['otlp', 'filelog'], processors: ['batch'], exporters: ['debug'] } } },
      }),
    ).toEqual([
      'service.extensions names extension "health_check", which is not defined under extensions',
      'pipeline logs names receiver "filelog", which is not defined',
      'pipeline logs names processor "batch", which is not defined',
      'pipeline logs names exporter "debug", which is not defined',
    ]);
  });
});

describe('renderMerged with an invalid Collector', () => {
  it('holds the agents it selects instead of sending a config without it', () => {
    const ok = input('ok', { exporters: { debug: {} } });
    const bad = { ...input('bad', {}), invalid: ['config is not valid YAML: x'] };
    const r = renderMerged([ok, bad]);
    expect(r.issues).toEqual(['Collector default/bad is invalid: config is not valid YAML: x']);
  });
});
