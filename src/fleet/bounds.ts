/**
 * Bounds on what one agent can make the bridge keep or compute. A message over any bound is
 * refused whole (BAD_REQUEST with the reason): nothing of it is stored, because keeping part of a
 * description, a config or a component list would change what it means. Free text that only
 * explains (error messages, health status) is cut instead, marked as cut.
 *
 * The defaults are a real agent's largest reports with a wide margin: the OpAMP Supervisor with a
 * collector reports 8–15 description attributes (values under 200 bytes, `process.command_line`
 * the longest), a health tree of one node per pipeline and component (tens), an effective config
 * of a few KiB (large gateway configs: tens of KiB), and, for a full contrib distribution, about
 * 300 available components with one metadata attribute each.
 */
import type { AgentToServer, AnyValue, KeyValue } from '../opamp/messages.js';

export interface AgentBounds {
  /** Attributes per list (identifying, non-identifying), counting nested array and kvlist entries. Default 256. */
  maxAttributes: number;
  /** Attribute key length, characters. Default 256. */
  maxKeyLength: number;
  /** A string or bytes value, bytes. Default 4 KiB. */
  maxValueBytes: number;
  /** Nodes in the health tree. Default 2,000. */
  maxHealthNodes: number;
  /** Nesting of the health tree, of component lists and of attribute values. Default 8. */
  maxDepth: number;
  /** The effective config, all files together, bytes. Default 256 KiB (scrubbing it of secret values costs about 0.2 ms per KiB). */
  maxEffectiveConfigBytes: number;
  /** Effective config files. Default 16. */
  maxEffectiveConfigFiles: number;
  /** Entries in the available-components tree. Default 5,000. */
  maxComponents: number;
  /** Packages in package statuses, and custom capabilities. Default 256. */
  maxEntries: number;
  /** Free text (error messages, health status) is kept up to this many characters. Default 4 KiB. */
  maxTextLength: number;
}

export const DEFAULT_AGENT_BOUNDS: AgentBounds = {
  maxAttributes: 256,
  maxKeyLength: 256,
  maxValueBytes: 4096,
  maxHealthNodes: 2000,
  maxDepth: 8,
  maxEffectiveConfigBytes: 256 * 1024,
  maxEffectiveConfigFiles: 16,
  maxComponents: 5000,
  maxEntries: 256,
  maxTextLength: 4096,
};

/** The first bound the message exceeds, as a sentence for the agent and the log; null when within all. */
export function exceededBound(msg: AgentToServer, b: AgentBounds): string | null {
  const d = msg.agentDescription;
  if (d) {
    for (const [name, list] of [['identifying_attributes', d.identifyingAttributes], ['non_identifying_attributes', d.nonIdentifyingAttributes]] as const) {
      const why = attributesExceed(list, b, name);
      if (why) return `agent_description.${why}`;
    }
  }
  if (msg.health) {
    const budget = { nodes: 0 };
    const why = healthExceeds(msg.health, b, budget, 1);
    if (why) return `health: ${why}`;
  }
  const files = msg.effectiveConfig?.configMap?.configMap;
  if (files) {
    const entries = Object.entries(files);
    if (entries.length > b.maxEffectiveConfigFiles) return `effective_config has ${entries.length} files, more than ${b.maxEffectiveConfigFiles}`;
    let total = 0;
    for (const [k, f] of entries) total += k.length + (f.body?.length ?? 0) + (f.contentType?.length ?? 0);
    if (total > b.maxEffectiveConfigBytes) return `effective_config is ${total} bytes, more than ${b.maxEffectiveConfigBytes}`;
  }
  const comps = msg.availableComponents?.components;
  if (comps) {
    const budget = { n: 0 };
    const why = componentsExceed(comps as Record<string, ComponentNode>, b, budget, 1);
    if (why) return `available_components: ${why}`;
  }
  const pkgs = msg.packageStatuses?.packages;
  if (pkgs) {
    const n = Object.keys(pkgs).length;
    if (n > b.maxEntries) return `package_statuses has ${n} packages, more than ${b.maxEntries}`;
    for (const [name, p] of Object.entries(pkgs)) {
      if (name.length > b.maxKeyLength) return `package_statuses has a package name of ${name.length} characters, more than ${b.maxKeyLength}`;
      for (const s of [p.agentHasVersion, p.serverOfferedVersion]) if (s && s.length > b.maxKeyLength) return `package_statuses.${name}: a version of ${s.length} characters, more than ${b.maxKeyLength}`;
    }
  }
  const caps = msg.customCapabilities?.capabilities;
  if (caps) {
    if (caps.length > b.maxEntries) return `custom_capabilities has ${caps.length} entries, more than ${b.maxEntries}`;
    for (const c of caps) if (c.length > b.maxKeyLength) return `custom_capabilities has an entry of ${c.length} characters, more than ${b.maxKeyLength}`;
  }
  return null;
}

