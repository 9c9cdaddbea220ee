/**
 * Turns Collector objects (from the API) into renderer inputs. A Collector whose new generation is
 * invalid keeps its last valid generation in effect (agents keep their config); one that was never
 * valid holds the agents it selects (nothing is pushed to them) instead of vanishing from their
 * merged config. Parses each generation once.
 */
import { CollectorSpec } from '../schema/v1alpha1/index.js';
import { collectorRevision, parseCollectorConfig, type CollectorInput } from '../render/index.js';
import { packageSpecIssues } from '../render/packages.js';

export interface CollectorObject {
  metadata?: { namespace?: string; name?: string; generation?: number; uid?: string };
  spec?: unknown;
}

export interface CompiledCollector {
  key: string;
  namespace: string;
  name: string;
  uid: string;
  generation: number;
  input: CollectorInput | null;
  /** This generation's own problems; empty when valid. */
  issues: string[];
  warnings: string[];
  /** The input in effect is an earlier, valid generation. */
  lastGoodInEffect: boolean;
}

interface Parsed {
  generation: number;
  input: CollectorInput | null;
  issues: string[];
  warnings: string[];
}

export class CollectorCompiler {
  readonly #parsed = new Map<string, Parsed>();
  readonly #lastGood = new Map<string, CollectorInput>();

  compile(objects: readonly CollectorObject[]): CompiledCollector[] {
    const seen = new Set<string>();
    const out: CompiledCollector[] = [];
    for (const o of objects) {
      const namespace = o.metadata?.namespace ?? 'default';
      const name = o.metadata?.name ?? '';
      const uid = o.metadata?.uid ?? `${namespace}/${name}`;
      const generation = o.metadata?.generation ?? 0;
      seen.add(uid);
      let p = this.#parsed.get(uid);
      if (!p || p.generation !== generation) {
        p = parse(namespace, name, generation, o.spec);
        this.#parsed.set(uid, p);
        if (p.input && p.issues.length === 0) this.#lastGood.set(uid, p.input);
      }
      const good = this.#lastGood.get(uid);
      let input: CollectorInput | null;
      let lastGoodInEffect = false;
      if (p.issues.length === 0) input = p.input;
      else if (good) {
        input = good;
        lastGoodInEffect = true;
      } else input = p.input ? { ...p.input, invalid: p.issues } : null;
      out.push({ key: `${namespace}/${name}`, namespace, name, uid, generation, input, issues: p.issues, warnings: p.warnings, lastGoodInEffect });
    }
    for (const uid of [...this.#parsed.keys()]) {
      if (!seen.has(uid)) {
        this.#parsed.delete(uid);
        this.#lastGood.delete(uid);
      }
    }
    return out;
  }
}

function parse(namespace: string, name: string, generation: number, spec: unknown): Parsed {
  const r = CollectorSpec.safeParse(spec);
  if (!r.success) {
    return { generation, input: null, issues: r.error.issues.map((i) => `spec.${i.path.join('.')}: ${i.message}`), warnings: [] };
  }
  const c = compileCollectorSpec(namespace, name, generation, r.data);
  if (c.ok) return { generation, input: c.input, issues: [], warnings: c.warnings };
  return { generation, input: { ...c.base, revision: `invalid-${generation}`, config: {} }, issues: [...c.configIssues, ...c.packageIssues], warnings: [] };
}

export type CompiledSpec =
  | { ok: true; input: CollectorInput; warnings: string[] }
  | {
      ok: false;
      /** The input without a config (what an invalid generation holds its agents with). */
      base: Omit<CollectorInput, 'revision' | 'config'>;
      /** spec.config or spec.configYaml: the field the config issues are about. */
      configField: 'config' | 'configYaml';
      configIssues: string[];
      packageIssues: string[];
    };

/**
 * A valid CollectorSpec (schema-checked) → the renderer's input, or its config and package
 * problems. Both modes convert with this: from the API (CollectorCompiler) and from the folder.
 */
export function compileCollectorSpec(namespace: string, name: string, generation: number, spec: CollectorSpec): CompiledSpec {
  const secretNames = (spec.secretRefs ?? []).map((s) => s.name);
  const cfg = parseCollectorConfig(spec.config ?? spec.configYaml ?? {}, secretNames);
  const base = {
    namespace,
    name,
    generation,
    priority: spec.priority,
    selector: spec.selector,
    secretNames,
    ...(spec.packages?.length ? { packages: spec.packages } : {}),
  };
  const packageIssues = packageSpecIssues(spec.packages, secretNames);
  if (!cfg.ok || packageIssues.length > 0) {
    return { ok: false, base, configField: spec.config ? 'config' : 'configYaml', configIssues: cfg.ok ? [] : cfg.issues, packageIssues };
  }
  return { ok: true, input: { ...base, revision: collectorRevision(spec, cfg.config, secretNames), config: cfg.config }, warnings: cfg.warnings };
}
