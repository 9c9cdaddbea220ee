import { YAMLParseError } from 'yaml';
import { createHash } from 'node:crypto';
import type { AgentPackage, CollectorSpec, LabelSelector } from '../schema/v1alpha1/index.js';
import { configMapHash } from './hash.js';
import { deepMerge, isPlainObject } from './merge.js';
import { secretReferences, substituteSecrets, type SecretSource } from './secrets.js';
import { checkCollectorConfig, validateCollectorConfig } from './validate.js';
import { literalMergeKeyPaths, parseConfigYaml, stringifyConfigYaml } from './yaml.js';

export const CONFIG_CONTENT_TYPE = 'text/yaml';

/** A Collector as the renderer needs it: validated metadata and its parsed config. */
export interface CollectorInput {
  namespace: string;
  name: string;
  generation: number;
  /** Changes whenever selector, priority or config change (a content hash); keys render caches. */
  revision: string;
  priority: number;
  selector: LabelSelector;
  config: Record<string, unknown>;
  /** Secrets (in `namespace`) the config may reference: its spec.secretRefs. */
  secretNames?: string[];
  /** Packages offered to the agents it selects (spec.packages). */
  packages?: AgentPackage[];
  /**
   * Set when the Collector's own config is invalid and no earlier valid version is known: the
   * agents it selects are held (nothing is pushed to them) rather than sent a config without it.
   */
  invalid?: string[];
}

/**
 * A Collector's `revision`: a short hash of everything that decides what it renders and offers
 * (selector, priority, parsed config, Secret names, packages). The same in both modes.
 */
