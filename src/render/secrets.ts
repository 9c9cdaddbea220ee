/**
 * Secrets in collector configs. A config names a value as `${secret:NAME/KEY}` (in string values,
 * whole or embedded); the Collector lists NAME in `spec.secretRefs`; the value comes from the
 * Secret NAME in the Collector's own namespace and is substituted into each push — never into
 * anything shown. Pure: the caller supplies the Secrets.
 */
import { createHmac } from 'node:crypto';
import { isPlainObject } from './merge.js';

/** `${secret:NAME/KEY}`: NAME an RFC 1123 subdomain, KEY a Secret data key. */
const REF = /\$\{secret:([a-z0-9]([-a-z0-9.]*[a-z0-9])?)\/([-._a-zA-Z0-9]+)\}/g;
const LOOKS_LIKE_REF = /\$\{secret:/;

export interface SecretValue {
  /** Data, decoded as UTF-8. */
  data: Readonly<Record<string, string>>;
  /**
   * Changes whenever the data changes and reveals nothing about it (a resourceVersion, or an HMAC
   * under a key of the process). Goes into config hashes, which are shown, so never the values.
   */
  version: string;
  /** Set when the Secret exists but may not be used in configs, saying why (nothing is substituted). */
  refused?: string;
}

export interface SecretSource {
  get(namespace: string, name: string): SecretValue | undefined;
}

export interface SecretReference {
  name: string;
  key: string;
  /** Where in the config, e.g. exporters.otlp.headers.api-key */
  path: string;
}

/** Every `${secret:...}` reference in a config's string values, and malformed ones as issues. */
export function secretReferences(config: unknown): { refs: SecretReference[]; issues: string[] } {
  const refs: SecretReference[] = [];
  const issues: string[] = [];
  walkStrings(config, '', (s, path) => {
    if (!LOOKS_LIKE_REF.test(s)) return s;
    let found = 0;
    for (const m of s.matchAll(REF)) {
      refs.push({ name: m[1]!, key: m[3]!, path });
      found++;
    }
    const rest = s.replace(REF, '');
    if (LOOKS_LIKE_REF.test(rest) || found === 0) issues.push(`${path || '(root)'}: malformed secret reference; write \${secret:SECRET-NAME/KEY}`);
    return s;
  });
  return { refs, issues };
}

export interface Substituted {
  config: unknown;
  /** Unresolvable references (no such Secret or key); when non-empty nothing may be pushed. */
  issues: string[];
  /** "name/key@version" of every value used, sorted: what the config hash covers instead of the values. */
  versions: string[];
  /** The values substituted, for redaction. */
  values: string[];
}

/** Substitutes secret references in a copy of `config`, with Secrets of `namespace` only. */
export function substituteSecrets(config: unknown, namespace: string, source: SecretSource): Substituted {
  const issues = new Set<string>();
  const versions = new Set<string>();
  const values = new Set<string>();
  const out = walkStrings(structuredClone(config), '', (s, path) => {
    if (!LOOKS_LIKE_REF.test(s)) return s;
    return s.replace(REF, (whole, name: string, _tail: string, key: string) => {
      const secret = source.get(namespace, name);
      if (!secret) {
        issues.add(`${path}: Secret ${namespace}/${name} not found`);
        return whole;
      }
      if (secret.refused) {
        issues.add(`${path}: Secret ${namespace}/${name} ${secret.refused}`);
        return whole;
      }
      const value = secret.data[key];
      if (value === undefined) {
        issues.add(`${path}: Secret ${namespace}/${name} has no key ${key}`);
        return whole;
      }
      versions.add(`${name}/${key}@${secret.version}`);
      if (value !== '') values.add(value);
      return value;
    });
  });
  return { config: out, issues: [...issues], versions: [...versions].sort(), values: [...values] };
}

/** Applies `f` to every string value (not keys), in place, and returns the (possibly new) root. */
function walkStrings(node: unknown, path: string, f: (s: string, path: string) => string): unknown {
  if (typeof node === 'string') return f(node, path);
  if (Array.isArray(node)) {
    for (let i = 0; i < node.length; i++) node[i] = walkStrings(node[i], `${path}[${i}]`, f);
    return node;
  }
  if (isPlainObject(node)) {
    for (const [k, v] of Object.entries(node)) node[k] = walkStrings(v, path ? `${path}.${k}` : k, f);
  }
  return node;
}

/** A version for a Secret's data that reveals nothing about it: an HMAC under a key of this process. */
export function hmacVersion(key: Buffer, data: Readonly<Record<string, string>>): string {
  const h = createHmac('sha256', key);
  for (const k of Object.keys(data).sort()) h.update(`${k.length}:${k}${data[k]!.length}:`).update(data[k]!);
  return h.digest('hex').slice(0, 16);
}
