import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { DesiredState, parseCollectorConfig, renderMerged, type CollectorInput } from '../../../src/render/index.js';
import { hmacVersion, secretReferences, substituteSecrets, type SecretSource, type SecretValue } from '../../../src/render/secrets.js';
import { Redactor } from '../../../src/render/redact.js';

function source(secrets: Record<string, SecretValue>): SecretSource {
  return { get: (ns, name) => secrets[`${ns}/${name}`] };
}

function input(name: string, config: Record<string, unknown>, secretNames: string[], ns = 'team'): CollectorInput {
  return { namespace: ns, name, generation: 1, revision: `${name}-r1`, priority: 0, selector: {}, config, secretNames };
}

const CONFIG = {
  receivers: { otlp: { protocols: { grpc: {} } } },
  exporters: { otlphttp: { endpoint: 'https://ingest.example', headers: { 'api-key': '${secret:creds/api-key}', authorization: 'Bearer ${secret:creds/token}' } } },
  service: { pipelines: { traces: { receivers: ['otlp'], exporters: ['otlphttp'] } } },
};

describe('secret references', () => {
  it('finds whole and embedded references with their paths, and reports malformed ones', () => {
    const r = secretReferences({ a: '${secret:s1/k}', b: ['x ${secret:s2/k.2} y ${secret:s1/other}'], c: '${secret:Bad_Name/k}', d: 'plain ${env:X}' });
    expect(r.refs).toEqual([
      { name: 's1', key: 'k', path: 'a' },
      { name: 's2', key: 'k.2', path: 'b[0]' },
      { name: 's1', key: 'other', path: 'b[0]' },
    ]);
    expect(r.issues).toEqual(['c: malformed secret reference; write ${secret:SECRET-NAME/KEY}']);
  });

  it('rejects a config that references a Secret its Collector does not list', () => {
    const bad = parseCollectorConfig(CONFIG, []);
    expect(bad.ok).toBe(false);
    expect(!bad.ok && bad.issues).toEqual([
      'exporters.otlphttp.headers.api-key: references Secret creds, which is not listed in spec.secretRefs',
      'exporters.otlphttp.headers.authorization: references Secret creds, which is not listed in spec.secretRefs',
    ]);
    expect(parseCollectorConfig(CONFIG, ['creds']).ok).toBe(true);
  });

  it('substitutes values from the namespace given, and names what is missing without values', () => {
    const src = source({ 'team/creds': { data: { 'api-key': 'k-123', token: 't-456' }, version: 'v1' }, 'other/creds': { data: { 'api-key': 'WRONG', token: 'WRONG' }, version: 'v9' } });
    const s = substituteSecrets(CONFIG, 'team', src);
    expect(s.issues).toEqual([]);
    expect((s.config as typeof CONFIG).exporters.otlphttp.headers).toEqual({ 'api-key': 'k-123', authorization: 'Bearer t-456' });
    expect(s.versions).toEqual(['creds/api-key@v1', 'creds/token@v1']);
    expect(s.values.sort()).toEqual(['k-123', 't-456']);
    expect(CONFIG.exporters.otlphttp.headers['api-key']).toBe('${secret:creds/api-key}'); // input untouched
    const missing = substituteSecrets(CONFIG, 'nowhere', src);
    expect(missing.issues).toEqual([
      'exporters.otlphttp.headers.api-key: Secret nowhere/creds not found',
      'exporters.otlphttp.headers.authorization: Secret nowhere/creds not found',
    ]);
    const noKey = substituteSecrets(CONFIG, 'team', source({ 'team/creds': { data: { token: 't' }, version: 'v1' } }));
    expect(noKey.issues).toEqual(['exporters.otlphttp.headers.api-key: Secret team/creds has no key api-key']);
  });
});

