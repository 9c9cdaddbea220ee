import type { RenderedConfig } from '../render/index.js';
import type { DesiredPackages } from '../render/packages.js';
import type {
  AgentDescription,
  AnyValue,
  ComponentHealth,
  KeyValue,
} from '../opamp/messages.js';
import type { AvailableComponentsView, ComponentHealthView, PackageStatusesView, RemoteConfigState, Transport } from './view-types.js';
import { toDecimalString } from '../opamp/messages.js';
import type { AgentConnection, VerifiedIdentity } from '../opamp/connection.js';
import type { ProcessFigures } from '../otlp/metrics.js';
import { BoundedMap } from '../lib/bounded-map.js';

export type { AgentConnection };

/** What agents may ask of a server that Fleetbridge does not serve (refused explicitly, counted, logged). */
export type UnsupportedRequest = 'connection_settings_request' | 'custom_message';

/**
 * Everything the server knows about one agent instance (keyed by its instance_uid), grouped by
 * concern. Each group is written by one module and only read elsewhere:
 * uid, uidBytes, `session` and `description`: session.ts (admission.ts decides who may hold a uid);
 * `identity`: identity.ts; `config`: remote-config.ts, except `config.drift`: drift.ts;
 * `packages`: packages.ts; `settings`: connection-settings.ts; `components`: components.ts;
 * `resources`: gauges.ts. newRecord (below) sets every group's starting values.
 */
export interface AgentRecord {
  uid: string;
  uidBytes: Uint8Array;
  session: SessionGroup;
  description: DescriptionGroup;
  identity: IdentityGroup;
  config: ConfigGroup;
  packages: PackagesGroup;
  settings: SettingsGroup;
  components: ComponentsGroup;
  /** The newest process figures (RSS, CPU time) from the agent's own metrics (src/otlp), or null. */
  resources: ProcessFigures | null;
}

/** The connection, transport, sequence, times and presence; who holds the uid; requests refused. */
export interface SessionGroup {
  transport: Transport;
  connected: boolean;
  connection: AgentConnection | null;
  /** When the agent last went from connected to disconnected; null while connected. */
  disconnectedAt: number | null;
  /** Set by the sweep once a disconnected agent is past the grace in which it is counted as recently disconnected. */
  pastGrace: boolean;
  firstSeen: number;
  lastSeen: number;
  lastSeq: bigint | null;
  /** When the agent's sequence last (re)started: connection settings wait while it starts. */
  sequenceStartedAt: number;
  /** The identity that holds this uid (see holderOf in admission.ts); null when nothing tells agents apart. */
  holder: string | null;
  /** The bearer Authorization the holder presented (a rotation lets the token that replaces it take over). */
  holderAuthorization: string | null;
  /** How often a live connection of this uid was replaced by another since `since` (cloned agents flap). */
  takeovers: { count: number; since: number };
  /** Requests the server does not serve that the agent made, by kind: how many, and the last one's reason. */
  refused: Partial<Record<UnsupportedRequest, { count: number; at: number; message: string; connectionId: number | null }>>;
}

/** What the agent says about itself: its description, capabilities, health and custom capabilities. */
export interface DescriptionGroup {
  /** The AgentDescription as reported; null until the agent sends one. */
  reported: { identifying: Record<string, unknown>; nonIdentifying: Record<string, unknown> } | null;
  /** The reported attributes, flattened to strings. */
  attributes: Record<string, string>;
  capabilities: number;
  health: ComponentHealthView | null;
  customCapabilities: string[];
}

/** Who the agent is and where it belongs. */
export interface IdentityGroup {
  /** Who the agent's credential says it is (a ServiceAccount token bound to a pod), or null. */
  verified: VerifiedIdentity | null;
  namespace: string;
  /** The labels that select Collectors (standalone: the attributes; Kubernetes: the bound pod's labels). */
  labels: Record<string, string>;
  /** Pod the agent is bound to ("namespace/name"), in Kubernetes mode. */
  pod: string | null;
  /** Why the agent gets no config (e.g. it claims a pod that does not exist), or null. */
  error: string | null;
}

