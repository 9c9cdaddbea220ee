/**
 * Who may use the admin endpoint (docs/adr/0008-admin-access.md). `/healthz` and `/readyz` are
 * always open; the JSON API (`/api/v1/*`) always needs a credential when access control is on, and
 * `/metrics` too unless that is switched off. `POST /v1/metrics` is not decided here: agents prove
 * who they are with their own-metrics credential (src/otlp/credentials.ts).
 *
 * - standalone: an admin bearer token (a file, or a Secret manifest) and/or a client certificate
 *   issued by the admin client CA; any one of them admits to everything;
 * - Kubernetes: the bearer token is verified with a TokenReview and the request authorized with a
 *   SubjectAccessReview (src/kube/access-review.ts);
 * - none configured: open, and the endpoint listens on loopback only.
 */
import { X509Certificate, createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';

/** What a request asks for: the JSON API, or the Prometheus metrics. */
export type AdminResource = 'api' | 'metrics';

export type AccessVerdict = { ok: true; user: string } | { ok: false; status: 401 | 403 | 503; reason: string };

export interface AdminAccess {
  /** How requests are checked (logs, docs): none, token, mtls, token+mtls, kubernetes. */
  readonly mode: string;
  /** Whether anything is checked at all (false: open, so the endpoint must stay on loopback). */
  readonly enforced: boolean;
  check(req: IncomingMessage, resource: AdminResource, path: string): Promise<AccessVerdict>;
}

/** No access control: every request is allowed (the caller binds loopback only). */
export const OPEN_ACCESS: AdminAccess = { mode: 'none', enforced: false, check: async () => ({ ok: true, user: 'anonymous' }) };

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** The bearer token of a request, or null. */
export function bearerToken(req: IncomingMessage): string | null {
  const m = BEARER.exec(req.headers.authorization ?? '');
  return m ? m[1]! : null;
}

/**
 * Static admin tokens (standalone). `tokens()` is asked on every request, so a reloaded Secret
 * manifest applies at once; digests are compared in constant time.
 */
export function tokenCheck(tokens: () => readonly string[]): (req: IncomingMessage) => AccessVerdict | null {
  return (req) => {
    const presented = bearerToken(req);
    if (presented === null) return null;
    const d = sha256(presented);
    let hit = false;
    for (const t of tokens()) if (t !== '' && timingSafeEqual(d, sha256(t))) hit = true;
    return hit ? { ok: true, user: 'admin-token' } : { ok: false, status: 401, reason: 'the admin token is not accepted' };
  };
}

/**
 * A client certificate that the TLS layer verified and that one of the admin client CA's
 * certificates issued (the admin endpoint may also verify agents' certificates for their own
 * metrics against another CA: those do not open the admin API).
 */
export function clientCertCheck(caPem: () => string | undefined): (req: IncomingMessage) => AccessVerdict | null {
  return (req) => {
    const socket = req.socket as Partial<TLSSocket>;
    const peer = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate() : undefined;
    if (!peer?.raw) return null;
    if (socket.authorized !== true) return { ok: false, status: 401, reason: `the client certificate is not accepted: ${String(socket.authorizationError ?? 'not verified')}` };
    const cert = new X509Certificate(peer.raw);
    const issuers = splitPem(caPem() ?? '');
    if (!issuers.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey))) return { ok: false, status: 401, reason: 'the client certificate is not issued by the admin client CA' };
    return { ok: true, user: `cert:${cert.subject.split('\n').join(',')}` };
  };
}

/** Standalone access: any one of the checks admits; without a credential, 401. */
export function staticAccess(opts: { token?: ReturnType<typeof tokenCheck>; clientCert?: ReturnType<typeof clientCertCheck> }): AdminAccess {
  const checks = [opts.clientCert, opts.token].filter((c): c is (req: IncomingMessage) => AccessVerdict | null => c !== undefined);
  const mode = [opts.token ? 'token' : null, opts.clientCert ? 'mtls' : null].filter(Boolean).join('+') || 'none';
  if (checks.length === 0) return OPEN_ACCESS;
  return {
    mode,
    enforced: true,
    async check(req) {
      let refusal: AccessVerdict | null = null;
      for (const c of checks) {
        const v = c(req);
        if (v?.ok) return v;
        refusal ??= v;
      }
      return refusal ?? { ok: false, status: 401, reason: opts.token ? 'an admin token (Authorization: Bearer) is required' : 'a client certificate is required' };
    },
  };
}

