/**
 * Secrets in collector configs. A config names a value as `${secret:NAME/KEY}` (in string values,
 * whole or embedded); the Collector lists NAME in `spec.secretRefs`; the value comes from the
 * Secret NAME in the Collector's own namespace and is substituted into each push — never into
 * anything shown. Pure: the caller supplies the Secrets.
 */
import { createHmac } from 'node:crypto';
import { parseAllDocuments, Scalar, visit } from 'yaml';
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

export const REDACTED = '[REDACTED]';

/**
 * Replaces every secret value the bridge has substituted (current ones and, after a rotation,
 * recent earlier ones: an agent may still run them) with [REDACTED], in any text an agent reports
 * — effective configs, error messages, health — before it is stored, logged or shown.
 *
 * A value comes back in whatever form the agent's YAML or JSON writer chose, so the literal text
 * is not enough: a PEM key is a block scalar (`|`, `>`, any indentation and chomping, each line
 * indented), a value with quotes, tabs, control characters or non-ASCII is double-quoted with
 * escapes (`\n`, `\t`, `\"`, `\x01`, `\u00e9`, `\U0001F600`, surrogate pairs, escaped line
 * breaks when a long string is folded), or single-quoted with `''`. So each text is matched in
 * three views at once, each mapped back to the text's own offsets:
 *
 * - as written, and with backslash escapes decoded (once and, for JSON inside a quoted string,
 *   twice), every run of whitespace and line breaks read as one space — what block scalars,
 *   folding and re-indenting change;
 * - against each value, its `''`-quoted spelling, and (for a value of several lines) each of its
 *   lines of 8 characters or more on their own and any 16 consecutive characters of a line, so a
 *   fragment of a key (a PEM line quoted in a drift difference, an error, a truncated message) is
 *   found too.
 *
 * All of these are found with one automaton (Aho–Corasick) over every value: the cost of a call
 * is proportional to the text, however many values are known. A text of several lines that still
 * parses as YAML (or JSON) is then checked as a structure: any string scalar (value or key) still
 * holding a value or fragment in a form the text views missed is replaced whole and the document
 * written out again. Results for long texts are cached until the set of values changes: a fleet
 * reports few distinct effective configs, each many times.
 */
export class Redactor {
  readonly #values = new Map<string, true>();
  #matcher: Matcher | null = null;
  #seeds: Matcher | null = null;
  #dirty = false;
  readonly #cache = new Map<string, string>();
  #cachedChars = 0;

  constructor(private readonly maxValues = 10_000) {}

  get size(): number {
    return this.#values.size;
  }

