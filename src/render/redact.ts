/**
 * The redactor: secret values out of whatever agents report (text-match.ts holds its views and matcher).
 */
import { parseAllDocuments, Scalar, visit } from 'yaml';
import { Matcher } from './text-match.js';

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