/** Free text cut to the bound, marked as cut (it only explains; cutting it changes no decision). */
export function boundText(s: string, b: AgentBounds): string {
  return s.length <= b.maxTextLength ? s : `${s.slice(0, b.maxTextLength)}… [${s.length - b.maxTextLength} more characters not kept]`;
}

function attributesExceed(list: readonly KeyValue[] | null | undefined, b: AgentBounds, name: string): string | null {
  if (!list) return null;
  const budget = { n: 0 };
  for (const kv of list) {
    const why = keyValueExceeds(kv, b, budget, 1);
    if (why) return `${name}: ${why}`;
  }
  return null;
}

function keyValueExceeds(kv: KeyValue, b: AgentBounds, budget: { n: number }, depth: number): string | null {
  if (++budget.n > b.maxAttributes) return `more than ${b.maxAttributes} attributes (nested entries included)`;
  const key = kv.key ?? '';
  if (key.length > b.maxKeyLength) return `a key of ${key.length} characters, more than ${b.maxKeyLength}`;
  return valueExceeds(kv.value, b, budget, depth, key);
}

function valueExceeds(v: AnyValue | null | undefined, b: AgentBounds, budget: { n: number }, depth: number, key: string): string | null {
  if (!v) return null;
  if (depth > b.maxDepth) return `"${key.slice(0, 64)}" nests deeper than ${b.maxDepth}`;
  if (v.stringValue != null && Buffer.byteLength(v.stringValue) > b.maxValueBytes) return `"${key.slice(0, 64)}" has a value of ${Buffer.byteLength(v.stringValue)} bytes, more than ${b.maxValueBytes}`;
  if (v.bytesValue != null && v.bytesValue.length > b.maxValueBytes) return `"${key.slice(0, 64)}" has a value of ${v.bytesValue.length} bytes, more than ${b.maxValueBytes}`;
  for (const item of v.arrayValue?.values ?? []) {
    if (++budget.n > b.maxAttributes) return `more than ${b.maxAttributes} attributes (nested entries included)`;
    const why = valueExceeds(item, b, budget, depth + 1, key);
    if (why) return why;
  }
  for (const kv of v.kvlistValue?.values ?? []) {
    const why = keyValueExceeds(kv, b, budget, depth + 1);
    if (why) return why;
  }
  return null;
}

type HealthNode = NonNullable<AgentToServer['health']>;

function healthExceeds(h: HealthNode, b: AgentBounds, budget: { nodes: number }, depth: number): string | null {
  if (++budget.nodes > b.maxHealthNodes) return `more than ${b.maxHealthNodes} components`;
  if (depth > b.maxDepth) return `nests deeper than ${b.maxDepth}`;
  if (h.attributes) {
    const why = attributesExceed(h.attributes, b, 'attributes');
    if (why) return why;
  }
  for (const [k, child] of Object.entries(h.componentHealthMap ?? {})) {
    if (k.length > b.maxKeyLength) return `a component name of ${k.length} characters, more than ${b.maxKeyLength}`;
    const why = healthExceeds(child as HealthNode, b, budget, depth + 1);
    if (why) return why;
  }
  return null;
}

interface ComponentNode {
  metadata?: KeyValue[] | null;
  subComponentMap?: Record<string, ComponentNode> | null;
}

function componentsExceed(map: Record<string, ComponentNode>, b: AgentBounds, budget: { n: number }, depth: number): string | null {
  if (depth > b.maxDepth) return `nests deeper than ${b.maxDepth}`;
  for (const [k, c] of Object.entries(map)) {
    if (++budget.n > b.maxComponents) return `more than ${b.maxComponents} entries`;
    if (k.length > b.maxKeyLength) return `a component name of ${k.length} characters, more than ${b.maxKeyLength}`;
    if (c.metadata) {
      const why = attributesExceed(c.metadata, b, `${k.slice(0, 64)}.metadata`);
      if (why) return why;
    }
    if (c.subComponentMap) {
      const why = componentsExceed(c.subComponentMap, b, budget, depth + 1);
      if (why) return why;
    }
  }
  return null;
}
