/**
 * Config compatibility: which component types a collector config uses, and which of them an agent
 * lacks according to the `available_components` it reports (OpAMP ReportsAvailableComponents).
 * componentsUsed and missingComponents are pure.
 *
 * The collector's opamp extension (and so the OpAMP Supervisor, which relays it) reports one entry
 * per kind — "receivers", "processors", "exporters", "extensions", "connectors" — each with a
 * `sub_component_map` keyed by component type ("otlp", "batch", ...) whose metadata carries
 * `code.namespace` (the Go module and version, e.g. "go.opentelemetry.io/collector/receiver/otlpreceiver v0.145.0").
 *
 * ComponentNegotiation asks agents for their list and judges their desired config against it;
 * it writes the records' `components` group.
 */
import type { AvailableComponentsView } from './view-types.js';
import { isPlainObject } from '../render/merge.js';
import { AgentCapabilities, ServerToAgentFlags, hasBit, toNumber, type ServerToAgentProps } from '../opamp/messages.js';
import type { RenderedConfig } from '../render/index.js';
import { BoundedMap } from '../lib/bounded-map.js';
import type { AgentConnection, AgentRecord } from './agent.js';
import type { FleetContext } from './context.js';
import { parseConfigBody } from './drift.js';

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

/** Whether the stored component list is the one for the hash the agent reports now. */
export function componentsKnown(rec: AgentRecord): boolean {
  return rec.components.available !== null && rec.components.available.hash === rec.components.hash;
}

/**
 * True while a config is held for an agent that was asked for its components and has not sent
 * them yet (bounded by offerRetryMs from the first request for this hash; then it is treated
 * like an agent that does not report components).
 */
export function awaitingComponents(ctx: FleetContext, rec: AgentRecord, now: number): boolean {
  if (!hasBit(rec.description.capabilities, AgentCapabilities.ReportsAvailableComponents) || componentsKnown(rec)) return false;
  const r = rec.components.requested;
  return r !== null && r.hash === (rec.components.hash ?? '') && now - r.firstAt < ctx.settings.offerRetryMs;
}

export class ComponentNegotiation {
  /** "kind/type" of the components each desired config (by hash) defines. */
  readonly #used = new BoundedMap<string, string[]>({ maxEntries: 1000 });

  constructor(private readonly ctx: FleetContext) {}

  /**
   * Stores what the agent says about its components. A message with only the hash (what opamp-go
   * sends on connect and in full state) keeps the stored list when the hash is the same; a new
   * hash makes the stored list stale until the agent sends the new one.
   */
  record(rec: AgentRecord, view: AvailableComponentsView): void {
    const c = rec.components;
    c.hash = view.hash;
    // proto3 maps have no presence: an empty map is "only the hash".
    if (Object.keys(view.components).length > 0) {
      c.available = view;
      c.requested = null;
    }
  }

  /** A restarted client may never have seen the request. */
  forgetRequest(rec: AgentRecord): void {
    rec.components.requested = null;
  }

  /**
   * Sets ServerToAgent flag ReportAvailableComponents when the agent has the capability and the
   * server lacks the list for the hash it reports: once per hash and connection, and again only
   * after offerRetryMs if the agent has not answered (not on every message).
   */
  maybeRequest(rec: AgentRecord, conn: AgentConnection, msg: ServerToAgentProps, now: number): void {
    if (!hasBit(rec.description.capabilities, AgentCapabilities.ReportsAvailableComponents) || componentsKnown(rec)) return;
    const c = rec.components;
    const hash = c.hash ?? '';
    const connectionId = conn.send ? conn.id : null;
    const r = c.requested;
    if (r && r.hash === hash && r.connectionId === connectionId && now - r.at < this.ctx.settings.offerRetryMs) return;
    msg.flags = toNumber(msg.flags) | ServerToAgentFlags.ReportAvailableComponents;
    c.requested = { hash, firstAt: r && r.hash === hash ? r.firstAt : now, at: now, connectionId };
    this.ctx.log.debug({ instanceUid: rec.uid, componentsHash: hash }, 'Asked the agent for its available components');
  }

  /**
   * Which component types of the desired config the agent lacks, judged only against the list
   * for the hash it reports now, for agents that accept remote config and do not already run it.
   */
  judge(rec: AgentRecord): void {
    const { desired: d, reported } = rec.config;
    const list = rec.components.available;
    let missing: string[] = [];
    if (
      d &&
      d.issues.length === 0 &&
      list &&
      componentsKnown(rec) &&
      hasBit(rec.description.capabilities, AgentCapabilities.AcceptsRemoteConfig) &&
      !(reported.hash === d.hashHex && reported.status === 'APPLIED')
    ) {
      missing = missingComponents(this.#componentsOf(d), list.components) ?? [];
    }
    const before = rec.components.missing;
    if (missing.join('\n') !== before.join('\n')) {
      if (missing.length > 0) {
        this.ctx.log.warn({ instanceUid: rec.uid, configHash: d?.hashHex, collectors: d?.collectors, missing }, 'Remote config not sent: the agent lacks components it uses');
      } else {
        this.ctx.log.info({ instanceUid: rec.uid, configHash: d?.hashHex ?? null }, 'The agent no longer lacks components of its config');
      }
    }
    rec.components.missing = missing;
  }

  #componentsOf(d: RenderedConfig): string[] {
    let used = this.#used.get(d.hashHex);
    if (used === undefined) this.#used.set(d.hashHex, (used = componentsUsed(parseConfigBody(d.body.toString('utf8')))));
    return used;
  }
}
