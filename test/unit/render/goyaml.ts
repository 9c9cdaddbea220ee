/**
 * The collector's own YAML reading, for tests: a small Go program (./goyaml/main.go) decodes YAML
 * with go.yaml.in/yaml/v3 (the library and version of the collector's config loader, pinned to
 * tools/otel/collector/go.mod) and prints what it read with Go's types. Built with the shared Go
 * build helper into .cache/goyaml/<hash>/ (the hash covers go.mod, go.sum and main.go).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildCached, findGo } from '../../../tools/build/cached-build.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
export const GOYAML_DIR = join(HERE, 'goyaml');
const REPO_ROOT = resolve(HERE, '..', '..', '..');
const GO_ENV = { CGO_ENABLED: '0', GOWORK: 'off', GOFLAGS: '-mod=readonly -buildvcs=false', GOTOOLCHAIN: 'local' };

export type Typed =
  | null
  | { bool: boolean }
  | { int: string }
  | { float: string }
  | { str: string }
  | { time: string }
  | { seq: Typed[] }
  | { map: Record<string, Typed> };

export interface GoReading {
  value?: Typed;
  /** What the collector reads after the OpAMP Supervisor re-marshalled the document. */
  supervised?: Typed;
  error?: string;
  supervisedError?: string;
}

export function goyamlMissingReason(): string | null {
  return findGo() ? null : 'go is not on PATH (needed to build the yaml.v3 reader)';
}

/** The yaml.v3 version a go.mod requires (direct or indirect). */
export function yamlV3Version(goMod: string): string | null {
  return /^\s*(?:require\s+)?go\.yaml\.in\/yaml\/v3\s+(v\S+)/m.exec(goMod)?.[1] ?? null;
}

export async function ensureGoyaml(): Promise<string> {
  const h = createHash('sha256');
  for (const f of ['go.mod', 'go.sum', 'main.go']) h.update(`${f}\0`).update(readFileSync(join(GOYAML_DIR, f)));
  h.update(JSON.stringify(GO_ENV)).update(`${process.platform}/${process.arch}`);
  const { dir } = await buildCached({
    cacheRoot: join(REPO_ROOT, '.cache', 'goyaml'),
    key: h.digest('hex').slice(0, 12),
    builds: [{ name: 'goyaml', cwd: GOYAML_DIR, pkg: '.', ldflags: '-s -w', check: ['--version'] }],
    goEnv: GO_ENV,
    goMissing: 'go is not on PATH',
    timeoutMs: 10 * 60_000,
  });
  return join(dir, 'goyaml');
}

/** Reads each text with go.yaml.in/yaml/v3, as the collector does. */
export function goRead(binary: string, texts: readonly string[]): GoReading[] {
  const r = spawnSync(binary, [], { input: JSON.stringify(texts), encoding: 'utf8', timeout: 30_000, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`goyaml failed: ${r.stderr || r.error}`);
  return JSON.parse(r.stdout) as GoReading[];
}

/** A JS value (as parseConfigYaml reads it) in the Go reader's notation; numbers normalised by value. */
export function typedOf(v: unknown): Typed {
  if (v === null || v === undefined) return null;
  if (typeof v === 'boolean') return { bool: v };
  if (typeof v === 'bigint') return { int: String(v) };
  if (typeof v === 'number') return Number.isInteger(v) && Number.isSafeInteger(v) ? { int: String(v) } : { float: String(v) };
  if (typeof v === 'string') return { str: v };
  if (v instanceof Date) return { time: v.toISOString() };
  if (Array.isArray(v)) return { seq: v.map(typedOf) };
  return { map: Object.fromEntries(Object.entries(v as object).map(([k, x]) => [k, typedOf(x)])) };
}

/**
 * Go's reading in comparable form: JS numbers do not tell int from float, so an integral float is
 * an int and numbers print as JS does; timestamps at millisecond precision (a JS Date's).
 */
export function normalise(t: Typed | undefined): Typed | undefined {
  if (t === null || t === undefined) return t;
  if ('int' in t) {
    const n = BigInt(t.int);
    return { int: n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? String(Number(n)) : String(n) };
  }
  if ('float' in t) {
    const f = Number(t.float);
    return Number.isSafeInteger(f) ? { int: String(f) } : { float: String(f) };
  }
  if ('time' in t) return { time: new Date(Date.parse(t.time)).toISOString() };
  if ('seq' in t) return { seq: t.seq.map((x) => normalise(x)!) };
  if ('map' in t) return { map: Object.fromEntries(Object.entries(t.map).map(([k, x]) => [k, normalise(x)!])) };
  return t;
}

/**
 * How Go programs write each string (`goyaml --marshal`): yaml.v3 documents holding it (at several
 * depths and indentations, and in a sequence), encoding/json compact and indented, and fmt's %q,
 * %+q and %#v — the forms an agent built on Go reports a value back in.
 */
export function goMarshal(binary: string, values: readonly string[]): string[][] {
  const r = spawnSync(binary, ['--marshal'], { input: JSON.stringify(values), encoding: 'utf8', timeout: 30_000, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`goyaml --marshal failed: ${r.stderr || r.error}`);
  return JSON.parse(r.stdout) as string[][];
}
