/**
 * JSON shapes served by the admin HTTP API (`/api/v1/...`). These are a public contract:
 * the web page, tests and users' scripts read them. Add fields; never rename or remove one.
 */
import type { RemoteConfigState, TransportName, VerifiedIdentity } from '../opamp/connection.js';

export type { RemoteConfigState };
export type Transport = TransportName;

export interface ComponentHealthView {
  healthy: boolean;
  status: string;
  lastError: string;
  /** Nanoseconds since the epoch, as a decimal string (exceeds 2^53). "0" when unknown. */
  startTimeUnixNano: string;
  statusTimeUnixNano: string;
  componentHealthMap: Record<string, ComponentHealthView>;
}

/** One entry of an agent's available components: its metadata and its sub-components by key. */
export interface ComponentDetailsView {
  /** E.g. `code.namespace`: the Go module (and version) a collector component comes from. */
  metadata: Record<string, unknown>;
  components: Record<string, ComponentDetailsView>;
}

/**
 * The components an agent reports it can run (OpAMP `available_components`). A collector reports
 * the kinds ("receivers", "processors", "exporters", "extensions", "connectors"), each with its
 * component types ("otlp", "batch", ...) under `components`.
 */
export interface AvailableComponentsView {
  /** Hex of the agent's hash of the list this is (the last full list it sent). */
  hash: string;
  components: Record<string, ComponentDetailsView>;
}

export interface AgentView {
  /** Canonical UUID string of the 16-byte instance_uid. */
  instanceUid: string;
  transport: Transport;
  connected: boolean;
  /**
   * Whether the agent counts in the Collectors' figures: "connected"; "recently-disconnected" (within
   * two heartbeat intervals of disconnecting: counted only as disconnected); "gone" (counted nowhere,
   * kept here for a while).
   */
  presence: 'connected' | 'recently-disconnected' | 'gone';
  /** ISO-8601 times. */
  firstSeen: string;
  lastSeen: string;
  disconnectedAt: string | null;
  sequenceNum: string;
  capabilities: { raw: number; names: string[] };
  description: {
    identifying: Record<string, unknown>;
    nonIdentifying: Record<string, unknown>;
  } | null;
  /** The labels used to select Collectors: in standalone mode, the agent's attributes flattened to strings; in Kubernetes mode, its pod's labels. */
  labels: Record<string, string>;
  /** The namespace whose Collectors apply to this agent. */
  namespace: string;
  /** The pod ("namespace/name") the agent is bound to, in Kubernetes mode; else null. */
  pod: string | null;
  /** The identity the agent's credential proved (a pod-bound ServiceAccount token), or null without authentication. */
  /** How the agent authenticated and who that made it (see VerifiedIdentity); null without authentication. */
  verified: VerifiedIdentity | null;
  /** Why the agent gets no config (it claims a pod that does not exist, or one in a namespace this bridge does not serve), or null. */
  identityError: string | null;
  health: ComponentHealthView | null;
  /**
   * ConnectionSettingsOffers: the hash of the last offer (heartbeat, credential, own-telemetry
   * destinations) and what the agent reported about it, if it reports that (ReportsConnectionSettingsStatus).
   */
  connectionSettings: {
    offeredHash: string | null;
    reported: { hash: string | null; status: RemoteConfigState; errorMessage: string } | null;
  } | null;
  /** Effective config as reported by the agent: file name → body (UTF-8) and content type. */
  effectiveConfig: Record<string, { body: string; contentType: string }> | null;
  remoteConfig: {
    /** Hex sha256 of what the bridge wants this agent to run; null when no Collector matches. */
    desiredHash: string | null;
    /** Collectors merged into the desired config, in merge order ("namespace/name"). */
    collectors: string[];
    /** Hex of the agent's `last_remote_config_hash`; null when it never reported one. */
    reportedHash: string | null;
    status: RemoteConfigState;
    errorMessage: string;
    /** True when reportedHash equals desiredHash and status is APPLIED. */
    inSync: boolean;
    /**
     * Component types the desired config uses that the agent's available components lack
     * ("kind/type", e.g. "exporters/otlphttp"): the config is not pushed to it. Empty when none
     * lack, or when the agent does not report its components.
     */
    missingComponents: string[];
  };
  /**
   * Whether the effective config the agent reports contains what was pushed (the pushed config is
   * checked as a subset, ignoring Supervisor-owned sections and redacted values). Null when not
   * judged: the agent has not applied the desired config or reports no effective config.
   */
  drift: { drifted: boolean; differences: string[] } | null;
  /** What the agent reports about its packages (agents with ReportsPackageStatuses), or null. */
  packageStatuses: PackageStatusesView | null;
  /** The packages offered to this agent and where it stands with them; null when none are declared for it. */
  packages: AgentPackagesView | null;
  /** The last full list of components the agent reported (agents with ReportsAvailableComponents), or null. */
  availableComponents: AvailableComponentsView | null;
  customCapabilities: string[];
  /** Requests the agent made that this server does not serve, refused explicitly (error_response or an empty custom-capabilities answer). */
  refusedRequests: RefusedRequestView[];
  /**
   * The agent's process figures from its own metrics (sent to the bridge's `POST /v1/metrics`):
   * resident memory in bytes, CPU seconds used since it started, and when they were measured
   * (ISO-8601). A figure the agent did not report is null; null when it sent none.
   */
  resources: { rssBytes: number | null; cpuSeconds: number | null; at: string } | null;
}

