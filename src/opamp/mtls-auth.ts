/**
 * Client-certificate authentication (auth.mode mtls). The OpAMP server requests a certificate
 * and verifies it against the client CA without failing the handshake (OpampServerOptions.tls);
 * this hook turns the verdict into a 401/403 at the upgrade or request, and the certificate into
 * a verified identity:
 * - a URI SAN `spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICEACCOUNT` (SPIFFE, Istio, cert-manager
 *   csi-driver-spiffe) names the namespace and ServiceAccount;
 * - else a subject CN `system:serviceaccount:NAMESPACE:SERVICEACCOUNT` does;
 * - else the certificate names no namespace (username: its SPIFFE ID, CN or whole subject), which
 *   Kubernetes mode (`requireNamespace`) refuses with 403.
 */
import { X509Certificate } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { AuthResult, VerifiedIdentity } from './connection.js';

// Kubernetes names: a namespace is a DNS label, a ServiceAccount a DNS subdomain.
const NS = '[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?';
const SA = '[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?';
const SPIFFE_K8S = new RegExp(`^spiffe://[^/]+/ns/(${NS})/sa/(${SA})$`);
const SA_CN = new RegExp(`^system:serviceaccount:(${NS}):(${SA})$`);

export const NO_NAMESPACE_REASON =
  'the client certificate names no namespace/ServiceAccount (SPIFFE ID spiffe://…/ns/N/sa/S or CN system:serviceaccount:N:S)';

export function mtlsAuth(opts: { requireNamespace: boolean }): (req: IncomingMessage) => Promise<AuthResult> {
  return async (req) => {
    const socket = req.socket as Partial<TLSSocket>;
    const peer = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate() : undefined;
    // No certificate: an empty object (or nothing, on a plain socket).
    if (!peer?.raw) return { ok: false, status: 401, reason: 'a client certificate is required' };
    if (socket.authorized !== true) {
      return { ok: false, status: 401, reason: `the client certificate is not accepted: ${String(socket.authorizationError ?? 'not verified')}` };
    }
    const r = identityOf(new X509Certificate(peer.raw));
    if ('error' in r) return { ok: false, status: 403, reason: r.error };
    if (r.identity.namespace === undefined && opts.requireNamespace) {
      return { ok: false, status: 403, reason: `${NO_NAMESPACE_REASON}; it is ${r.identity.username}` };
    }
    return { ok: true, identity: r.identity };
  };
}

/** The identity a (verified) client certificate names. Exported for tests. */
export function identityOf(cert: X509Certificate): { identity: VerifiedIdentity } | { error: string } {
  const spiffeIds = subjectAltNames(cert.subjectAltName).filter(([type, v]) => type === 'URI' && v.toLowerCase().startsWith('spiffe://')).map(([, v]) => v);
  // An X.509-SVID carries exactly one SPIFFE ID; several would make the identity ambiguous.
  if (spiffeIds.length > 1) return { error: `the client certificate carries ${spiffeIds.length} SPIFFE IDs (${spiffeIds.join(', ')}); exactly one is allowed` };
  const spiffe = spiffeIds[0];
  const m = spiffe !== undefined ? SPIFFE_K8S.exec(spiffe) : null;
  if (m) return { identity: { method: 'mtls', username: spiffe!, namespace: m[1], serviceAccount: m[2] } };
  const cns = subjectField(cert.subject, 'CN');
  const cn = cns.length === 1 ? cns[0]! : undefined;
  const c = cn !== undefined ? SA_CN.exec(cn) : null;
  if (c) return { identity: { method: 'mtls', username: cn!, namespace: c[1], serviceAccount: c[2] } };
  return { identity: { method: 'mtls', username: spiffe ?? cn ?? cert.subject.split('\n').join(', ') } };
}

/**
 * Parses Node's subjectAltName text: `TYPE:value` entries joined by ", ", where a value holding
 * special characters (a comma, a quote) is JSON-quoted (Node ≥ 12.22.9, CVE-2021-44532).
 */
export function subjectAltNames(text: string | undefined): [string, string][] {
  const out: [string, string][] = [];
  const re = /([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/gy;
  let m: RegExpExecArray | null;
  while (text && (m = re.exec(text)) !== null && m[0] !== '') {
    out.push([m[1]!, m[2]!.startsWith('"') ? unquote(m[2]!) : m[2]!]);
  }
  return out;
}

function unquote(v: string): string {
  try {
    return String(JSON.parse(v));
  } catch {
    return v; // not Node's quoting after all: keep it as is (it then matches no identity pattern)
  }
}

/** Values of one attribute in Node's subject text (`CN=a\nO=b`; special characters stay escaped, so they match no identity pattern). */
function subjectField(subject: string, field: string): string[] {
  return subject
    .split('\n')
    .filter((line) => line.startsWith(`${field}=`))
    .map((line) => line.slice(field.length + 1));
}
