/**
 * The packages offer (OpAMP §Packages): what each agent should have, what it reports, when the
 * offer goes, where an agent stands with it, and the URL of a file the bridge serves. Writes the
 * records' `packages` group.
 */
import { AgentCapabilities, hasBit, type ServerToAgentProps } from '../opamp/messages.js';
import type { AgentConnection, AgentRecord } from './agent.js';
import type { OfferedPackage } from '../render/packages.js';
import type { FleetContext } from './context.js';
import type { PackageStatusesView } from './view-types.js';

/** Path prefix of package files on the OpAMP endpoint: PREFIX + namespace + "/" + sha256. */
export const PACKAGES_PATH = '/v1/packages/';

/**
 * `http(s)://HOST/v1/packages/NAMESPACE/SHA256` at the host the agent reached the OpAMP endpoint by
 * (`ws://` becomes `http://`, `wss://` `https://`).
 */
export function packageDownloadUrl(opampEndpoint: string, namespace: string, sha256: string): string {
  const u = new URL(opampEndpoint);
  const scheme = u.protocol === 'wss:' || u.protocol === 'https:' ? 'https:' : 'http:';
  return `${scheme}//${u.host}${PACKAGES_PATH}${encodeURIComponent(namespace)}/${sha256}`;
}

/**
 * Where an agent gets an offered package: its own URL, or the bridge's copy at the endpoint the
 * agent reached (null when that endpoint is not known, e.g. a disconnected agent).
 */
export function offeredDownloadUrl(p: OfferedPackage, namespace: string, opampEndpoint: string | undefined): string | null {
  if (p.source.kind === 'url') return p.source.url;
  return opampEndpoint ? packageDownloadUrl(opampEndpoint, namespace, p.sha256) : null;
}

/** Parses a request path made by packageDownloadUrl; null when it is not one. */
export function parsePackagePath(path: string): { namespace: string; sha256: string } | null {
  if (!path.startsWith(PACKAGES_PATH)) return null;
  const parts = path.slice(PACKAGES_PATH.length).split('/');
  if (parts.length !== 2 || !/^[0-9a-f]{64}$/.test(parts[1]!)) return null;
  let namespace: string;
  try {
    namespace = decodeURIComponent(parts[0]!);
  } catch {
    return null;
  }
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(namespace) || namespace.length > 63) return null;
  return { namespace, sha256: parts[1]! };
}

export type PackageState = 'installed' | 'installing' | 'failed' | 'unsupported' | 'held';

/**
 * installed: the agent reports the current offer's hash and every offered package installed with
 * the offered hash; failed: it reports a failed install of the current offer (or an error for the
 * whole offer); installing: offered and not finished (or the agent does not report statuses);
 * unsupported: no AcceptsPackages capability; held: the declaration has problems, nothing offered.
 * Null when no packages are declared for the agent.
 */
export function packageState(rec: AgentRecord): { state: PackageState; message: string } | null {
  const pd = rec.packages.desired;
  if (!pd) return null;
  if (pd.issues.length > 0) return { state: 'held', message: pd.issues.join('; ') };
  if (!hasBit(rec.description.capabilities, AgentCapabilities.AcceptsPackages)) return { state: 'unsupported', message: 'the agent does not accept packages (no AcceptsPackages capability)' };
  const st = rec.packages.statuses;
  if (!st || st.serverProvidedAllPackagesHash !== pd.allHashHex) return { state: 'installing', message: 'offered; the agent has not reported this offer yet' };
  const failures: string[] = [];
  let done = true;
  for (const p of pd.packages) {
    const s = st.packages[p.name];
    const hash = p.hash.toString('hex');
    if (!s) {
      done = false;
      continue;
    }
    if (s.status === 'InstallFailed' && (s.serverOfferedHash === '' || s.serverOfferedHash === hash)) {
      failures.push(`${p.name || '(top-level)'} ${p.version}: ${s.errorMessage || 'install failed'}`);
    } else if (s.status !== 'Installed' || s.agentHasHash !== hash) done = false;
  }
  if (failures.length > 0) return { state: 'failed', message: failures.join('; ') };
  if (st.errorMessage) return { state: 'failed', message: st.errorMessage };
  return done ? { state: 'installed', message: '' } : { state: 'installing', message: 'downloading or installing' };
}

