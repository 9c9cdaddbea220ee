/**
 * Collector config YAML, read and written the way the OpenTelemetry Collector reads it (see
 * docs/adr/0009-yaml-as-the-collector-reads-it.md). The collector's config loader
 * (go.opentelemetry.io/collector/confmap, NewRetrievedFromYAML) and the OpAMP Supervisor (koanf's
 * YAML parser) both decode with go.yaml.in/yaml/v3 into an `any`. That library:
 *
 * - honours `<<` merge keys (plain `<<` only; a quoted or `!!str`-tagged "<<" is an ordinary key),
 *   explicit keys win over merged ones wherever they stand, earlier maps of a merge list win;
 * - reads true/True/TRUE/false/False/FALSE as booleans, but yes/no/on/off/y/n as strings;
 * - reads integers with Go's strconv.ParseInt(base 0) after dropping every "_": 0777 is octal
 *   (511), 0o17, 0x1F, 0b101, -0x1F, +12 and 1_000 are integers; too big for int64 → uint64 →
 *   float; "08" and "09.5" are floats;
 * - reads YAML 1.2 floats plus .inf/.nan spellings; a float out of range ("1e400") is a string;
 * - reads ~/null/Null/NULL and the empty scalar as null;
 * - reads plain YYYY-M-D[(T|t| )h:m:s[.frac][Z|±hh:mm]] as a timestamp (time.Time), which the
 *   collector will not decode into a string field;
 * - reads sexagesimal (1:20) and everything else as strings.
 *
 * parseConfigYaml() reads the same values (timestamps as Date, integers beyond 2^53 as BigInt);
 * stringifyConfigYaml() writes text with no anchors, aliases or merge keys, in which every string
 * Go would read as something else (and every YAML 1.1 boolean-looking string) is quoted, so that
 * Go reads exactly the value given.
 */
import { isScalar, parseDocument, Scalar, stringify, visit, type ScalarTag, type Tags } from 'yaml';

export type GoScalar =
  | { kind: 'null'; value: null }
  | { kind: 'bool'; value: boolean }
  | { kind: 'int'; value: number | bigint }
  | { kind: 'float'; value: number }
  | { kind: 'timestamp'; value: Date }
  | { kind: 'str'; value: string };

const MAP: Record<string, GoScalar> = {};
for (const s of ['true', 'True', 'TRUE']) MAP[s] = { kind: 'bool', value: true };
for (const s of ['false', 'False', 'FALSE']) MAP[s] = { kind: 'bool', value: false };
for (const s of ['', '~', 'null', 'Null', 'NULL']) MAP[s] = { kind: 'null', value: null };
for (const s of ['.nan', '.NaN', '.NAN']) MAP[s] = { kind: 'float', value: NaN };
for (const s of ['.inf', '.Inf', '.INF', '+.inf', '+.Inf', '+.INF']) MAP[s] = { kind: 'float', value: Infinity };
for (const s of ['-.inf', '-.Inf', '-.INF']) MAP[s] = { kind: 'float', value: -Infinity };

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;
const YAML_STYLE_FLOAT = /^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/;

function intValue(n: bigint): number | bigint {
  return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
}

/** Go's strconv.ParseInt / ParseUint digits in one base (no sign, no "_"); null when not valid. */
function digitsIn(s: string, base: 2 | 8 | 10 | 16): bigint | null {
  const re = { 2: /^[01]+$/, 8: /^[0-7]+$/, 10: /^[0-9]+$/, 16: /^[0-9a-fA-F]+$/ }[base];
  if (!re.test(s)) return null;
  const prefix = { 2: '0b', 8: '0o', 10: '', 16: '0x' }[base];
  return BigInt(prefix + s);
}

/** strconv.ParseInt(s, 0, 64) (signed) or ParseUint(s, 0, 64) (unsigned: no sign allowed). */
function parseIntBase0(s: string, unsigned: boolean): bigint | null {
  let sign = 1n;
  let body = s;
  if (!unsigned && (s[0] === '+' || s[0] === '-')) {
    if (s[0] === '-') sign = -1n;
    body = s.slice(1);
  }
  let v: bigint | null;
  if (body.length >= 3 && body[0] === '0' && /[bBoOxX]/.test(body[1]!)) {
    const b = body[1]!.toLowerCase();
    v = digitsIn(body.slice(2), b === 'b' ? 2 : b === 'o' ? 8 : 16);
  } else if (body[0] === '0' && body.length > 1) {
    v = digitsIn(body.slice(1), 8);
  } else {
    v = digitsIn(body, 10);
  }
  if (v === null) return null;
  v *= sign;
  if (unsigned ? v > UINT64_MAX : v < INT64_MIN || v > INT64_MAX) return null;
  return v;
}