  add(values: Iterable<string>): void {
    for (const v of values) {
      if (v === '') continue;
      if (this.#values.has(v)) {
        // Refresh its place: the oldest values are forgotten first.
        this.#values.delete(v);
        this.#values.set(v, true);
        continue;
      }
      this.#values.set(v, true);
      this.#dirty = true;
      if (this.#values.size > this.maxValues) this.#values.delete(this.#values.keys().next().value!);
    }
  }

  redact(text: string): string;
  redact(text: string | null | undefined): string | null | undefined;
  redact(text: string | null | undefined): string | null | undefined {
    if (!text || this.#values.size === 0) return text;
    if (this.#dirty || !this.#matcher) {
      this.#matcher = new Matcher(needlesOf(this.#values.keys()));
      this.#seeds = new Matcher(seedsOf(this.#values.keys()));
      this.#dirty = false;
      this.#cache.clear();
      this.#cachedChars = 0;
    }
    const cacheable = text.length >= CACHE_MIN_CHARS;
    if (cacheable) {
      const known = this.#cache.get(text);
      if (known !== undefined) return known;
    }
    const out = redactWith(this.#matcher, this.#seeds!, text);
    if (cacheable) {
      if (this.#cache.size >= CACHE_MAX_ENTRIES || this.#cachedChars + text.length + out.length > CACHE_MAX_CHARS) {
        this.#cache.clear();
        this.#cachedChars = 0;
      }
      this.#cache.set(text, out);
      this.#cachedChars += text.length + (out === text ? 0 : out.length);
    }
    return out;
  }
}

const CACHE_MIN_CHARS = 256;
const CACHE_MAX_ENTRIES = 2000;
const CACHE_MAX_CHARS = 32 << 20;
/** A line of a multi-line value at least this long (whitespace runs counted as one) is redacted on its own. */
export const MIN_FRAGMENT_CHARS = 8;
/** Any run of this many characters from a line of a multi-line value is redacted too... */
const WINDOW_CHARS = 16;
/** ...for values up to this size (a PEM key; not a CA bundle of thousands of lines). */
const MAX_WINDOWED_CHARS = 16 << 10;
/** Texts up to this size are also checked as YAML structure. */
const MAX_STRUCTURE_CHARS = 4 << 20;

/** Line breaks as YAML 1.1 readers (libyaml, yaml.v3) and JSON see them; whitespace around them folds. */
const WS = /[ \t\n\r\u0085\u2028\u2029]+/g;
const LINE_BREAK = /\r\n|[\n\r\u0085\u2028\u2029]/;

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x85 || c === 0x2028 || c === 0x2029;
}

/** A value as the views read text: whitespace runs as one space, none at either end. */
function canonical(s: string): string {
  return s.replace(WS, ' ').trim();
}

/** Every string to find, for these values: each value, its ''-quoted spelling, and the substantial lines of multi-line ones. */
function needlesOf(values: Iterable<string>): string[] {
  const out = new Set<string>();
  const put = (s: string, min: number) => {
    for (const form of s.includes("'") ? [s, s.replaceAll("'", "''")] : [s]) {
      const c = canonical(form);
      if (c.length >= min) out.add(c);
    }
  };
  for (const v of values) {
    put(v, 1);
    if (!LINE_BREAK.test(v)) continue;
    for (const line of v.split(LINE_BREAK)) {
      put(line, MIN_FRAGMENT_CHARS);
      // Any stretch of a line this long too (a message that quotes the start of a key line).
      if (v.length > MAX_WINDOWED_CHARS) continue;
      const c = canonical(line);
      for (let i = 0; i + WINDOW_CHARS < c.length; i++) put(c.slice(i, i + WINDOW_CHARS), WINDOW_CHARS);
    }
  }
  return [...out];
}

/**
 * What every textual form of each value keeps: its runs of ASCII letters and digits (the longest
 * few of at least SEED_CHARS, or the whole value's when it has none that long). Quoting, escaping
 * (JSON, YAML, Go's %q escape only other characters), folding and re-indenting leave them whole.
 */
function seedsOf(values: Iterable<string>): string[] {
  const out = new Set<string>();
  for (const v of values) {
    const runs = v.match(/[A-Za-z0-9]+/g) ?? [];
    const long = runs.filter((r) => r.length >= SEED_CHARS);
    if (long.length > 0) for (const r of long) out.add(r);
    else {
      const best = runs.sort((a, b) => b.length - a.length)[0];
      // A value with no letters or digits at all: its first character, so the structure is always checked.
      out.add(best ?? v.slice(0, 1));
    }
  }
  return [...out];
}
const SEED_CHARS = 8;

/** Text as a matcher reads it, with the offsets in the original text each of its characters came from. */
interface View {
  s: string;
  /** Start (inclusive) and end (exclusive) in the original text of view character i; absent: identity. */
  start?: Int32Array;
  end?: Int32Array;
}

const startOf = (v: View, i: number) => (v.start ? v.start[i]! : i);
const endOf = (v: View, i: number) => (v.end ? v.end[i]! : i + 1);

/** Builds a view one character (or UTF-16 unit) at a time. */
class ViewBuilder {
  readonly #parts: string[] = [];
  #start: Int32Array;
  #end: Int32Array;
  #n = 0;
  constructor(capacity: number) {
    this.#start = new Int32Array(Math.max(16, capacity));
    this.#end = new Int32Array(Math.max(16, capacity));
  }
  push(ch: string, start: number, end: number): void {
    for (let k = 0; k < ch.length; k++) {
      if (this.#n === this.#start.length) {
        const grow = (a: Int32Array) => {
          const b = new Int32Array(a.length * 2);
          b.set(a);
          return b;
        };
        this.#start = grow(this.#start);
        this.#end = grow(this.#end);
      }
      this.#start[this.#n] = start;
      this.#end[this.#n] = end;
      this.#n++;
    }
    this.#parts.push(ch);
  }
  build(): View {
    return { s: this.#parts.join(''), start: this.#start.subarray(0, this.#n), end: this.#end.subarray(0, this.#n) };
  }
}

/** Every run of whitespace and line breaks as one space. */
function collapse(v: View): View {
  const s = v.s;
  let i = 0;
  while (i < s.length && !(isWs(s.charCodeAt(i)) && (s.charCodeAt(i) !== 0x20 || isWs(s.charCodeAt(i + 1))))) i++;
  if (i === s.length) return v; // nothing but single spaces: as it is
  const b = new ViewBuilder(s.length);
  for (let j = 0; j < i; j++) b.push(s[j]!, startOf(v, j), endOf(v, j));
  while (i < s.length) {
    if (isWs(s.charCodeAt(i))) {
      const from = i;
      while (i + 1 < s.length && isWs(s.charCodeAt(i + 1))) i++;
      b.push(' ', startOf(v, from), endOf(v, i));
    } else b.push(s[i]!, startOf(v, i), endOf(v, i));
    i++;
  }
  return b.build();
}

const SIMPLE_ESCAPES: Record<string, string> = {
  '0': '\0', a: '\x07', b: '\b', t: '\t', '\t': '\t', n: '\n', v: '\v', f: '\f', r: '\r', e: '\x1b',
  ' ': ' ', '"': '"', "'": "'", '/': '/', '\\': '\\', N: '\u0085', _: '\u00a0', L: '\u2028', P: '\u2029',
};
const HEX = /^[0-9a-fA-F]+$/;

/**
 * Backslash escapes decoded wherever they stand, as YAML double-quoted scalars, JSON and Go's %q
 * write them: \n \t \" \\ \/ \xXX \uXXXX (surrogate pairs come out as the pair) \UXXXXXXXX, and an
 * escaped line break (with the next line's indentation) as nothing.
 */
function decodeEscapes(v: View): View {
  const s = v.s;
  const b = new ViewBuilder(s.length);
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (c === '\\' && i + 1 < s.length) {
      const e = s[i + 1]!;
      const simple = SIMPLE_ESCAPES[e];
      if (simple !== undefined) {
        b.push(simple, startOf(v, i), endOf(v, i + 1));
        i += 2;
        continue;
      }
      const digits = e === 'x' ? 2 : e === 'u' ? 4 : e === 'U' ? 8 : 0;
      if (digits > 0) {
        const hex = s.slice(i + 2, i + 2 + digits);
        const cp = hex.length === digits && HEX.test(hex) ? parseInt(hex, 16) : -1;
        if (cp >= 0 && cp <= 0x10ffff) {
          b.push(e === 'u' ? String.fromCharCode(cp) : String.fromCodePoint(cp), startOf(v, i), endOf(v, i + 1 + digits));
          i += 2 + digits;
          continue;
        }
      }
      if (e === '\n' || e === '\r') {
        // An escaped line break: the break and the next line's leading blanks are not content.
        let j = i + 2;
        if (e === '\r' && s[j] === '\n') j++;
        while (j < s.length && (s[j] === ' ' || s[j] === '\t')) j++;
        i = j;
        continue;
      }
    }
    b.push(c, startOf(v, i), endOf(v, i));
    i++;
  }
  return b.build();
}

/**
 * Aho–Corasick over all needles; reports, for every position, the longest needle ending there.
 * Nodes with one child keep it inline; others keep a Map.
 */
class Matcher {
  readonly #chr: number[] = [-1];
  readonly #kid: number[] = [0];
  readonly #more: (Map<number, number> | undefined)[] = [undefined];
  readonly #fail: number[] = [0];
  readonly #out: number[] = [0];
  readonly empty: boolean;

  constructor(needles: readonly string[]) {
    this.empty = needles.length === 0;
    for (const n of needles) {
      let node = 0;
      for (let i = 0; i < n.length; i++) {
        const c = n.charCodeAt(i);
        let next = this.#goto(node, c);
        if (next < 0) {
          next = this.#chr.length;
          this.#chr.push(-1);
          this.#kid.push(0);
          this.#more.push(undefined);
          this.#fail.push(0);
          this.#out.push(0);
          this.#link(node, c, next);
        }
        node = next;
      }
      this.#out[node] = Math.max(this.#out[node]!, n.length);
    }
    // Breadth first: failure links, and the longest needle ending at each node through them.
    const queue: number[] = [];
    this.#children(0, (_, v) => queue.push(v));
    for (let q = 0; q < queue.length; q++) {
      const u = queue[q]!;
      this.#children(u, (c, v) => {
        let f = this.#fail[u]!;
        let t = this.#goto(f, c);
        while (t < 0 && f !== 0) {
          f = this.#fail[f]!;
          t = this.#goto(f, c);
        }
        this.#fail[v] = t > 0 && t !== v ? t : 0;
        this.#out[v] = Math.max(this.#out[v]!, this.#out[this.#fail[v]!]!);
        queue.push(v);
      });
    }
  }