export class PackageOffers {
  constructor(private readonly ctx: FleetContext) {}

  /** The packages the agent should have, from the desired state, its namespace and labels. */
  computeDesired(rec: AgentRecord): void {
    const ctx = this.ctx;
    const packages = ctx.desired && rec.description.reported && !rec.identity.error ? ctx.desired.packagesFor(rec.identity.namespace, rec.identity.labels) : null;
    if (packages && packages.secretValues.length > 0) ctx.redactor.add(packages.secretValues);
    rec.packages.desired = packages;
  }

  recordStatuses(rec: AgentRecord, statuses: PackageStatusesView): void {
    rec.packages.statuses = statuses;
  }

  /** The offer was made to a client or connection that is gone: a reconnect may need it again. */
  forgetOffer(rec: AgentRecord): void {
    rec.packages.offered = null;
  }

  /**
   * Adds `packages_available` (OpAMP §Packages) for an agent that accepts packages and has not
   * received the current offer: its statuses report another all_packages_hash. Offered once per
   * connection; again after offerRetryMs to an agent whose statuses still report another hash.
   * Nothing while the declaration has problems; nothing when no Collector declares packages.
   */
  add(rec: AgentRecord, conn: AgentConnection, msg: ServerToAgentProps, now: number): boolean {
    const pd = rec.packages.desired;
    const caps = rec.description.capabilities;
    if (!pd || pd.issues.length > 0 || !hasBit(caps, AgentCapabilities.AcceptsPackages)) return false;
    if ((rec.packages.statuses?.serverProvidedAllPackagesHash ?? '') === pd.allHashHex) return false;
    const connectionId = conn.send ? conn.id : null;
    const o = rec.packages.offered;
    if (o && o.hash === pd.allHashHex && o.connectionId === connectionId) {
      // Without statuses there is no telling whether it got the offer: once per connection.
      if (!hasBit(caps, AgentCapabilities.ReportsPackageStatuses) || now - o.at < this.ctx.settings.offerRetryMs) return false;
    }
    // A served file is fetched from the OpAMP endpoint the agent reached, with the credential it connected
    // with (or the one that replaces it): the download is authenticated like the connection.
    const authorization = this.ctx.credentials?.replacementFor(conn.authorization) ?? conn.authorization;
    const packages: NonNullable<NonNullable<ServerToAgentProps['packagesAvailable']>['packages']> = {};
    for (const p of pd.packages) {
      const headers = p.source.kind === 'url' ? p.source.headers.map((h) => ({ key: h.name, value: h.value })) : authorization ? [{ key: 'Authorization', value: authorization }] : [];
      packages[p.name] = {
        type: p.type === 'Addon' ? 1 : 0,
        version: p.version,
        hash: p.hash,
        file: {
          downloadUrl: offeredDownloadUrl(p, pd.namespace, conn.endpoint)!,
          contentHash: Buffer.from(p.sha256, 'hex'),
          ...(p.signature ? { signature: p.signature } : {}),
          ...(headers.length > 0 ? { headers: { headers } } : {}),
        },
      };
    }
    msg.packagesAvailable = { packages, allPackagesHash: pd.allHash };
    rec.packages.offered = { hash: pd.allHashHex, at: now, connectionId };
    this.ctx.metrics.packageOffers.inc({ transport: conn.transport });
    this.ctx.log.info({ instanceUid: rec.uid, allPackagesHash: pd.allHashHex, packages: pd.packages.map((p) => `${p.name || '(top-level)'} ${p.version}`) }, 'Offered packages');
    return true;
  }
}
