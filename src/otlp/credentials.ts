/**
 * The credential an agent sends its own metrics with (POST /v1/metrics): minted by the bridge for
 * one instance_uid and the identity holding it (the ServiceAccount token's pod, the client
 * certificate, the bearer token: src/fleet/admission.ts holderOf), and offered to that agent only, over
 * its authenticated OpAMP connection, in the headers of its own_metrics destination
 * (`Authorization: Bearer fbom1.<HMAC>`). Figures for a uid are kept only when the request carries
 * that uid's credential for its current holder: another agent's uid, a stranger, or an agent whose
 * uid was taken over by another identity are refused. See docs/adr/0008-admin-access.md for why
 * this is not the agent's OpAMP credential itself.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

const PREFIX = 'fbom1.';

export class OwnMetricsCredentials {
  readonly #key: Buffer;

  /** `key`: the HMAC key (default: 32 random bytes of this process; a restart re-offers new credentials). */
  constructor(key: Buffer = randomBytes(32)) {
    this.#key = key;
  }

  /** The bearer token of the agent holding `uid` as `holder` (null: an unauthenticated agent). */
  tokenFor(uid: string, holder: string | null): string {
    return PREFIX + this.#mac(uid, holder).toString('base64url');
  }

  /** The Authorization header value offered to that agent. */
  headerFor(uid: string, holder: string | null): string {
    return `Bearer ${this.tokenFor(uid, holder)}`;
  }

  /** Whether `token` (as presented, without "Bearer ") is the credential of `uid` held by `holder`. Constant time. */
  matches(token: string, uid: string, holder: string | null): boolean {
    if (!token.startsWith(PREFIX)) return false;
    const got = Buffer.from(token.slice(PREFIX.length), 'base64url');
    const want = this.#mac(uid, holder);
    return got.length === want.length && timingSafeEqual(got, want);
  }

  #mac(uid: string, holder: string | null): Buffer {
    return createHmac('sha256', this.#key).update(`own-metrics\n${uid}\n${holder ?? ''}`).digest();
  }
}

/** The own-metrics token of a request (`Authorization: Bearer fbom1.…`), or null. */
export function ownMetricsToken(req: IncomingMessage): string | null {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  return m && m[1]!.startsWith(PREFIX) ? m[1]! : null;
}