  #goto(node: number, c: number): number {
    if (this.#chr[node] === c) return this.#kid[node]!;
    return this.#more[node]?.get(c) ?? -1;
  }

  #link(node: number, c: number, child: number): void {
    if (this.#chr[node] === -1) {
      this.#chr[node] = c;
      this.#kid[node] = child;
    } else (this.#more[node] ??= new Map()).set(c, child);
  }

  #children(node: number, f: (c: number, child: number) => void): void {
    if (this.#chr[node] !== -1) f(this.#chr[node]!, this.#kid[node]!);
    for (const [c, v] of this.#more[node] ?? []) f(c, v);
  }

  /** Spans [start, end) of the original text where a needle occurs in view `v`. */
  scan(v: View, spans: number[]): void {
    const s = v.s;
    let state = 0;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      let t = this.#goto(state, c);
      while (t < 0 && state !== 0) {
        state = this.#fail[state]!;
        t = this.#goto(state, c);
      }
      state = t < 0 ? 0 : t;
      const len = this.#out[state]!;
      if (len > 0) spans.push(startOf(v, i - len + 1), endOf(v, i));
    }
  }

  /** Spans in `text` where a value or fragment occurs, in any of the views; merged, in order. */
  find(text: string): number[] {
    const spans: number[] = [];
    if (this.empty) return spans;
    const raw: View = { s: text };
    this.scan(collapse(raw), spans);
    if (text.includes('\\')) {
      const once = decodeEscapes(raw);
      this.scan(collapse(once), spans);
      if (once.s.includes('\\')) this.scan(collapse(decodeEscapes(once)), spans);
    }
    if (spans.length <= 2) return spans;
    const pairs: [number, number][] = [];
    for (let k = 0; k < spans.length; k += 2) pairs.push([spans[k]!, spans[k + 1]!]);
    pairs.sort((a, b) => a[0] - b[0] || b[1] - a[1]);
    const merged: number[] = [];
    for (const [a, z] of pairs) {
      const last = merged.length - 1;
      if (last > 0 && a <= merged[last]!) merged[last] = Math.max(merged[last]!, z);
      else merged.push(a, z);
    }
    return merged;
  }
}

