/**
 * Admin access decisions: probes open; API and /metrics need a credential when access control is
 * on (/metrics not with metricsAuth false); 401 without or with a wrong one, 403 when authenticated
 * but not allowed; refusals counted; loopback only when nothing is configured; the Kubernetes
 * verdicts (TokenReview, then SubjectAccessReview with the documented attributes), cached.
 */
import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { AdminServer } from '../../../src/api/server.js';
import { OPEN_ACCESS, adminListenHost, isLoopback, readTokenFile, standaloneAdminAccess, type AdminAccess } from '../../../src/api/access.js';
import { accessAttributes, kubernetesAdminAccess } from '../../../src/kube/access-review.js';
import { createMetrics } from '../../../src/telemetry/metrics.js';

const silent = pino({ level: 'silent' });

async function serve(access: AdminAccess, metricsAuth = true) {
  const metrics = createMetrics({ defaultMetrics: false });
  const server = new AdminServer({
    registry: metrics.registry,
    logger: silent,
    access,
    metricsAuth,
    source: { ready: () => true, agents: () => [], agent: () => undefined, collectors: () => ({ collectors: [], invalidFiles: [] }) },
  });
  const { port } = await server.listen(0);
  const get = async (path: string, token?: string, method = 'GET') => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, { method, headers: token ? { Authorization: `Bearer ${token}` } : {} });
    await res.arrayBuffer();
    return res.status;
  };
  return { server, get, metrics };
}

describe('standalone admin access', () => {
  it('open when nothing is configured, and then loopback only', () => {
    expect(standaloneAdminAccess({})).toBe(OPEN_ACCESS);
    expect(standaloneAdminAccess({ fileTokens: [] }).enforced).toBe(false);
    expect(adminListenHost('0.0.0.0', OPEN_ACCESS, silent)).toBe('127.0.0.1');
    expect(adminListenHost('::1', OPEN_ACCESS, silent)).toBe('::1');
    expect(adminListenHost('0.0.0.0', standaloneAdminAccess({ fileTokens: ['t'] }), silent)).toBe('0.0.0.0');
    expect(isLoopback('127.0.0.2')).toBe(true);
    expect(isLoopback('10.0.0.1')).toBe(false);
    expect(readTokenFile(' a \n\n b\r\n', 'f')).toEqual(['a', 'b']);
    expect(() => readTokenFile('\n', 'f')).toThrow(/holds no token/);
  });

  it('probes open; API and /metrics need an accepted token (401 otherwise, counted); the Secret is read per request', async () => {
    let secret: Record<string, string> | undefined = { token: 'from-secret' };
    const { server, get, metrics } = await serve(standaloneAdminAccess({ fileTokens: ['from-file'], secretTokens: () => secret }));
    try {
      expect(await get('/healthz')).toBe(200);
      expect(await get('/readyz')).toBe(200);
      expect(await get('/api/v1/agents')).toBe(401);
      expect(await get('/api/v1/agents', 'wrong')).toBe(401);
      expect(await get('/metrics')).toBe(401);
      expect(await get('/nothing-here')).toBe(401); // nothing is said about a path before the caller is known
      expect(await get('/api/v1/agents', 'from-file')).toBe(200);
      expect(await get('/api/v1/agents', 'from-secret')).toBe(200);
      expect(await get('/metrics', 'from-secret')).toBe(200);
      expect(await get('/api/v1/agents', 'from-file', 'POST')).toBe(405);
      secret = { token: 'rotated' };
      expect(await get('/api/v1/agents', 'from-secret')).toBe(401);
      expect(await get('/api/v1/agents', 'rotated')).toBe(200);
      expect(await metrics.registry.metrics()).toMatch(/fleetbridge_admin_requests_denied_total\{resource="api",reason="unauthenticated"\} 4/);
    } finally {
      await server.close();
    }
  });

  it('metricsAuth false leaves /metrics open, not the API', async () => {
    const { server, get } = await serve(standaloneAdminAccess({ fileTokens: ['t'] }), false);
    try {
      expect(await get('/metrics')).toBe(200);
      expect(await get('/api/v1/collectors')).toBe(401);
    } finally {
      await server.close();
    }
  });
});