/** strconv.ParseInt(s, base, 64): an optional sign, then digits. */
function parseIntBase(s: string, base: 2 | 8): bigint | null {
  let sign = 1n;
  let body = s;
  if (s[0] === '+' || s[0] === '-') {
    if (s[0] === '-') sign = -1n;
    body = s.slice(1);
  }
  const v = digitsIn(body, base);
  if (v === null) return null;
  const r = v * sign;
  return r < INT64_MIN || r > INT64_MAX ? null : r;
}

/** Go's time.Parse with yaml.v3's allowed timestamp layouts; null when none matches. */
function parseTimestamp(s: string): Date | null {
  if (!/^[0-9]{4}-/.test(s)) return null;
  const m =
    /^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})(?:(?:([Tt])| +)([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})(?:[.,]([0-9]+))?(Z|[+-][0-9]{2}:[0-9]{2})?)?$/.exec(s);
  if (!m) return null;
  const [, y, mo, d, t, h, mi, sec, frac, zone] = m;
  // "T"/"t" layouts need a zone; the space-separated layout has none.
  if (h !== undefined && (t !== undefined) !== (zone !== undefined)) return null;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  if (month < 1 || month > 12 || day < 1) return null;
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const daysInMonth = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]!;
  if (day > daysInMonth) return null;
  const hour = Number(h ?? 0);
  const minute = Number(mi ?? 0);
  const second = Number(sec ?? 0);
  if (hour > 23 || minute > 59 || second > 59) return null;
  let offsetMin = 0;
  if (zone && zone !== 'Z') {
    const oh = Number(zone.slice(1, 3));
    const om = Number(zone.slice(4, 6));
    if (oh > 24 || om > 60) return null;
    offsetMin = (zone[0] === '-' ? -1 : 1) * (oh * 60 + om);
  }
  const ms = frac ? Math.floor(Number(`0.${frac.slice(0, 9)}`) * 1000 + 1e-6) : 0;
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, ms);
  return new Date(date.getTime() - offsetMin * 60_000);
}

/** Go's strconv underscoreOK for a decimal number: every "_" sits between two digits. */
function underscoreOK(s: string): boolean {
  return !/(^|[^0-9])_|_($|[^0-9])/.test(s);
}

/** What go.yaml.in/yaml/v3 (resolve("", s)) makes of a plain, untagged scalar. */
export function resolvePlainScalar(s: string): GoScalar {
  const hint = s === '' ? 'N' : /[0-9]/.test(s[0]!) ? 'D' : s[0] === '+' || s[0] === '-' ? 'S' : 'yYnNtTfFoO~'.includes(s[0]!) ? 'M' : s[0] === '.' ? '.' : '';
  if (hint === '') return { kind: 'str', value: s };
  const known = MAP[s];
  if (known) return known;
  if (hint === '.') {
    // strconv.ParseFloat: Go literal syntax, "_" only between digits.
    if (underscoreOK(s) && /^\.[0-9]+([eE][-+]?[0-9]+)?$/.test(s.replaceAll('_', ''))) {
      const f = Number(s.replaceAll('_', ''));
      if (Number.isFinite(f)) return { kind: 'float', value: f };
    }
  } else if (hint === 'D' || hint === 'S') {
    const ts = parseTimestamp(s);
    if (ts) return { kind: 'timestamp', value: ts };
    const plain = s.replaceAll('_', '');
    const i = parseIntBase0(plain, false) ?? parseIntBase0(plain, true);
    if (i !== null) return { kind: 'int', value: intValue(i) };
    if (YAML_STYLE_FLOAT.test(plain)) {
      const f = Number(plain);
      if (Number.isFinite(f)) return { kind: 'float', value: f };
    }
    // yaml.v3's own "0b"/"0o" fallbacks: they take a signed remainder ("0b-101" is -5).
    for (const [prefix, base, neg] of [['0b', 2, false], ['-0b', 2, true], ['0o', 8, false], ['-0o', 8, true]] as const) {
      if (!plain.startsWith(prefix)) continue;
      const rest = plain.slice(prefix.length);
      const v = parseIntBase(neg ? `-${rest}` : rest, base);
      if (v !== null) return { kind: 'int', value: intValue(v) };
      break;
    }
  }
  return { kind: 'str', value: s };
}

/** A RegExp stand-in: the yaml package only calls `.test()` on a tag's `test`. */
function kindTest(kind: GoScalar['kind']): RegExp {
  return { test: (s: string) => resolvePlainScalar(s).kind === kind } as unknown as RegExp;
}

const YAML = 'tag:yaml.org,2002:';