function redactWith(m: Matcher, seeds: Matcher, text: string): string {
  const spans = m.find(text);
  let out = text;
  if (spans.length > 0) {
    const parts: string[] = [];
    let at = 0;
    for (let k = 0; k < spans.length; k += 2) {
      parts.push(text.slice(at, spans[k]), REDACTED);
      at = spans[k + 1]!;
    }
    parts.push(text.slice(at));
    out = parts.join('');
  }
  // The structural pass parses the text (about 1 ms per KiB): only for a text that holds what every
  // form of some value keeps — a run of its letters and digits, which no quoting, escaping, folding
  // or re-indenting changes.
  if (out.length <= MAX_STRUCTURE_CHARS && LINE_BREAK.test(out) && (spans.length > 0 || seeds.find(out).length > 0)) return redactStructure(m, out) ?? out;
  return out;
}

/**
 * The text read as YAML (JSON is YAML): every string scalar, key or value, that still holds a
 * value or fragment is replaced whole by [REDACTED] and the documents are written out again.
 * Null when the text is not YAML or nothing was found.
 */
function redactStructure(m: Matcher, text: string): string | null {
  let docs: ReturnType<typeof parseAllDocuments>;
  try {
    docs = parseAllDocuments(text, { schema: 'failsafe', uniqueKeys: false, prettyErrors: false });
  } catch {
    return null;
  }
  if (!Array.isArray(docs) || docs.length === 0) return null;
  let changed = false;
  for (const doc of docs) {
    if (doc.errors.length > 0) return null;
    visit(doc, {
      Scalar(_, node) {
        if (typeof node.value === 'string' && node.value !== REDACTED && m.find(node.value).length > 0) {
          node.value = REDACTED;
          node.type = Scalar.QUOTE_DOUBLE;
          changed = true;
        }
      },
    });
    // A comment is text too.
    visit(doc, (_, node) => {
      const n = node as { comment?: string | null; commentBefore?: string | null };
      if (n.comment && m.find(n.comment).length > 0) (n.comment = ` ${REDACTED}`), (changed = true);
      if (n.commentBefore && m.find(n.commentBefore).length > 0) (n.commentBefore = ` ${REDACTED}`), (changed = true);
    });
    if (doc.comment && m.find(doc.comment).length > 0) (doc.comment = ` ${REDACTED}`), (changed = true);
    if (doc.commentBefore && m.find(doc.commentBefore).length > 0) (doc.commentBefore = ` ${REDACTED}`), (changed = true);
  }
  if (!changed) return null;
  try {
    return docs.map((d) => d.toString({ lineWidth: 0 })).join('');
  } catch {
    return null;
  }
}

/** A version for a Secret's data that reveals nothing about it: an HMAC under a key of this process. */
export function hmacVersion(key: Buffer, data: Readonly<Record<string, string>>): string {
  const h = createHmac('sha256', key);
  for (const k of Object.keys(data).sort()) h.update(`${k.length}:${k}${data[k]!.length}:`).update(data[k]!);
  return h.digest('hex').slice(0, 16);
}
