/**
 * Drift: does the config an agent says it runs contain what we pushed? The effective config an
 * agent reports is not byte-comparable with ours: the collector re-serialises it with defaults
 * filled in, the Supervisor adds sections it owns, and secrets come back as "[REDACTED]". So the
 * desired config is checked as a *subset* of the effective one, structurally.
 */
import { isPlainObject } from '../render/merge.js';
import { parseConfigYaml } from '../render/yaml.js';

const REDACTED = '[REDACTED]';
/** Paths the OpAMP Supervisor owns or rewrites; never drift. */
const IGNORED = new Set(['extensions.opamp', 'service.telemetry']);
/** Lists the Supervisor appends to: ours must be contained, in any order. */
const SUPERSET_LISTS = new Set(['service.extensions']);
const MAX_DIFFERENCES = 10;

/** Differences ("path: what") between desired and effective; empty when effective contains desired. */
export function configDifferences(desired: unknown, effective: unknown): string[] {
  const out: string[] = [];
  walk(desired, effective, '', out);
  return out;
}

function walk(want: unknown, have: unknown, path: string, out: string[]): void {
  if (out.length >= MAX_DIFFERENCES || IGNORED.has(path)) return;
  if (have === REDACTED) return;
  if (isPlainObject(want)) {
    // An empty map ("otlp: {}", "grpc: {}") asks only for presence; defaults fill it in.
    if (Object.keys(want).length === 0) {
      if (have === undefined) out.push(`${path || '(root)'}: missing`);
      return;
    }
    if (!isPlainObject(have)) {
      out.push(`${path || '(root)'}: ${have === undefined ? 'missing' : `expected a map, found ${short(have)}`}`);
      return;
    }
    for (const [k, v] of Object.entries(want)) walk(v, have[k], path ? `${path}.${k}` : k, out);
    return;
  }
  if (Array.isArray(want)) {
    if (!Array.isArray(have)) {
      out.push(`${path}: ${have === undefined ? 'missing' : `expected a list, found ${short(have)}`}`);
      return;
    }
    if (SUPERSET_LISTS.has(path)) {
      for (const w of want) if (!have.some((h) => same(w, h))) out.push(`${path}: ${short(w)} missing`);
      return;
    }
    const scalars = want.every((w) => w === null || typeof w !== 'object');
    if (want.length !== have.length || (scalars && !want.every((w, i) => same(w, have[i])))) {
      out.push(`${path}: expected ${short(want)}, found ${short(have)}`);
      return;
    }
    want.forEach((w, i) => walk(w, have[i], `${path}[${i}]`, out));
    return;
  }
  if (want === null) return; // "key:" with no value: presence of the parent is enough
  // "${env:X}" and "${file:...}" are resolved by the collector: the effective value cannot be known here.
  if (typeof want === 'string' && want.includes('${')) return;
  // A scalar the effective config leaves out is not drift: the collector omits fields set to their
  // zero value when it re-serialises (e.g. debug's `verbosity: basic`). A different value is.
  if (have === undefined) return;
  if (!same(want, have)) out.push(`${path}: expected ${short(want)}, found ${short(have)}`);
}

const SCALAR_TYPES = new Set(['number', 'bigint', 'boolean', 'string']);

function same(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a instanceof Date || b instanceof Date) {
    // Timestamps (see render/yaml.ts): the same instant, however the zone is written.
    const t = (v: unknown) => (v instanceof Date ? v.getTime() : typeof v === 'string' ? Date.parse(v) : NaN);
    return t(a) === t(b) && !Number.isNaN(t(a));
  }
  if (typeof a === 'number' && typeof b === 'number' && Number.isNaN(a) && Number.isNaN(b)) return true;
  // The collector re-serialises scalars: 8192 vs "8192", true vs "true".
  if (SCALAR_TYPES.has(typeof a) && SCALAR_TYPES.has(typeof b)) return String(a) === String(b);
  if (isPlainObject(a) || Array.isArray(a)) return configDifferences(a, b).length === 0;
  return false;
}

function short(v: unknown): string {
  const s = JSON.stringify(v, (_, x: unknown) => (typeof x === 'bigint' ? String(x) : x)) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/**
 * Parses a YAML config body as the collector reads it (merge keys, Go's scalar readings: see
 * render/yaml.ts), so that the config we push and the effective config an agent reports are read
 * alike; null when it does not parse (then drift is not judged).
 */
export function parseConfigBody(body: string): unknown | null {
  try {
    return parseConfigYaml(body) ?? {};
  } catch {
    return null;
  }
}