function resolveAs(kind: GoScalar['kind']) {
  return (s: string, onError: (msg: string) => void): unknown => {
    const r = resolvePlainScalar(s);
    if (r.kind === kind) return r.value;
    // An explicit tag on a value Go reads otherwise ("!!int 0x1F" is fine; "!!int abc" is not).
    if (kind === 'float' && r.kind === 'int') return Number(r.value);
    onError(`cannot read ${JSON.stringify(s)} as ${kind}`);
    return s;
  };
}

function formatFloat(n: number): string {
  if (Number.isNaN(n)) return '.nan';
  if (n === Infinity) return '.inf';
  if (n === -Infinity) return '-.inf';
  return String(n);
}

/** A scalar tag that reads plain scalars the way Go's yaml.v3 reads this kind. */
function goTag(kind: GoScalar['kind'], identify: ScalarTag['identify'], stringify: ScalarTag['stringify'], resolve: ScalarTag['resolve'] = resolveAs(kind)): ScalarTag {
  return { identify, default: true, tag: `${YAML}${kind}`, test: kindTest(kind), resolve, stringify };
}
const goNull = goTag('null', (v) => v === null || v === undefined, () => 'null', () => new Scalar(null));
const goBool = goTag('bool', (v) => typeof v === 'boolean', ({ value }) => (value ? 'true' : 'false'));
// Integers beyond ±1e21 print with an exponent: Go reads those as floats of the same value.
const goInt = goTag('int', (v) => typeof v === 'bigint' || (typeof v === 'number' && Number.isInteger(v)), ({ value }) => (Object.is(value, -0) ? '0' : String(value)));
const goFloat = goTag('float', (v) => typeof v === 'number', ({ value }) => formatFloat(value as number));
const goTimestamp = goTag('timestamp', (v) => v instanceof Date, ({ value }) => (value as Date).toISOString());
/**
 * Only for quoting on output: a string "<<" and YAML 1.1 booleans (yes/no/on/off/y/n), which
 * YAML 1.1 readers (and yaml.v3's own encoder) treat as special, are always written quoted.
 */
const quoteOnly: ScalarTag = {
  default: true,
  tag: `${YAML}merge`,
  test: /^(?:<<|y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$/,
  resolve: (s) => s,
};

function goTags(tags: Tags): Tags {
  // Keep the collections and the string tag of the core schema; replace its scalar readings.
  const keep = tags.filter((t) => typeof t === 'object' && [`${YAML}map`, `${YAML}seq`, `${YAML}str`].includes(t.tag));
  return [...keep, goNull, goBool, goInt, goFloat, goTimestamp];
}

export class ConfigYamlError extends Error {}

/**
 * Parses one YAML document as the collector reads it. Throws YAMLParseError (with line and column)
 * for syntax errors and ConfigYamlError for what Go rejects (e.g. a merge of a non-map).
 */
export function parseConfigYaml(text: string): unknown {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true, merge: true, schema: 'core', customTags: goTags });
  if (doc.errors.length > 0) throw doc.errors[0];
  visit(doc, {
    Map(_, map) {
      let merges = 0;
      for (const pair of map.items) {
        const key = pair.key;
        if (!isScalar(key) || (key.type && key.type !== Scalar.PLAIN)) continue; // quoted: an ordinary key
        if (!(key.value === '<<' || (typeof key.value === 'symbol' && key.value.description === '<<'))) continue;
        if (key.tag && key.tag !== '!' && key.tag !== `${YAML}merge`) {
          // "!!str <<" is an ordinary key for Go: make it one here too.
          key.value = '<<';
          key.type = Scalar.QUOTE_DOUBLE;
          continue;
        }
        if (++merges > 1) throw new ConfigYamlError(`mapping key "<<" already defined${key.range ? ` (at offset ${key.range[0]})` : ''}`);
      }
    },
  });
  try {
    return doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new ConfigYamlError(err instanceof Error ? err.message : String(err));
  }
}

/**
 * Writes a config value as YAML that go.yaml.in/yaml/v3 reads back as exactly that value: no
 * anchors, aliases or merge keys; strings quoted wherever Go would read another type.
 */
export function stringifyConfigYaml(value: unknown): string {
  return stringify(value, {
    lineWidth: 0,
    aliasDuplicateObjects: false,
    schema: 'core',
    customTags: goTags,
    compat: [quoteOnly],
  });
}

/** Whether a map (or any map below it) has a key "<<": see parseCollectorConfig's warning. */
export function literalMergeKeyPaths(value: unknown, path = ''): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => literalMergeKeyPaths(v, `${path}[${i}]`));
  if (typeof value !== 'object' || value === null || value instanceof Date) return [];
  return Object.entries(value).flatMap(([k, v]) => {
    const p = path ? `${path}.${k}` : k;
    return [...(k === '<<' ? [p] : []), ...literalMergeKeyPaths(v, p)];
  });
}