/** Remote config: desired, offered, reported, effective, and drift. */
export interface ConfigGroup {
  /** What the agent should run; null when nothing matches it (nothing is sent then). */
  desired: RenderedConfig | null;
  /** Last remote config sent: hash and when, and on which connection. */
  offered: { hash: string; at: number; connectionId: number | null } | null;
  /** A desired hash the agent reported FAILED: never re-pushed automatically. Cleared when desired changes. */
  failedHash: string | null;
  reported: { hash: string | null; status: RemoteConfigState; errorMessage: string };
  effective: Record<string, { body: string; contentType: string }> | null;
  drift: DriftGroup;
}

/** Whether the effective config contains what was pushed, and what that judgement rests on (written by drift.ts). */
export interface DriftGroup {
  /** null when not judged. */
  verdict: { drifted: boolean; differences: string[] } | null;
  /**
   * When the agent reported the status it has now (hash and status), and whether an effective config
   * arrived with or after that report: drift is judged only on an effective config that belongs to the
   * applied config, or once a short settle has passed since APPLIED.
   */
  statusAt: number;
  effectiveFresh: boolean;
  /** A desired hash the agent was seen running (no drift): later differences are drift, not a lost push. */
  syncedHash: string | null;
  /** A desired hash pushed once more because the agent said APPLIED but did not run it (the Supervisor's start-up race). */
  repushedHash: string | null;
  /** That push is still to be sent. */
  repushDue: boolean;
}

export interface PackagesGroup {
  /** The packages the agent should have (the Collectors that select it); null when none declare any. */
  desired: DesiredPackages | null;
  /** Last PackagesAvailable sent: all_packages_hash, when, and on which connection. */
  offered: { hash: string; at: number; connectionId: number | null } | null;
  statuses: PackageStatusesView | null;
}

export interface SettingsGroup {
  /**
   * The connection settings offered to this agent: the whole offer's hash, the hash of its `opamp`
   * part (null when none was sent), when, and under which settings epoch.
   */
  offered: { hash: string; opamp: string | null; at: number; epoch: number } | null;
  /** Set when the agent was found to need no connection-settings offer (under this epoch and capabilities). */
  noOffer: { epoch: number; capabilities: number } | null;
  /** What the agent last reported about connection settings (agents with ReportsConnectionSettingsStatus). */
  reported: { hash: string | null; status: RemoteConfigState; errorMessage: string } | null;
  /**
   * The agent may have lost the settings it was offered (new to us, or restarted without state) until
   * an offer is judged. Kept as state: whether a restart lost state is known only at the restart.
   */
  mayBeForgotten: boolean;
}

export interface ComponentsGroup {
  /** The last full list of components the agent reported (with the hash it had then), or null. */
  available: AvailableComponentsView | null;
  /** The available-components hash the agent reported last (with or without the list), or null. */
  hash: string | null;
  /**
   * When the server last asked for the full list (ServerToAgent flag ReportAvailableComponents):
   * for which reported hash ("" for none), first and last time, on which connection.
   */
  requested: { hash: string; firstAt: number; at: number; connectionId: number | null } | null;
  /** "kind/type" the desired config uses and the agent's current component list lacks; [] when none or not judged. */
  missing: string[];
}

/** A record for an agent first seen now on `conn`: every group at its starting values. */
export function newRecord(uid: string, uidBytes: Uint8Array, conn: AgentConnection, now: number, namespace: string): AgentRecord {
  return {
    uid,
    uidBytes: new Uint8Array(uidBytes),
    session: {
      transport: conn.transport,
      connected: true,
      connection: conn,
      disconnectedAt: null,
      pastGrace: false,
      firstSeen: now,
      lastSeen: now,
      lastSeq: null,
      sequenceStartedAt: now,
      holder: null,
      holderAuthorization: null,
      takeovers: { count: 0, since: now },
      refused: {},
    },
    description: { reported: null, attributes: {}, capabilities: 0, health: null, customCapabilities: [] },
    identity: { verified: null, namespace, labels: {}, pod: null, error: null },
    config: {
      desired: null,
      offered: null,
      failedHash: null,
      reported: { hash: null, status: 'UNSET', errorMessage: '' },
      effective: null,
      drift: { verdict: null, statusAt: now, effectiveFresh: false, syncedHash: null, repushedHash: null, repushDue: false },
    },
    packages: { desired: null, offered: null, statuses: null },
    settings: { offered: null, noOffer: null, reported: null, mayBeForgotten: true },
    components: { available: null, hash: null, requested: null, missing: [] },
    resources: null,
  };
}

