/**
 * How standalone mode turns the OpAMPBridge manifest (or its absence) into what it serves, failing
 * closed:
 * - an OpAMPBridge that is present but invalid stops the start (the file and field are named); so
 *   does a file that cannot be read far enough to know its kind when no valid OpAMPBridge was found
 *   (it may be meant as the bridge). Never "absent, so no authentication".
 * - at runtime a valid edit is applied live (src/bridge/settings.ts says what waits for a restart);
 *   an invalid edit is reported and changes nothing (manifests.ts keeps the file's last good
 *   version); removing the OpAMPBridge keeps the last settings (never "absent, so no authentication").
 * - no OpAMPBridge at all: no authentication, so both endpoints listen on loopback only, whatever
 *   --host says. Serving other hosts without authentication takes an OpAMPBridge that says
 *   `auth: { mode: none }` explicitly.
 * - a bearer token grants the namespace of the Secret it is declared in (identity.ts).
 */
import type { Logger } from 'pino';
import type { TokenSource } from '../opamp/bearer-auth.js';
import type { OpAMPBridgeSpec } from '../schema/v1alpha1/index.js';
import type { ManifestSnapshot } from './manifests.js';

/** Why the bridge must not start with this folder, or null. */
export function startupRefusal(snap: ManifestSnapshot, dir: string): string | null {
  const never = 'the bridge does not start rather than serve without the authentication it may ask for';
  if (snap.bridgeProblems.length > 0) {
    return `the OpAMPBridge manifest in ${dir} is invalid, so ${never}: ${snap.bridgeProblems.join('; ')}`;
  }
  if (!snap.bridge && snap.opaqueFiles.length > 0) {
    const what = snap.opaqueFiles.map((f) => f.issues.join('; ') || f.path).join('; ');
    return (
      `no valid OpAMPBridge was found in ${dir}, and ${snap.opaqueFiles.length === 1 ? 'a file' : `${snap.opaqueFiles.length} files`} could not be read ` +
      `far enough to tell whether one is meant as the OpAMPBridge, so ${never}: ${what}. Fix or remove ${snap.opaqueFiles.length === 1 ? 'it' : 'them'}`
    );
  }
  return null;
}

const isLoopback = (h: string) => h === 'localhost' || h === '::1' || h === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);

/** The address to listen on: loopback only when the folder has no OpAMPBridge. */
export function listenHost(requested: string | undefined, snap: ManifestSnapshot, dir: string, log: Logger): string {
  const host = requested ?? '0.0.0.0';
  if (snap.bridge || isLoopback(host)) return host;
  const loopback = host.includes(':') ? '::1' : '127.0.0.1';
  log.warn(
    { manifests: dir, requestedHost: host, host: loopback },
    `No OpAMPBridge manifest in the folder: agents are not authenticated, so the bridge listens on loopback only (${loopback}), not on ${host}. ` +
      'To serve other hosts add an OpAMPBridge with spec.auth bearerToken or mtls (or, knowingly, auth: { mode: none })',
  );
  return loopback;
}

/** The token Secrets of auth.mode bearerToken: the bridge's namespace and spec.auth.bearerToken.namespaces. */
export function tokenSources(
  auth: OpAMPBridgeSpec['auth'],
  bridgeNamespace: string,
  secret: (namespace: string, name: string) => { data: Record<string, string> } | undefined,
  dir: string,
): TokenSource[] {
  const bt = auth.bearerToken!;
  return [...new Set([bridgeNamespace, ...(bt.namespaces ?? [])])].map((namespace) => {
    const s = secret(namespace, bt.secretName);
    return { namespace, tokens: s?.data ?? {}, currentKey: bt.currentKey, ...(s ? {} : { problem: `Secret ${namespace}/${bt.secretName} not found in ${dir}` }) };
  });
}

/** Namespaces the folder's resources are in (and the bridge's). */
function namespacesOf(snap: ManifestSnapshot, bridgeNamespace: string): string[] {
  return [...new Set([bridgeNamespace, ...snap.collectors.map((c) => c.input.namespace), ...snap.secrets.map((s) => s.namespace)])].sort();
}

/**
 * Reports, at start and on every change: an invalid OpAMPBridge (kept: the settings it started
 * with), and — without authentication — that namespaces are no boundary once there is more than one.
 */
export function bridgeReporter(log: Logger, opts: { authenticated: () => boolean; bridgeNamespace: string }): (snap: ManifestSnapshot) => void {
  let lastProblems = '';
  let warnedNamespaces = '';
  return (snap) => {
    const problems = snap.bridgeProblems.join('\n');
    if (problems !== lastProblems) {
      lastProblems = problems;
      if (problems) {
        log.error(
          { issues: snap.bridgeProblems },
          'The OpAMPBridge manifest is invalid; the bridge keeps serving with its last valid settings (auth, TLS, endpoint, limits), never with none or defaults',
        );
      }
    }
    if (opts.authenticated()) return;
    const namespaces = namespacesOf(snap, opts.bridgeNamespace);
    const key = namespaces.join(',');
    if (namespaces.length > 1 && key !== warnedNamespaces) {
      warnedNamespaces = key;
      log.warn(
        { namespaces },
        'Namespaces are not a boundary: agent authentication is off, so any agent can claim any of these namespaces (k8s.namespace.name) and receive its Collectors\' configs, Secret values and packages',
      );
    }
  };
}
