/**
 * The Redactor against every form a YAML or JSON writer gives a secret value: the `yaml` package's
 * styles (plain, quoted, literal and folded blocks, folded quoted lines, any indentation), JSON,
 * and Go's own yaml.v3 / encoding/json / %q output (via ./goyaml), plus fragments of multi-line
 * values. A value is "gone" when neither it nor any of its lines of 8+ characters remains in the
 * text, in the text as logs print it (JSON-escaped), or in any string the redacted text parses to.
 */
import { generateKeyPairSync } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments, stringify, type ToStringOptions } from 'yaml';
import { Redactor, REDACTED } from '../../../src/render/redact.js';
import { parseConfigYaml, stringifyConfigYaml } from '../../../src/render/yaml.js';
import { configDifferences } from '../../../src/fleet/drift.js';
import { skipUnlessOnCi } from '../../harness/tools.js';
import { ensureGoyaml, goMarshal, goyamlMissingReason } from './goyaml.js';

const pemEc = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const pemRsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();

/** The values under test, by what makes them hard. */
export const HARD_VALUES: Record<string, string> = {
  'PEM key (EC, pkcs8)': pemEc,
  'PEM key (RSA, pkcs1)': pemRsa,
  'PEM without trailing newline': pemEc.trimEnd(),
  'PEM with CRLF': pemEc.replace(/\n/g, '\r\n'),
  quotes: `it's "quoted" \\back\\slash 'single'`,
  'newline and tab': 'line-one-value\n\tline-two-value',
  unicode: 'clé-секрет-😀-密钥-\u2028-sep',
  'control characters': 'ctl\u0001\u0002\u001b\u007f\u0085-end-of-value',
  'trailing newline': 'trailing-value-xyz\n',
  'leading and trailing spaces': '  padded secret value  ',
  'long with spaces': 'this is a long secret passphrase with many words that runs well beyond eighty characters wide for folding',
  'long without spaces': `tok_${'A1b2C3d4'.repeat(16)}`,
  'yaml-looking': '- a: b\n  "c": [d, e] # f\n',
};

function linesOf(v: string): string[] {
  return v
    .split(/\r\n|[\n\r\u0085\u2028\u2029]/)
    .map((l) => l.replace(/[ \t]+/g, ' ').trim())
    .filter((l) => l.length >= 8);
}

/** What must never be seen of `v`: the value and its substantial lines. */
function leaks(v: string): string[] {
  const out = [v, v.trim()].filter((s) => s.length > 0);
  if (/[\n\r\u0085\u2028\u2029]/.test(v)) out.push(...linesOf(v));
  return [...new Set(out)];
}

function strings(node: unknown, out: string[] = []): string[] {
  if (typeof node === 'string') out.push(node);
  else if (Array.isArray(node)) for (const x of node) strings(x, out);
  else if (node && typeof node === 'object') for (const [k, x] of Object.entries(node)) out.push(k), strings(x, out);
  return out;
}

/** Every string a YAML/JSON text holds (keys and values), or null when it is not YAML. */
function parsedStrings(text: string): string[] | null {
  const docs = parseAllDocuments(text, { schema: 'failsafe', uniqueKeys: false });
  if (!Array.isArray(docs) || docs.some((d) => d.errors.length > 0)) return null;
  return docs.flatMap((d) => strings(d.toJS()));
}

function expectGone(v: string, original: string, redacted: string, where: string, document = true): void {
  const logged = JSON.stringify(redacted);
  for (const l of leaks(v)) {
    expect(redacted.includes(l), `${where}: shows ${JSON.stringify(l)} in\n${redacted}`).toBe(false);
    const escaped = JSON.stringify(l).slice(1, -1);
    expect(logged.includes(escaped), `${where}: logs ${escaped}`).toBe(false);
  }
  // Read as a document, no string holds the value or a line of it.
  if (document && parsedStrings(original) !== null) {
    const after = parsedStrings(redacted);
    expect(after, `${where}: no longer parses:\n${redacted}`).not.toBeNull();
    for (const s of after!) for (const l of leaks(v)) expect(s.includes(l), `${where}: a scalar still holds ${JSON.stringify(l)}`).toBe(false);
  }
}

