/**
 * Drift: does the config an agent says it runs contain what we pushed? The effective config an
 * agent reports is not byte-comparable with ours: the collector re-serialises it with defaults
 * filled in, the Supervisor adds sections it owns, and secrets come back as "[REDACTED]". So the
 * desired config is checked as a *subset* of the effective one, structurally (configDifferences).
 * DriftJudge applies it to agents (ADR 0007 rule 5) and writes the records' `config.drift` group.
 */
import { isPlainObject } from '../render/merge.js';
import { parseConfigYaml } from '../render/yaml.js';
import type { RenderedConfig } from '../render/index.js';
import { BoundedMap } from '../lib/bounded-map.js';
import type { AgentRecord } from './agent.js';
import type { FleetContext } from './context.js';

type Verdict = { drifted: boolean; differences: string[] };

export class DriftJudge {
  /** Verdicts by desired hash, then by reported effective config (shared by every agent reporting it). */
  readonly #verdicts = new BoundedMap<string, BoundedMap<string, Verdict | null>>({ maxEntries: 100 });
  readonly #desiredParsed = new BoundedMap<string, unknown>({ maxEntries: 1000 });

  constructor(
    private readonly ctx: FleetContext,
    /** A desired config's text as agents' reports of it are stored (redacted). */
    private readonly desiredText: (d: RenderedConfig) => string,
  ) {}

  /** The agent reported a new config status: the effective config known so far may be of the config before it. */
  statusChanged(rec: AgentRecord, now: number): void {
    rec.config.drift.statusAt = now;
    rec.config.drift.effectiveFresh = false;
  }

  /** An effective config arrived (with or after the status it belongs to). */
  effectiveArrived(rec: AgentRecord): void {
    rec.config.drift.effectiveFresh = true;
  }

  /** The once-more push is on its way. */
  repushSent(rec: AgentRecord): void {
    rec.config.drift.repushDue = false;
  }

  /**
   * Drift is judged only for an agent that says it applied the desired config, on an effective
   * config that belongs to that report: one that came with or after it, or, failing that, the one it
   * has once a short settle has passed (some agents report the effective config before the status).
   * Until then drift is unknown (null), never a moment's false alarm. An agent that reports APPLIED
   * but was never seen running the config is sent it once more (the OpAMP Supervisor can overwrite a
   * config pushed while it starts with its initial one and still say APPLIED); if it still does not
   * run it, it has drifted.
   */
  judge(rec: AgentRecord, now: number): void {
    const c = rec.config;
    const st = c.drift;
    const d = c.desired;
    const files = c.effective;
    if (!d || d.issues.length > 0 || c.reported.hash !== d.hashHex || c.reported.status !== 'APPLIED' || !files) {
      st.verdict = null;
      return;
    }
    if (!st.effectiveFresh && now - st.statusAt < this.ctx.settings.driftSettleMs) {
      st.verdict = null;
      return;
    }
    const body = files['']?.body ?? Object.values(files)[0]?.body;
    // Parsing a large config would hold the event loop (about 1 ms per KiB): not judged.
    if (body === undefined || body.length > this.ctx.settings.driftJudgeMaxBytes) {
      st.verdict = null;
      return;
    }
    const result = this.#verdict(d, body);
    if (result && !result.drifted) st.syncedHash = d.hashHex;
    if (result?.drifted && st.syncedHash !== d.hashHex && st.repushedHash !== d.hashHex && rec.session.connected) {
      // Never seen running it: push it once more (with the next answer, or now over WebSocket)
      // before calling it drift.
      st.repushedHash = d.hashHex;
      st.repushDue = true;
      st.effectiveFresh = false;
      st.statusAt = now;
      st.verdict = null;
      this.ctx.metrics.configRepushes.inc();
      this.ctx.log.warn({ instanceUid: rec.uid, configHash: d.hashHex, differences: result.differences }, 'Agent reported the config APPLIED but does not run it; pushing it once more');
      return;
    }
    if (result?.drifted && !st.verdict?.drifted) this.ctx.log.warn({ instanceUid: rec.uid, differences: result.differences }, 'Agent runs a config that differs from the one it applied');
    st.verdict = result;
  }

  /** Agents of one config report the same effective config: judged once per (desired, reported) pair. */
  #verdict(d: RenderedConfig, body: string): Verdict | null {
    let byBody = this.#verdicts.get(d.hashHex);
    if (!byBody) this.#verdicts.set(d.hashHex, (byBody = new BoundedMap({ maxEntries: 1000 })));
    let result = byBody.get(body);
    if (result === undefined) {
      const effective = parseConfigBody(body);
      let desired = this.#desiredParsed.get(d.hashHex);
      if (desired === undefined) {
        // Compared as shown: secret values in both configs are [REDACTED], so differences never quote them.
        desired = parseConfigBody(this.desiredText(d));
        this.#desiredParsed.set(d.hashHex, desired);
      }
      if (effective === null || desired === null) result = null;
      else {
        const differences = configDifferences(desired, effective);
        result = { drifted: differences.length > 0, differences };
      }
      byBody.set(body, result);
    }
    return result;
  }
}

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