describe('Kubernetes admin access', () => {
  function fakeApis(users: Record<string, string>, allowed: (user: string, attrs: unknown) => boolean) {
    const calls = { tokenReviews: 0, sars: [] as unknown[] };
    return {
      calls,
      authn: {
        createTokenReview: async ({ body }: { body: { spec: { token?: string; audiences?: string[] } } }) => {
          calls.tokenReviews++;
          expect(body.spec.audiences).toBeUndefined(); // the API server's own audiences
          const u = users[body.spec.token ?? ''];
          return { spec: body.spec, status: u ? { authenticated: true, user: { username: u, groups: ['system:authenticated'] } } : { authenticated: false, error: 'invalid bearer token' } };
        },
      },
      authz: {
        createSubjectAccessReview: async ({ body }: { body: { spec: { user?: string } } }) => {
          calls.sars.push(body.spec);
          return { spec: body.spec, status: { allowed: allowed(body.spec.user ?? '', body.spec) } };
        },
      },
    };
  }

  it('asks get opampbridges/api (the API) and get /metrics (non-resource URL)', () => {
    expect(accessAttributes('api', 'obs', 'fb')).toEqual({ resourceAttributes: { group: 'fleetbridge.dev', resource: 'opampbridges', subresource: 'api', name: 'fb', namespace: 'obs', verb: 'get' } });
    expect(accessAttributes('metrics', 'obs', 'fb')).toEqual({ nonResourceAttributes: { path: '/metrics', verb: 'get' } });
  });

  it('401 without or with a rejected token, 403 when not allowed, 200 when allowed; verdicts cached', async () => {
    let t = 0;
    const apis = fakeApis({ viewer: 'system:serviceaccount:obs:viewer', nobody: 'system:serviceaccount:obs:nobody', prom: 'system:serviceaccount:mon:prom' }, (user, attrs) => {
      const a = attrs as { resourceAttributes?: unknown; nonResourceAttributes?: unknown };
      if (user.endsWith(':viewer')) return true;
      if (user.endsWith(':prom')) return !!a.nonResourceAttributes;
      return false;
    });
    const access = kubernetesAdminAccess({ ...apis, namespace: 'obs', bridgeName: 'fb', logger: silent, now: () => t });
    const { server, get } = await serve(access);
    try {
      expect(await get('/healthz')).toBe(200);
      expect(await get('/api/v1/agents')).toBe(401);
      expect(await get('/api/v1/agents', 'forged')).toBe(401);
      expect(await get('/api/v1/agents', 'nobody')).toBe(403);
      expect(await get('/api/v1/agents', 'viewer')).toBe(200);
      expect(await get('/metrics', 'prom')).toBe(200);
      expect(await get('/api/v1/agents', 'prom')).toBe(403);
      const reviews = apis.calls.tokenReviews;
      const sars = apis.calls.sars.length;
      expect(await get('/api/v1/agents', 'viewer')).toBe(200);
      expect(await get('/api/v1/agents', 'forged')).toBe(401);
      expect([apis.calls.tokenReviews, apis.calls.sars.length]).toEqual([reviews, sars]);
      t += 11_000;
      expect(await get('/api/v1/agents', 'viewer')).toBe(200);
      expect(apis.calls.tokenReviews).toBe(reviews + 1);
      expect(apis.calls.sars[0]).toMatchObject({ user: 'system:serviceaccount:obs:nobody', groups: ['system:authenticated'], resourceAttributes: { resource: 'opampbridges', subresource: 'api' } });
    } finally {
      await server.close();
    }
  });

  it('503 (not cached) when the API server cannot answer', async () => {
    let fail = true;
    const access = kubernetesAdminAccess({
      authn: { createTokenReview: async ({ body }) => { if (fail) throw new Error('connection refused'); return { spec: body.spec, status: { authenticated: true, user: { username: 'u' } } }; } },
      authz: { createSubjectAccessReview: async ({ body }) => ({ spec: body.spec, status: { allowed: true } }) },
      namespace: 'obs',
      bridgeName: 'fb',
      logger: silent,
    });
    const req = { headers: { authorization: 'Bearer x' } } as never;
    expect(await access.check(req, 'api', '/api/v1/agents')).toMatchObject({ ok: false, status: 503 });
    fail = false;
    expect(await access.check(req, 'api', '/api/v1/agents')).toMatchObject({ ok: true });
  });
});