describe('rendering with secrets', () => {
  const secrets: Record<string, SecretValue> = { 'team/creds': { data: { 'api-key': 'k-123', token: 't-456' }, version: 'v1' } };

  it('pushes the values, hashes versions instead of values, and changes the hash when a version changes', () => {
    const c = input('secure', CONFIG, ['creds']);
    const r1 = renderMerged([c], source(secrets));
    expect(r1.issues).toEqual([]);
    expect(parse(r1.body.toString()).exporters.otlphttp.headers).toEqual({ 'api-key': 'k-123', authorization: 'Bearer t-456' });
    expect(r1.secretValues.sort()).toEqual(['k-123', 't-456']);
    // Same version, different value: the hash depends on versions only (it is shown; values never are).
    const r1b = renderMerged([c], source({ 'team/creds': { data: { 'api-key': 'other', token: 'other' }, version: 'v1' } }));
    expect(r1b.hashHex).toBe(r1.hashHex);
    const r2 = renderMerged([c], source({ 'team/creds': { data: { 'api-key': 'k-999', token: 't-456' }, version: 'v2' } }));
    expect(r2.hashHex).not.toBe(r1.hashHex);
    // Without secrets the hash is the plain config-map hash, as before.
    const plain = renderMerged([input('plain', { exporters: { debug: {} } }, [])], source(secrets));
    expect(plain.hashHex).toBe(renderMerged([input('plain', { exporters: { debug: {} } }, [])]).hashHex);
  });

  it('holds the config when a Secret is missing', () => {
    const r = renderMerged([input('secure', CONFIG, ['creds'], 'empty')], source(secrets));
    expect(r.issues).toContain('exporters.otlphttp.headers.api-key: Secret empty/creds not found');
  });

  it('gives each namespace its own Secrets through DesiredState, and per-Collector hashes that follow rotation', () => {
    const a = input('secure', CONFIG, ['creds'], 'a');
    const b = input('secure', CONFIG, ['creds'], 'b');
    const src = source({ 'a/creds': { data: { 'api-key': 'A-KEY', token: 'A-T' }, version: '1' }, 'b/creds': { data: { 'api-key': 'B-KEY', token: 'B-T' }, version: '7' } });
    const d = new DesiredState([a, b], src);
    expect(d.forAgent('a', {})!.body.toString()).toContain('A-KEY');
    expect(d.forAgent('a', {})!.body.toString()).not.toContain('B-KEY');
    expect(d.forAgent('b', {})!.body.toString()).toContain('B-KEY');
    const rotated = new DesiredState([a, b], source({ 'a/creds': { data: { 'api-key': 'A2', token: 'A-T' }, version: '2' }, 'b/creds': { data: { 'api-key': 'B-KEY', token: 'B-T' }, version: '7' } }));
    expect(rotated.ownConfigHash(a)).not.toBe(d.ownConfigHash(a));
    expect(rotated.ownConfigHash(b)).toBe(d.ownConfigHash(b));
  });
});

describe('Redactor', () => {
  it('replaces known values, longest first, and remembers earlier values', () => {
    const r = new Redactor();
    expect(r.redact('nothing known')).toBe('nothing known');
    r.add(['abc', 'abcdef', '']);
    expect(r.redact('x abcdef y abc z')).toBe('x [REDACTED] y [REDACTED] z');
    r.add(['a.b*c']);
    expect(r.redact('1a.b*c2 aXbbc')).toBe('1[REDACTED]2 aXbbc');
    expect(r.redact(null)).toBeNull();
  });

  it('forgets the oldest values past its bound', () => {
    const r = new Redactor(2);
    r.add(['one1', 'two2', 'three3']);
    expect(r.size).toBe(2);
    expect(r.redact('one1 two2 three3')).toBe('one1 [REDACTED] [REDACTED]');
  });
});

describe('hmacVersion', () => {
  it('depends on the data and the key, and hides the values', () => {
    const k1 = Buffer.from('key-1');
    const v = hmacVersion(k1, { a: 'secret-value' });
    expect(v).toMatch(/^[0-9a-f]{16}$/);
    expect(hmacVersion(k1, { a: 'secret-value' })).toBe(v);
    expect(hmacVersion(k1, { a: 'secret-valuf' })).not.toBe(v);
    expect(hmacVersion(Buffer.from('key-2'), { a: 'secret-value' })).not.toBe(v);
    expect(hmacVersion(k1, { a: 'b', c: '' })).not.toBe(hmacVersion(k1, { a: 'bc' }));
  });
});
