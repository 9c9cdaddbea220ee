/**
 * Where an agent stands with the packages offered to it, judged from its PackageStatuses, and the
 * URL of a file the bridge serves.
 */
import { AgentCapabilities, hasBit } from '../opamp/messages.js';
import type { AgentRecord } from './agent.js';
import type { OfferedPackage } from '../packages/desired.js';

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
  const pd = rec.packagesDesired;
  if (!pd) return null;
  if (pd.issues.length > 0) return { state: 'held', message: pd.issues.join('; ') };
  if (!hasBit(rec.capabilities, AgentCapabilities.AcceptsPackages)) return { state: 'unsupported', message: 'the agent does not accept packages (no AcceptsPackages capability)' };
  const st = rec.packageStatuses;
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
