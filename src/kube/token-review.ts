/**
 * Agent authentication with projected, pod-bound ServiceAccount tokens: the agent sends its token as
 * `Authorization: Bearer`, a TokenReview (with the bridge's audiences) verifies it, and the pod the
 * token is bound to (`authentication.kubernetes.io/pod-name` / `pod-uid` in the review's extra)
 * becomes the agent's verified identity. Results are cached per token until shortly before the
 * token expires (at most 5 minutes), in a bounded cache.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { AuthenticationV1Api } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { AuthResult } from '../opamp/connection.js';
import { errorText } from './client.js';

const POD_NAME = 'authentication.kubernetes.io/pod-name';
const POD_UID = 'authentication.kubernetes.io/pod-uid';
const SA_PREFIX = 'system:serviceaccount:';

export interface TokenAuthOptions {
  api: AuthenticationV1Api;
  audiences: string[];
  logger: Logger;
  /** Longest a review result is reused, ms. Default 5 minutes. */
  maxCacheMs?: number;
  /** Most cached results. Default 20,000. */
  maxEntries?: number;
  now?: () => number;
}

export function serviceAccountTokenAuth(o: TokenAuthOptions): (req: IncomingMessage) => Promise<AuthResult> {
  const cache = new Map<string, { until: number; result: AuthResult }>();
  const maxCache = o.maxCacheMs ?? 5 * 60_000;
  const maxEntries = o.maxEntries ?? 20_000;
  const now = o.now ?? Date.now;
  return async (req) => {
    const header = req.headers.authorization ?? '';
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) return { ok: false, status: 401, reason: 'a bearer token (a projected ServiceAccount token) is required' };
    const token = m[1]!;
    const key = createHash('sha256').update(token).digest('hex');
    const t = now();
    const hit = cache.get(key);
    if (hit && hit.until > t) return hit.result;
    let result: AuthResult;
    try {
      const review = await o.api.createTokenReview({ body: { spec: { token, audiences: o.audiences } } });
      const st = review.status;
      if (!st?.authenticated) {
        result = { ok: false, status: 401, reason: `token rejected${st?.error ? `: ${st.error}` : ''}` };
      } else {
        const user = st.user?.username ?? '';
        const podName = st.user?.extra?.[POD_NAME]?.[0];
        const podUid = st.user?.extra?.[POD_UID]?.[0];
        if (!user.startsWith(SA_PREFIX) || !podName || !podUid) {
          result = { ok: false, status: 403, reason: `the token of ${user || 'an unknown user'} is not a ServiceAccount token bound to a pod` };
        } else {
          const [namespace, serviceAccount] = user.slice(SA_PREFIX.length).split(':') as [string, string | undefined];
          result = { ok: true, identity: { method: 'serviceAccountToken', namespace, serviceAccount, podName, podUid, username: user } };
        }
      }
    } catch (err) {
      o.logger.warn({ err: errorText(err) }, 'TokenReview failed; refusing until the apiserver answers');
      return { ok: false, status: 503, reason: 'the token cannot be verified right now' };
    }
    const exp = tokenExpiry(token);
    const until = Math.min(t + maxCache, exp ? exp - 30_000 : t + maxCache);
    if (until > t) {
      if (cache.size >= maxEntries) cache.delete(cache.keys().next().value!);
      cache.set(key, { until, result });
    }
    return result;
  };
}

/** The `exp` claim of a JWT, in ms (only to bound the cache; the TokenReview verified the token). */
function tokenExpiry(token: string): number | null {
  try {
    const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { exp?: number };
    return typeof payload.exp === 'number' ? payload.exp * 1000 : null;
  } catch {
    return null;
  }
}
