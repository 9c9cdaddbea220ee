/**
 * API projections: records as the admin API shows them (src/fleet/view-types.ts), and what agents
 * report (package statuses, available components) in the shape it is stored and shown in.
 */
import { capabilityNames, type AgentToServer } from '../opamp/messages.js';
import { parseUid, uidToString } from '../opamp/uid.js';
import { keyValuesToObject, type AgentRecord, type UnsupportedRequest } from './agent.js';
import type { FleetContext } from './context.js';
import { credentialStale } from './identity.js';
import { offeredDownloadUrl, packageState } from './packages.js';
import type { AgentPackagesView, AgentView, AvailableComponentsView, ComponentDetailsView, PackageStatusesView } from './view-types.js';

export function view(ctx: FleetContext, rec: AgentRecord): AgentView {
  const { session: s, description: desc, identity: id, config: c } = rec;
  const desiredHash = c.desired && c.desired.issues.length === 0 ? c.desired.hashHex : null;
  const verified = id.verified;
  return {
    instanceUid: rec.uid,
    transport: s.transport,
    connected: s.connected,
    presence: s.connected ? 'connected' : s.pastGrace ? 'gone' : 'recently-disconnected',
    firstSeen: new Date(s.firstSeen).toISOString(),
    lastSeen: new Date(s.lastSeen).toISOString(),
    disconnectedAt: s.disconnectedAt === null ? null : new Date(s.disconnectedAt).toISOString(),
    sequenceNum: s.lastSeq === null ? '0' : s.lastSeq.toString(),
    capabilities: { raw: desc.capabilities, names: capabilityNames(desc.capabilities) },
    description: desc.reported,
    labels: id.labels,
    namespace: id.namespace,
    pod: id.pod,
    identityError: id.error,
    // A credential is shown as it stands now: a rotation moves tokens between keys.
    verified: verified && {
      ...verified,
      ...(verified.credential ? { credential: ctx.credentials?.credentialOf?.(s.connection?.authorization) ?? { ...verified.credential, current: !credentialStale(ctx, rec) } } : {}),
    },
    health: desc.health,
    connectionSettings: rec.settings.offered || rec.settings.reported ? { offeredHash: rec.settings.offered?.hash ?? null, reported: rec.settings.reported } : null,
    effectiveConfig: c.effective,
    remoteConfig: {
      desiredHash,
      collectors: c.desired?.collectors ?? [],
      reportedHash: c.reported.hash,
      status: c.reported.status,
      errorMessage: c.reported.errorMessage,
      inSync: desiredHash !== null && c.reported.hash === desiredHash && c.reported.status === 'APPLIED',
      missingComponents: rec.components.missing,
    },
    drift: c.drift.verdict,
    packageStatuses: rec.packages.statuses,
    packages: packagesView(rec),
    availableComponents: rec.components.available,
    customCapabilities: desc.customCapabilities,
    refusedRequests: Object.entries(s.refused).map(([kind, r]) => ({ kind: kind as UnsupportedRequest, count: r.count, lastAt: new Date(r.at).toISOString(), message: r.message })),
    resources: rec.resources && { rssBytes: rec.resources.rssBytes, cpuSeconds: rec.resources.cpuSeconds, at: new Date(rec.resources.at).toISOString() },
  };
}

/** Every known agent as the API shows it (one that fails to project is skipped and logged). */
export function views(ctx: FleetContext): AgentView[] {
  const out: AgentView[] = [];
  for (const r of ctx.agents.values()) {
    const v = ctx.isolated('view', r, () => view(ctx, r), null);
    if (v) out.push(v);
  }
  return out;
}

/** One agent by canonical UUID or 32 hex digits; undefined when unknown or malformed. */
export function viewOf(ctx: FleetContext, uid: string): AgentView | undefined {
  const bytes = parseUid(uid);
  const rec = bytes ? ctx.agents.get(uidToString(bytes)) : undefined;
  return rec ? view(ctx, rec) : undefined;
}

export function packagesView(rec: AgentRecord): AgentPackagesView | null {
  const pd = rec.packages.desired;
  if (!pd) return null;
  const st = packageState(rec)!;
  const endpoint = rec.session.connection?.endpoint;
  return {
    allPackagesHash: pd.allHashHex,
    collectors: pd.collectors,
    offered: pd.packages.map((p) => ({
      name: p.name,
      version: p.version,
      sha256: p.sha256,
      downloadUrl: offeredDownloadUrl(p, pd.namespace, endpoint),
    })),
    state: st.state,
    message: st.message,
    issues: pd.issues,
  };
}

const PACKAGE_STATUS_NAMES = ['Installed', 'InstallPending', 'Installing', 'InstallFailed', 'Downloading'] as const;

/** PackageStatuses as stored and shown; `clean` scrubs agent-written text. */
export function packageStatusesView(p: NonNullable<AgentToServer['packageStatuses']>, clean: (s: string) => string): PackageStatusesView {
  const hex = (b: Uint8Array | null | undefined) => (b && b.length > 0 ? Buffer.from(b).toString('hex') : '');
  const packages: PackageStatusesView['packages'] = {};
  for (const [name, s] of Object.entries(p.packages ?? {})) {
    const dd = s.downloadDetails;
    packages[name] = {
      agentHasVersion: s.agentHasVersion ?? '',
      agentHasHash: hex(s.agentHasHash),
      serverOfferedVersion: s.serverOfferedVersion ?? '',
      serverOfferedHash: hex(s.serverOfferedHash),
      status: PACKAGE_STATUS_NAMES[s.status ?? 0] ?? 'InstallPending',
      errorMessage: clean(s.errorMessage ?? ''),
      downloadPercent: dd ? (dd.downloadPercent ?? 0) : null,
      downloadBytesPerSecond: dd ? (dd.downloadBytesPerSecond ?? 0) : null,
    };
  }
  return { serverProvidedAllPackagesHash: hex(p.serverProvidedAllPackagesHash), packages, errorMessage: clean(p.errorMessage ?? '') };
}

type ComponentDetails = { metadata?: Parameters<typeof keyValuesToObject>[0]; subComponentMap?: Record<string, ComponentDetails> | null };

export function componentsView(map: Record<string, ComponentDetails> | null | undefined): Record<string, ComponentDetailsView> {
  const out: Record<string, ComponentDetailsView> = {};
  for (const [k, v] of Object.entries(map ?? {})) {
    out[k] = { metadata: keyValuesToObject(v.metadata), components: componentsView(v.subComponentMap) };
  }
  return out;
}

export function availableComponentsView(a: NonNullable<AgentToServer['availableComponents']>): AvailableComponentsView {
  return {
    hash: a.hash ? Buffer.from(a.hash).toString('hex') : '',
    components: componentsView(a.components as Record<string, ComponentDetails> | null | undefined),
  };
}
