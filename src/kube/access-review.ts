/**
 * Kubernetes delegated authentication and authorization of the admin endpoint, as Kubernetes
 * components (the kubelet, kube-rbac-proxy) and controller-runtime's secure metrics do: the
 * caller's bearer token is verified with a TokenReview (the API server's own audiences: an agent's
 * token for the bridge's audience is refused), then a SubjectAccessReview asks whether that user
 * may:
 * - `/metrics`: `get` the non-resource URL `/metrics`;
 * - `/api/v1/*`: `get` the subresource `opampbridges/api` of this bridge's OpAMPBridge, in its
 *   namespace (as `get nodes/proxy` guards the kubelet's API).
 * Verdicts are cached for 10 s (both kinds, failures too), at most 1,000 of each; a review that
 * fails (the API server unreachable, or the bridge lacking `create` on tokenreviews or
 * subjectaccessreviews) answers 503 and is not cached.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { AuthorizationV1Api, type AuthenticationV1Api, type KubeConfig, type V1SubjectAccessReviewSpec } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { bearerToken, type AccessVerdict, type AdminAccess, type AdminResource } from '../api/access.js';
import { API_GROUP } from '../schema/v1alpha1/index.js';
import { errorText } from './client.js';

export interface KubeAdminAccessOptions {
  authn: Pick<AuthenticationV1Api, 'createTokenReview'>;
  authz: Pick<AuthorizationV1Api, 'createSubjectAccessReview'>;
  /** The OpAMPBridge this process serves: the API is authorized as its subresource `api`. */
  namespace: string;
  bridgeName: string;
  logger: Logger;
  /** How long a verdict is reused, ms. Default 10 s. */
  cacheMs?: number;
  /** Most verdicts kept of each kind. Default 1,000. */
  maxEntries?: number;
  now?: () => number;
}

interface User {
  username: string;
  uid?: string | undefined;
  groups?: string[] | undefined;
  extra?: Record<string, string[]> | undefined;
}

type Authn = { ok: true; user: User } | { ok: false; status: 401 | 503; reason: string };

/** The SubjectAccessReview attributes a request for `resource` needs. Exported for tests and docs. */
export function accessAttributes(resource: AdminResource, namespace: string, bridgeName: string): Pick<V1SubjectAccessReviewSpec, 'resourceAttributes' | 'nonResourceAttributes'> {
  return resource === 'metrics'
    ? { nonResourceAttributes: { path: '/metrics', verb: 'get' } }
    : { resourceAttributes: { group: API_GROUP, resource: 'opampbridges', subresource: 'api', name: bridgeName, namespace, verb: 'get' } };
}

/** What a refusal says: what was asked, for whom. */
function describeAttributes(a: ReturnType<typeof accessAttributes>): string {
  if (a.nonResourceAttributes) return `${a.nonResourceAttributes.verb} ${a.nonResourceAttributes.path}`;
  const r = a.resourceAttributes!;
  return `${r.verb} ${r.resource}/${r.subresource} ${r.name} (group ${r.group}) in namespace ${r.namespace}`;
}

export function kubernetesAdminAccess(o: KubeAdminAccessOptions): AdminAccess {
  const ttl = o.cacheMs ?? 10_000;
  const max = o.maxEntries ?? 1000;
  const now = o.now ?? Date.now;
  const authnCache = new Map<string, { until: number; v: Promise<Authn> }>();
  const authzCache = new Map<string, { until: number; v: Promise<AccessVerdict> }>();

  /** Reuses a live entry (a pending review included: concurrent scrapes share it); errors are not kept. */
  const cached = <T extends { ok: boolean; status?: number }>(cache: Map<string, { until: number; v: Promise<T> }>, key: string, make: () => Promise<T>): Promise<T> => {
    const t = now();
    const hit = cache.get(key);
    if (hit && hit.until > t) return hit.v;
    if (hit) cache.delete(key);
    if (cache.size >= max) cache.delete(cache.keys().next().value!);
    const v = make();
    cache.set(key, { until: t + ttl, v });
    void v.then((r) => {
      if (!r.ok && r.status === 503 && cache.get(key)?.v === v) cache.delete(key);
    });
    return v;
  };

  const authenticate = (token: string): Promise<Authn> =>
    cached(authnCache, createHash('sha256').update(token).digest('hex'), async () => {
      try {
        const review = await o.authn.createTokenReview({ body: { spec: { token } } });
        const st = review.status;
        if (!st?.authenticated || !st.user?.username) return { ok: false, status: 401, reason: `token rejected${st?.error ? `: ${st.error}` : ''}` };
        return { ok: true, user: { username: st.user.username, uid: st.user.uid, groups: st.user.groups, extra: st.user.extra } };
      } catch (err) {
        o.logger.warn({ err: errorText(err) }, 'TokenReview for the admin endpoint failed');
        return { ok: false, status: 503, reason: 'the token cannot be verified right now' };
      }
    });

  const authorize = (user: User, resource: AdminResource): Promise<AccessVerdict> => {
    const attrs = accessAttributes(resource, o.namespace, o.bridgeName);
    const key = createHash('sha256').update(JSON.stringify([user, resource])).digest('hex');
    return cached(authzCache, key, async () => {
      try {
        const review = await o.authz.createSubjectAccessReview({ body: { spec: { user: user.username, uid: user.uid, groups: user.groups, extra: user.extra, ...attrs } } });
        if (review.status?.allowed) return { ok: true, user: user.username };
        const why = review.status?.reason ? ` (${review.status.reason})` : '';
        return { ok: false, status: 403, reason: `${user.username} may not ${describeAttributes(attrs)}${why}` };
      } catch (err) {
        o.logger.warn({ err: errorText(err) }, 'SubjectAccessReview for the admin endpoint failed');
        return { ok: false, status: 503, reason: 'the request cannot be authorized right now' };
      }
    });
  };

  return {
    mode: 'kubernetes',
    enforced: true,
    async check(req: IncomingMessage, resource: AdminResource): Promise<AccessVerdict> {
      const token = bearerToken(req);
      if (token === null) return { ok: false, status: 401, reason: 'a bearer token (Authorization: Bearer) is required' };
      const a = await authenticate(token);
      if (!a.ok) return a;
      return authorize(a.user, resource);
    },
  };
}

/** The delegated access of the operator, with clients from `kc`. */
export function kubernetesAdminAccessFrom(kc: KubeConfig, authn: Pick<AuthenticationV1Api, 'createTokenReview'>, o: Omit<KubeAdminAccessOptions, 'authn' | 'authz'>): AdminAccess {
  return kubernetesAdminAccess({ ...o, authn, authz: kc.makeApiClient(AuthorizationV1Api) });
}