/** The forms the `yaml` package (the bridge's, and many JS agents') writes `v` in. */
function jsYamlForms(v: string): string[] {
  const docs: unknown[] = [{ k: v }, { exporters: { otlp: { headers: { key: v, other: 'x' } } } }, [v, { k: [v] }]];
  const opts: ToStringOptions[] = [];
  for (const defaultStringType of ['PLAIN', 'QUOTE_DOUBLE', 'QUOTE_SINGLE', 'BLOCK_LITERAL', 'BLOCK_FOLDED'] as const) {
    for (const indent of [2, 4, 8]) for (const lineWidth of [0, 20, 80]) opts.push({ defaultStringType, indent, lineWidth, minContentWidth: 0 });
  }
  opts.push({ blockQuote: 'folded' }, { blockQuote: false }, { doubleQuotedAsJSON: true, defaultStringType: 'QUOTE_DOUBLE' }, { doubleQuotedMinMultiLineLength: 10, lineWidth: 30 });
  const out = new Set<string>();
  for (const d of docs) {
    for (const o of opts) out.add(stringify(d, o));
    out.add(stringifyConfigYaml(d));
    out.add(JSON.stringify(d));
    out.add(JSON.stringify(d, null, 2));
    // JSON written ASCII-only (Python's json.dumps default): \uXXXX, surrogate pairs for astral.
    out.add(JSON.stringify(d).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
  }
  return [...out];
}

/** Hand-written block scalars: indentation indicators, keep/strip chomping, a deeper indent. */
function handForms(v: string): string[] {
  if (/[\r\u0000-\u0008\u000b-\u001f\u007f\u0085\u2028\u2029]/.test(v) || v.startsWith(' ')) return [];
  const body = (ind: string) => v.replace(/\n$/, '').split('\n').map((l) => ind + l).join('\n');
  return [`a:\n  k: |+2\n${body('    ')}\n\nb: 1\n`, `k: >-\n${body('      ')}\nb: 1\n`, `- |4-\n${body('      ')}\n- x\n`];
}

/** Texts that quote the value: error messages as agents write them. */
function messageForms(v: string): string[] {
  const lines = linesOf(v);
  const out = [
    `failed to apply: ${v}`,
    `failed: ${JSON.stringify(v)}`,
    `invalid header value ${JSON.stringify(JSON.stringify({ key: v }))}`,
    `error decoding 'exporters': '${v.replaceAll("'", "''")}' is not valid`,
  ];
  if (lines.length > 1) {
    const line = lines[1]!;
    out.push(`unexpected ${line} at line 2`, `truncated: ${line.slice(0, 24)}…`, `${lines[0]}\n${line}`);
  }
  return out;
}

describe('Redactor: every form a value takes', () => {
  for (const [name, v] of Object.entries(HARD_VALUES)) {
    it(`redacts ${name} in the yaml package's forms, block scalars, JSON and messages`, () => {
      const r = new Redactor();
      r.add([v]);
      // Only forms that really carry the value (the yaml package folds a few with leading spaces wrongly).
      const documents = [...jsYamlForms(v), ...handForms(v)].filter((text) => parsedStrings(text)?.some((s) => s === v || s === v.replace(/\n$/, '')));
      expect(documents.length).toBeGreaterThan(40);
      for (const [i, text] of documents.entries()) expectGone(v, text, r.redact(text), `form ${i}:\n${text}`);
      for (const text of messageForms(v)) expectGone(v, text, r.redact(text), `message:\n${text}`, false);
    });
  }

  it('keeps everything else as it was, and plain values redact the way they always did', () => {
    const r = new Redactor();
    r.add(['s3cr3t-value', pemEc]);
    const text = 'exporters:\n  otlp:\n    endpoint: https://x\n    headers:\n      k: s3cr3t-value\n      tls: |\n' + pemEc.trimEnd().replace(/^/gm, '        ') + '\n    compression: gzip\n';
    const out = r.redact(text);
    expect(out).toBe('exporters:\n  otlp:\n    endpoint: https://x\n    headers:\n      k: [REDACTED]\n      tls: |\n        [REDACTED]\n    compression: gzip\n');
    const clean = 'receivers:\n  otlp: {}\n# comment\n';
    expect(r.redact(clean)).toBe(clean);
    expect(r.redact('token "s3cr3t-value" refused')).toBe('token "[REDACTED]" refused');
  });

  it('redacts comments, keys and escapes inside JSON strings', () => {
    const r = new Redactor();
    const v = 'abc-def-ghi-jkl';
    r.add([v]);
    expect(r.redact(`a: x # ${v}\nb: 1\n`)).toBe('a: x # [REDACTED]\nb: 1\n');
    expect(r.redact(`${v}: 1\n`)).toBe('[REDACTED]: 1\n');
    expect(r.redact(`{"k": "abc-def-\\u0067hi-jkl", "n": 1}\n`)).toBe('{"k": "[REDACTED]", "n": 1}\n');
    expect(r.redact(`{"k": "abc-def-\\\n   ghi-jkl"}`)).toBe('{"k": "[REDACTED]"}');
  });

  it('finds fragments of multi-line values: each line, and any 16 characters of one', () => {
    const r = new Redactor();
    r.add([pemRsa]);
    const body = pemRsa.split('\n')[3]!;
    expect(body.length).toBeGreaterThan(40);
    for (const text of [`x ${body} y`, `quoted "${body.slice(5, 30)}..."`, `drift: expected [REDACTED], found ${body.slice(0, 20)}`]) {
      const out = r.redact(text);
      expect(out).toContain(REDACTED);
      for (let i = 0; i + 16 <= body.length; i++) expect(out.includes(body.slice(i, i + 16))).toBe(false);
    }
    // Short lines and single-line values are not cut into fragments.
    const r2 = new Redactor();
    r2.add(['single-line-secret-value']);
    expect(r2.redact('single-line-secret')).toBe('single-line-secret');
  });

  it('leaves drift judgeable: desired and effective configs redact to the same structure', () => {
    const r = new Redactor();
    const vals = Object.values(HARD_VALUES);
    r.add(vals);
    const config = { exporters: Object.fromEntries(vals.map((v, i) => [`otlp/${i}`, { endpoint: 'https://x', headers: { key: v } }])) };
    const desired = parseConfigYaml(r.redact(stringifyConfigYaml(config)));
    for (const effective of [stringify(config, { indent: 4 }), JSON.stringify(config, null, 2), stringify(config, { defaultStringType: 'QUOTE_DOUBLE', lineWidth: 30 })]) {
      const shown = r.redact(effective);
      for (const v of vals) expectGone(v, effective, shown, effective);
      expect(configDifferences(desired, parseConfigYaml(shown))).toEqual([]);
    }
  });

  it('costs time in proportion to the text, not to the number of values', () => {
    const r = new Redactor();
    const many = Array.from({ length: 9_000 }, (_, i) => `value-${i}-${(i * 2654435761) % 1e9}`);
    r.add([...many, pemRsa, pemEc]);
    const config = { exporters: Object.fromEntries(Array.from({ length: 400 }, (_, i) => [`otlp/${i}`, { endpoint: `https://e${i}.example:4317`, headers: { k: many[i * 7]!, 'x-tenant': `t${i}` } }])) };
    const text = stringify(config, { indent: 4 }) + `tls: |\n${pemRsa.replace(/^/gm, '  ')}`;
    expect(text.length).toBeGreaterThan(50_000);
    r.redact('warm up');
    const t0 = performance.now();
    const out = r.redact(text);
    const first = performance.now() - t0;
    for (let i = 0; i < 400; i += 37) expect(out).not.toContain(many[i * 7]!);
    expectGone(pemRsa, text, out, 'large config');
    expect(first).toBeLessThan(1500);
    // The same text again (thousands of agents report it): cached.
    const t1 = performance.now();
    expect(r.redact(text)).toBe(out);
    expect(performance.now() - t1).toBeLessThan(50);
  });
});

const skipGo = skipUnlessOnCi('redact.test', goyamlMissingReason());

describe.skipIf(skipGo)("Redactor against Go's own serialisations (yaml.v3, encoding/json, fmt)", () => {
  let bin: string;
  beforeAll(async () => {
    bin = await ensureGoyaml();
  }, 600_000);

  it('redacts every form Go writes each hard value in', () => {
    const values = Object.values(HARD_VALUES);
    const forms = goMarshal(bin, values);
    const r = new Redactor();
    r.add(values);
    for (const [i, v] of values.entries()) {
      expect(forms[i]!.length).toBeGreaterThan(10);
      for (const text of forms[i]!) expectGone(v, text, r.redact(text), `Go form of ${JSON.stringify(v).slice(0, 40)}:\n${text}`);
    }
  });
});