export function collectorRevision(spec: Pick<CollectorSpec, 'selector' | 'priority' | 'packages'>, config: Record<string, unknown>, secretNames: readonly string[]): string {
  // Integers beyond 2^53 are BigInts (see ./yaml.ts): JSON has no such type.
  const json = JSON.stringify([spec.selector, spec.priority, config, secretNames, spec.packages ?? []], (_, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
  return createHash('sha256').update(json).digest('hex').slice(0, 16);
}

export type ParseResult =
  | { ok: true; config: Record<string, unknown>; warnings: string[] }
  | { ok: false; issues: string[] };

/**
 * Parses a Collector's `spec.config` (an object) or `spec.configYaml` (text) into a mapping and drops the
 * sections the OpAMP Supervisor owns: its `opamp` extension. A pushed `extensions.opamp` would
 * override what the Supervisor injects and can cut the agent off from us.
 */
export function parseCollectorConfig(config: string | Record<string, unknown>, secretRefs: readonly string[] = []): ParseResult {
  let value: unknown = config;
  if (typeof config === 'string') {
    try {
      // Read as the collector reads it: merge keys, Go's booleans, integers and timestamps.
      value = parseConfigYaml(config);
    } catch (err) {
      const msg = err instanceof YAMLParseError ? err.message.split('\n')[0]! : err instanceof Error ? err.message : String(err);
      return { ok: false, issues: [`config is not valid YAML: ${msg}`] };
    }
  }
  if (!isPlainObject(value)) return { ok: false, issues: ['config must be a YAML mapping (receivers, exporters, service, ...)'] };
  const cfg = structuredClone(value);
  const warnings: string[] = [];
  const ext = cfg['extensions'];
  if (isPlainObject(ext) && 'opamp' in ext) {
    delete ext['opamp'];
    warnings.push('extensions.opamp is owned by the OpAMP Supervisor and was left out of the pushed config');
  }
  // A literal "<<" key (quoted in the YAML) reaches a collector intact only without the OpAMP
  // Supervisor: the Supervisor re-writes the config with yaml.v3, which prints it unquoted, and
  // the collector then reads it as a merge key.
  for (const p of literalMergeKeyPaths(cfg)) {
    warnings.push(`${p}: a literal "<<" key; the OpAMP Supervisor re-writes it as a YAML merge key, so agents behind a Supervisor will not run it as written`);
  }
  const svc = cfg['service'];
  if (isPlainObject(svc) && Array.isArray(svc['extensions']) && svc['extensions'].includes('opamp')) {
    svc['extensions'] = svc['extensions'].filter((e) => e !== 'opamp');
    warnings.push('service.extensions "opamp" is owned by the OpAMP Supervisor and was left out of the pushed config');
  }
  // A Collector may lean on components another Collector defines (an overlay), so dangling
  // references are judged on the merged config; structural errors are the Collector's own.
  const structural = checkCollectorConfig(cfg).filter((i) => i.kind === 'structure').map((i) => i.message);
  // Secret references must name a Secret the Collector lists: the bridge reads only those.
  const secrets = secretReferences(cfg);
  structural.push(...secrets.issues);
  for (const r of secrets.refs) {
    if (!secretRefs.includes(r.name)) structural.push(`${r.path}: references Secret ${r.name}, which is not listed in spec.secretRefs`);
  }
  if (structural.length > 0) return { ok: false, issues: structural };
  return { ok: true, config: cfg, warnings };
}

/** Merge order: ascending priority, then namespace/name; later entries win. */
export function compareCollectors(a: CollectorInput, b: CollectorInput): number {
  if (a.priority !== b.priority) return a.priority - b.priority;
  const ka = `${a.namespace}/${a.name}`;
  const kb = `${b.namespace}/${b.name}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

export interface RenderedConfig {
  /** Collectors merged, in merge order ("namespace/name"). */
  collectors: string[];
  /** Problems of the merged config; when non-empty nothing is pushed. */
  issues: string[];
  /** Problems of invalid Collectors that hold this config back (also in `issues`, as text). */
  held: { collector: string; issue: string }[];
  /** The config file as pushed: secret values substituted. Never log or show it. */
  body: Buffer;
  /** The secret values in `body`, for redaction. */
  secretValues: string[];
  /** References that could not be resolved (also in `issues`). */
  secretIssues: string[];
  contentType: string;
  hash: Buffer;
  hashHex: string;
}

/** How a held config names the invalid Collector that holds it. */
export function heldIssue(collector: string, issue: string): string {
  return `Collector ${collector} is invalid: ${issue}`;
}

/**
 * Merges collectors (already in merge order, all of one namespace) into one config file,
 * substitutes secret references from `secrets`, and hashes it. With secrets, the hash covers the
 * config as written plus the versions of the values used, never the values: hashes are shown.
 */
export function renderMerged(ordered: readonly CollectorInput[], secrets?: SecretSource): RenderedConfig {
  let merged: unknown = {};
  for (const c of ordered) merged = deepMerge(merged, c.config);
  const held = ordered.flatMap((c) => (c.invalid ?? []).map((issue) => ({ collector: `${c.namespace}/${c.name}`, issue })));
  const issues = held.length > 0 ? held.map((h) => heldIssue(h.collector, h.issue)) : validateCollectorConfig(merged);
  // Fully expanded (no anchors, aliases or merge keys), scalars quoted wherever the collector
  // would read another type: the agent reads exactly the merged value, and the hash covers it.
  const text = stringifyConfigYaml(merged);
  let body = Buffer.from(text, 'utf8');
  let hash = configMapHash({ '': { body, contentType: CONFIG_CONTENT_TYPE } });
  let secretValues: string[] = [];
  let secretIssues: string[] = [];
  if (secrets && text.includes('${secret:')) {
    const s = substituteSecrets(merged, ordered[0]?.namespace ?? '', secrets);
    secretIssues = s.issues;
    issues.push(...s.issues);
    secretValues = s.values;
    body = Buffer.from(stringifyConfigYaml(s.config), 'utf8');
    hash = configMapHash({ '': { body: Buffer.from(text, 'utf8'), contentType: CONFIG_CONTENT_TYPE }, secrets: { body: Buffer.from(s.versions.join('\n'), 'utf8'), contentType: 'text/plain' } });
  }
  return {
    secretValues,
    secretIssues,
    collectors: ordered.map((c) => `${c.namespace}/${c.name}`),
    issues,
    held,
    body,
    contentType: CONFIG_CONTENT_TYPE,
    hash,
    hashHex: hash.toString('hex'),
  };
}