/**
 * One shared copy of a short string that many agents report alike (service name and version, OS,
 * namespace, health status, content types): decoded messages make a new copy for every agent.
 * Bounded: the table is cleared when it fills up.
 */
const shared = new BoundedMap<string, string>({ maxEntries: 50_000 });
export function internShort(s: string): string {
  if (s.length > 128) return s;
  const known = shared.get(s);
  if (known !== undefined) return known;
  shared.set(s, s);
  return s;
}

export function anyValueToJs(v: AnyValue | null | undefined): unknown {
  if (!v) return null;
  if (v.stringValue != null) return internShort(v.stringValue);
  if (v.boolValue != null) return v.boolValue;
  if (v.intValue != null) return typeof v.intValue === 'number' ? v.intValue : v.intValue.toString();
  if (v.doubleValue != null) return v.doubleValue;
  if (v.arrayValue != null) return (v.arrayValue.values ?? []).map(anyValueToJs);
  if (v.kvlistValue != null) return keyValuesToObject(v.kvlistValue.values ?? []);
  if (v.bytesValue != null) return Buffer.from(v.bytesValue).toString('base64');
  return null;
}

export function keyValuesToObject(kvs: readonly KeyValue[] | null | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const kv of kvs ?? []) if (kv.key != null) out[kv.key] = anyValueToJs(kv.value);
  return out;
}

export function describe(d: AgentDescription): NonNullable<DescriptionGroup['reported']> {
  return {
    identifying: keyValuesToObject(d.identifyingAttributes),
    nonIdentifying: keyValuesToObject(d.nonIdentifyingAttributes),
  };
}

/** Attributes flattened to label strings; identifying attributes win over non-identifying ones. */
export function labelsOf(desc: DescriptionGroup['reported']): Record<string, string> {
  const labels: Record<string, string> = {};
  if (!desc) return labels;
  for (const src of [desc.nonIdentifying, desc.identifying]) {
    for (const [k, v] of Object.entries(src)) {
      labels[k] = typeof v === 'string' ? v : internShort(typeof v === 'object' ? JSON.stringify(v) : String(v));
    }
  }
  return labels;
}

/** The health tree as shown; `clean` scrubs agent-written text (secret values) before it is kept. */
export function healthView(h: ComponentHealth, clean: (s: string) => string = (s) => s): ComponentHealthView {
  const map: Record<string, ComponentHealthView> = {};
  for (const [k, v] of Object.entries(h.componentHealthMap ?? {})) map[k] = healthView(v, clean);
  return {
    healthy: !!h.healthy,
    status: internShort(clean(h.status ?? '')),
    lastError: internShort(clean(h.lastError ?? '')),
    startTimeUnixNano: toDecimalString(h.startTimeUnixNano),
    statusTimeUnixNano: toDecimalString(h.statusTimeUnixNano),
    componentHealthMap: map,
  };
}

/** Where an agent belongs: the namespace and labels that select its Collectors. */
export type AgentIdentity =
  | { ok: true; namespace: string; labels: Record<string, string>; pod?: string }
  | { ok: false; error: string };

/**
 * Decides an agent's identity from what the server knows of it. Called when its description
 * changes and on every refresh (pods may have changed). Must be cheap: a cache lookup.
 */
export type IdentityResolver = (agent: Readonly<AgentRecord>) => AgentIdentity;

/**
 * Standalone mode: an agent's attributes are its labels; `k8s.namespace.name` (if any) its
 * namespace — unless its client certificate names a namespace, which then decides.
 */
export function attributeIdentity(defaultNamespace: string): IdentityResolver {
  return (agent) => {
    const claimed = agent.description.attributes['k8s.namespace.name'];
    const certified = agent.identity.verified?.namespace;
    if (certified !== undefined && claimed !== undefined && claimed !== certified) {
      return { ok: false, error: `the agent claims namespace ${claimed} but its certificate is for namespace ${certified}` };
    }
    return { ok: true, namespace: certified ?? claimed ?? defaultNamespace, labels: agent.description.attributes };
  };
}
