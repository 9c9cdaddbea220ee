/**
 * Text views and the matcher the redactor uses (redact.ts): a view maps each of its characters back
 * to offsets of the original text (whitespace folded, escapes decoded); the matcher is Aho–Corasick.
 */
function isWs(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x85 || c === 0x2028 || c === 0x2029;
}

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
export class Matcher {
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
