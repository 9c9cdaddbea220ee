/**
 * Config compatibility: which component types a collector config uses, and which of them an agent
 * lacks according to the `available_components` it reports (OpAMP ReportsAvailableComponents).
 * Pure functions, no state.
 *
 * The collector's opamp extension (and so the OpAMP Supervisor, which relays it) reports one entry
 * per kind — "receivers", "processors", "exporters", "extensions", "connectors" — each with a
 * `sub_component_map` keyed by component type ("otlp", "batch", ...) whose metadata carries
 * `code.namespace` (the Go module and version, e.g. "go.opentelemetry.io/collector/receiver/otlpreceiver v0.145.0").
 */
import type { AvailableComponentsView } from '../api/views.js';
import { isPlainObject } from '../render/merge.js';

export const COMPONENT_KINDS = ['receivers', 'processors', 'exporters', 'extensions', 'connectors'] as const;
export type ComponentKind = (typeof COMPONENT_KINDS)[number];

/** The type of a component id: `type` or `type/name` (the collector's own rule: up to the first "/"). */
export function componentType(id: string): string {
  const i = id.indexOf('/');
  return (i === -1 ? id : id.slice(0, i)).trim();
}

/**
 * Every component type a collector config defines, as sorted unique `kind/type` strings (e.g.
 * "exporters/otlphttp"). Defined, not only used in pipelines: the collector refuses to start with
 * a defined component whose type it does not know, used or not. Sections that are not mappings
 * are skipped (they are reported as config issues elsewhere).
 */
export function componentsUsed(config: unknown): string[] {
  const out = new Set<string>();
  if (!isPlainObject(config)) return [];
  for (const kind of COMPONENT_KINDS) {
    const section = config[kind];
    if (!isPlainObject(section)) continue;
    for (const id of Object.keys(section)) {
      const type = componentType(id);
      if (type) out.add(`${kind}/${type}`);
    }
  }
  return [...out].sort();
}

/**
 * The `kind/type` entries of `used` that the agent's report lacks, sorted. Only kinds the report
 * contains are judged (an agent that reports no "connectors" entry at all is not assumed to have
 * none); null when the report contains none of the five kinds, i.e. it is not a collector's report
 * and cannot be judged.
 */
export function missingComponents(used: readonly string[], available: AvailableComponentsView['components']): string[] | null {
  if (!COMPONENT_KINDS.some((k) => k in available)) return null;
  const missing: string[] = [];
  for (const entry of used) {
    const slash = entry.indexOf('/');
    const kind = entry.slice(0, slash);
    const type = entry.slice(slash + 1);
    const reported = available[kind];
    if (!reported) continue;
    if (!Object.prototype.hasOwnProperty.call(reported.components, type)) missing.push(entry);
  }
  return missing.sort();
}

/** How a missing-components failure reads: "the agent lacks exporters/otlphttp, processors/batch". */
export function missingComponentsMessage(missing: readonly string[]): string {
  return `the agent lacks ${missing.join(', ')}`;
}