/** The PEM certificates of a bundle, unparseable ones skipped. */
function splitPem(pem: string): X509Certificate[] {
  const out: X509Certificate[] = [];
  for (const m of pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)) {
    try {
      out.push(new X509Certificate(m[0]));
    } catch {
      // not a certificate
    }
  }
  return out;
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/**
 * Refused requests, counted (`fleetbridge_admin_requests_denied_total{resource, reason}`) and
 * logged at most once per 10 s per kind (with how many were not logged), so a scanner cannot
 * flood the log.
 */
export class DenialRecorder {
  readonly #counter: Counter<'resource' | 'reason'>;
  readonly #last = new Map<string, { at: number; suppressed: number }>();
  constructor(private readonly logger: Logger, registry: Registry, private readonly now: () => number = Date.now) {
    this.#counter =
      (registry.getSingleMetric('fleetbridge_admin_requests_denied_total') as Counter<'resource' | 'reason'> | undefined) ??
      new Counter({ name: 'fleetbridge_admin_requests_denied_total', help: 'Admin endpoint requests refused, by resource (api, metrics) and reason (unauthenticated: 401, forbidden: 403, unavailable: 503)', labelNames: ['resource', 'reason'] as const, registers: [registry] });
  }

  record(req: IncomingMessage, resource: AdminResource, status: 401 | 403 | 503, reason: string): void {
    const kind = status === 401 ? 'unauthenticated' : status === 403 ? 'forbidden' : 'unavailable';
    this.#counter.inc({ resource, reason: kind });
    const key = `${resource}|${kind}`;
    const t = this.now();
    const last = this.#last.get(key);
    if (last && t - last.at < 10_000) {
      last.suppressed++;
      return;
    }
    this.#last.set(key, { at: t, suppressed: 0 });
    this.logger.warn({ resource, status, reason, path: (req.url ?? '').slice(0, 200), remoteAddress: req.socket.remoteAddress, notLogged: last?.suppressed ?? 0 }, 'Admin request refused');
  }
}

/** Whether `host` is a loopback address (or localhost). */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host) || host === '::ffff:127.0.0.1';
}

/** The tokens of an admin token file: one per line, blank lines and surrounding spaces ignored. Throws when it holds none. */
export function readTokenFile(text: string, path: string): string[] {
  const tokens = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '');
  if (tokens.length === 0) throw new Error(`the admin token file ${path} holds no token`);
  return tokens;
}

/**
 * Standalone access from its sources: the token file's tokens, the values of the token Secret
 * manifest (asked per request: a reload applies at once), the admin client CA. Open when none is set.
 */
export function standaloneAdminAccess(src: { fileTokens?: readonly string[]; secretTokens?: () => Readonly<Record<string, string>> | undefined; clientCa?: () => string | undefined }): AdminAccess {
  const hasTokens = (src.fileTokens?.length ?? 0) > 0 || src.secretTokens !== undefined;
  return staticAccess({
    ...(hasTokens ? { token: tokenCheck(() => [...(src.fileTokens ?? []), ...Object.values(src.secretTokens?.() ?? {}).map((t) => t.trim())]) } : {}),
    ...(src.clientCa ? { clientCert: clientCertCheck(src.clientCa) } : {}),
  });
}

/**
 * Where the admin endpoint listens: `host` when access is enforced; else loopback only (127.0.0.1,
 * or `host` when it is a loopback address already), with a warning when that overrides `host`.
 */
export function adminListenHost(host: string, access: AdminAccess, logger: Logger): string {
  if (access.enforced || isLoopback(host)) return host;
  logger.warn(
    { requested: host, listening: '127.0.0.1' },
    'No admin access control is configured (an admin token, an admin client CA, or Kubernetes authorization): the admin endpoint (API, /metrics, own metrics) listens on 127.0.0.1 only',
  );
  return '127.0.0.1';
}