export interface FailingAgentView {
  instanceUid: string;
  /** Pod (namespace/name) in Kubernetes mode, host name or uid in standalone mode. */
  name: string;
  /**
   * ApplyFailed: the agent reported FAILED; InvalidConfig: its merged config is held back;
   * MissingComponents: the config uses component types the agent reports it lacks (not pushed);
   * Drifted: it runs something else than it applied; PackageInstallFailed: it reports a failed
   * install of the packages offered to it.
   */
  reason: 'ApplyFailed' | 'InvalidConfig' | 'MissingComponents' | 'Drifted' | 'PackageInstallFailed';
  message: string;
}

/** A request the agent made that the server does not serve (refused explicitly): how often, and why. */
export interface RefusedRequestView {
  kind: 'connection_settings_request' | 'custom_message';
  count: number;
  lastAt: string;
  message: string;
}

export interface CollectorStatusCounts {
  /** Connected agents the Collector selects (every count here is of connected agents). */
  matched: number;
  connected: number;
  /** Agents it selects that disconnected within the grace (two heartbeat intervals); counted nowhere else. */
  disconnected: number;
  applied: number;
  applying: number;
  failed: number;
  healthy: number;
  unhealthy: number;
  /** Agents that applied the config but report an effective config that differs from it. */
  drifted: number;
  /**
   * Which agent versions run: `service.name service.version` as the agents report them (identifying
   * attributes), most common first, at most 10 (the rest summed as "other").
   */
  agentVersions: { version: string; agents: number }[];
  /** Where the agents stand with the Collector's packages; null when it declares none. */
  packages: CollectorPackagesCounts | null;
  /** Summed process figures of the agents that report their own metrics; null when none do. */
  resources: { agents: number; memoryTotalBytes: number; memoryMaxBytes: number; cpuSecondsTotal: number } | null;
}

export interface CollectorPackagesCounts {
  /** Agents that accept packages and were offered them. */
  offered: number;
  installed: number;
  installing: number;
  failed: number;
  /** Matched agents without the AcceptsPackages capability. */
  unsupported: number;
}

export interface CollectorView {
  namespace: string;
  name: string;
  /** The manifest file in standalone mode. */
  source: string | null;
  generation: number;
  priority: number;
  valid: boolean;
  /** Human-readable problems when valid is false. */
  issues: string[];
  /** Hex sha256 of this Collector's own rendered config (its contribution, before merging). */
  configHash: string | null;
  /** The Collector's own packages: their all_packages_hash and what holds them back; null when it declares none. */
  packages: { hash: string; packages: { name: string; version: string; sha256: string }[]; issues: string[] } | null;
  status: CollectorStatusCounts & { failing: FailingAgentView[] };
}

export type PackageStatusName = 'Installed' | 'InstallPending' | 'Installing' | 'InstallFailed' | 'Downloading';

export interface PackageStatusView {
  agentHasVersion: string;
  agentHasHash: string;
  serverOfferedVersion: string;
  serverOfferedHash: string;
  status: PackageStatusName;
  errorMessage: string;
  /** While downloading, when the agent reports it. */
  downloadPercent: number | null;
  downloadBytesPerSecond: number | null;
}

export interface PackageStatusesView {
  /** The all_packages_hash the agent last received from a server (hex), or "". */
  serverProvidedAllPackagesHash: string;
  errorMessage: string;
  packages: Record<string, PackageStatusView>;
}

/** Where one agent stands with the packages the bridge offers it. */
export interface AgentPackagesView {
  allPackagesHash: string;
  collectors: string[];
  offered: { name: string; version: string; sha256: string; downloadUrl: string | null }[];
  /** unsupported: the agent does not accept packages; held: nothing is offered (issues). */
  state: 'installed' | 'installing' | 'failed' | 'unsupported' | 'held';
  /** Why it failed or is held. */
  message: string;
  issues: string[];
}
