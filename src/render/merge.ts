/**
 * Deep merge with the OpAMP Supervisor's rule: maps merge key by key, anything else (lists,
 * scalars) is replaced by the later value. Inputs are not modified.
 */
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** A mapping: not null, a list, or a timestamp (a YAML timestamp is read as a Date, see ./yaml.ts). */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

export function deepMerge(base: unknown, over: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(over)) return structuredClone(over);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(base)) out[k] = structuredClone(v);
  for (const [k, v] of Object.entries(over)) {
    out[k] = Object.prototype.hasOwnProperty.call(out, k) ? deepMerge(out[k], v) : structuredClone(v);
  }
  return out;
}
