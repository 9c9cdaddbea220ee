/**
 * Agent authentication with pod-bound ServiceAccount tokens (OpAMPBridge.spec.auth), against a
 * real kube-apiserver: TokenRequest issues the tokens, TokenReview verifies them. And the admin
 * endpoint's delegated access (TokenReview, then SubjectAccessReview under the apiserver's RBAC):
 * the chart's viewer and metrics-reader ClusterRoles admit, other callers get 403, no token 401.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { createPrivateKey, randomBytes, sign } from 'node:crypto';
import { join } from 'node:path';
import { parse } from 'yaml';
import { CoreV1Api, CustomObjectsApi, KubeConfig, RbacAuthorizationV1Api, type V1PolicyRule } from '@kubernetes/client-node';
import { startTestOperator, type RunningOperator } from '../harness/kube/operator.js';
import { AgentCapabilities as C } from '../../src/opamp/messages.js';
import { RawWsAgent, encodeAgent, httpPost, randomUid } from '../harness/raw-agent.js';
import { goMissingReason } from '../harness/go-agent.js';
import { skipUnlessOnCi } from '../harness/tools.js';
import { kubeRequest, startControlPlane, type ControlPlane } from '../harness/kube/control-plane.js';
import type { AgentView } from '../../src/fleet/view-types.js';

const skip = skipUnlessOnCi('kube-auth.test', goMissingReason());
const G = 'fleetbridge.dev';
const V = 'v1alpha1';
const CAPS = C.ReportsStatus | C.AcceptsRemoteConfig | C.ReportsRemoteConfig;
const WAIT = { timeout: 15_000, interval: 100 };

let cp: ControlPlane;
let core: CoreV1Api;
let custom: CustomObjectsApi;
let kc: KubeConfig;
let rbac: RbacAuthorizationV1Api;
const stops: (() => Promise<unknown>)[] = [];

describe.skipIf(skip)('agent authentication with ServiceAccount tokens', () => {
  let ns: string;
  let other: string;
  let op: RunningOperator;
  const uids: Record<string, string> = {};
  /** Admin callers' tokens (the apiserver's own audience), by ServiceAccount. */
  const admin: Record<string, string> = {};

  beforeAll(async () => {
    cp = await startControlPlane();
    kc = new KubeConfig();
    kc.loadFromString(cp.kubeconfigYaml);
    core = kc.makeApiClient(CoreV1Api);
    custom = kc.makeApiClient(CustomObjectsApi);
    rbac = kc.makeApiClient(RbacAuthorizationV1Api);
    for (const f of readdirSync('crds')) {
      const r = await kubeRequest(cp, 'POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', parse(readFileSync(`crds/${f}`, 'utf8')));
      expect(r.status, r.text).toBe(201);
    }
    ns = `auth-${randomBytes(3).toString('hex')}`;
    other = `other-${randomBytes(3).toString('hex')}`;
    for (const n of [ns, other]) {
      await core.createNamespace({ body: { metadata: { name: n } } });
      await core.createNamespacedServiceAccount({ namespace: n, body: { metadata: { name: 'agent' } } });
    }
    for (const [n, name, app] of [[ns, 'a', 'alpha'], [ns, 'b', 'beta'], [ns, 'gone', 'alpha'], [other, 'x', 'alpha']] as const) {
      const p = await core.createNamespacedPod({ namespace: n, body: { metadata: { name, labels: { app } }, spec: { serviceAccountName: 'agent', containers: [{ name: 'c', image: 'x' }] } } });
      uids[`${n}/${name}`] = p.metadata!.uid!;
    }
    await vi.waitFor(async () => {
      await custom.createNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'collectors', body: { apiVersion: `${G}/${V}`, kind: 'Collector', metadata: { name: 'alpha' }, spec: { selector: { matchLabels: { app: 'alpha' } }, config: { exporters: { debug: {} } } } } });
    }, WAIT);
    // spec.auth left out: serviceAccountToken with audience "fleetbridge" is the default.
    await custom.createNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'opampbridges', body: { apiVersion: `${G}/${V}`, kind: 'OpAMPBridge', metadata: { name: 'fb' }, spec: { heartbeatIntervalSeconds: 1 } } });
    // Admin callers: the chart's ClusterRoles (charts/fleetbridge/templates/rbac.yaml), bound as a
    // user would: viewer and metrics reader cluster-wide, a namespace viewer by RoleBinding only.
    const viewerRules: V1PolicyRule[] = [
      { apiGroups: [G], resources: ['opampbridges/api'], resourceNames: ['fb'], verbs: ['get'] },
      { apiGroups: [G], resources: ['collectors', 'opampbridges'], verbs: ['get', 'list', 'watch'] },
      { nonResourceURLs: ['/metrics'], verbs: ['get'] },
    ];
    await rbac.createClusterRole({ body: { metadata: { name: `${ns}-viewer` }, rules: viewerRules } });
    await rbac.createClusterRole({ body: { metadata: { name: `${ns}-metrics-reader` }, rules: [{ nonResourceURLs: ['/metrics'], verbs: ['get'] }] } });
    for (const sa of ['viewer', 'ns-viewer', 'prometheus', 'nobody']) await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: sa } } });
    const subject = (name: string) => [{ kind: 'ServiceAccount', name, namespace: ns }];
    await rbac.createClusterRoleBinding({ body: { metadata: { name: `${ns}-viewer` }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: `${ns}-viewer` }, subjects: subject('viewer') } });
    await rbac.createClusterRoleBinding({ body: { metadata: { name: `${ns}-metrics-reader` }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: `${ns}-metrics-reader` }, subjects: subject('prometheus') } });
    await rbac.createNamespacedRoleBinding({ namespace: ns, body: { metadata: { name: 'ns-viewer' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: `${ns}-viewer` }, subjects: subject('ns-viewer') } });
    for (const sa of ['viewer', 'ns-viewer', 'prometheus', 'nobody']) {
      admin[sa] = (await core.createNamespacedServiceAccountToken({ namespace: ns, name: sa, body: { spec: { audiences: [], expirationSeconds: 3600 } } })).status!.token;
    }
    // adminAuth left out: kubernetes (TokenReview and SubjectAccessReview) is the default.
    op = await startTestOperator({ kc, namespace: ns, identity: 'auth-test', leaderElection: true, cleanups: stops });
  }, 600_000);

  afterAll(async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
    await cp?.stop();
  });

  async function token(namespace: string, pod: string | null, audience = 'fleetbridge'): Promise<string> {
    const tr = await core.createNamespacedServiceAccountToken({
      namespace,
      name: 'agent',
      body: { spec: { audiences: [audience], expirationSeconds: 600, ...(pod ? { boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod, uid: uids[`${namespace}/${pod}`] } } : {}) } },
    });
    return tr.status!.token;
  }

  async function agent(tok: string | null, attrs: Record<string, string> = {}): Promise<RawWsAgent> {
    const a = await RawWsAgent.connect(op.opampUrl.websocket, randomUid(), tok ? { Authorization: `Bearer ${tok}` } : {});
    a.send({ capabilities: CAPS, agentDescription: { nonIdentifyingAttributes: Object.entries(attrs).map(([key, v]) => ({ key, value: { stringValue: v } })) }, remoteConfigStatus: {} });
    await a.waitForMessages(1);
    stops.push(async () => a.terminate());
    return a;
  }
  const as = (sa: string) => ({ headers: { Authorization: `Bearer ${admin[sa]}` } });
  const view = async (uid: string) => (await (await fetch(`${op.apiUrl}/api/v1/agents/${uid}`, as('viewer'))).json()) as AgentView;
  const adminStatus = async (path: string, init: RequestInit = {}) => {
    const res = await fetch(`${op.apiUrl}${path}`, init);
    await res.arrayBuffer();
    return res.status;
  };
  const configs = (a: RawWsAgent) => a.received.filter((m) => m.remoteConfig);

  it('refuses a connection without a token, with a wrong audience, or with a token bound to no pod', async () => {
    await expect(RawWsAgent.connect(op.opampUrl.websocket)).rejects.toThrow(/HTTP 401/);
    await expect(RawWsAgent.connect(op.opampUrl.websocket, randomUid(), { Authorization: `Bearer ${await token(ns, 'a', 'someone-else')}` })).rejects.toThrow(/HTTP 401/);
    await expect(RawWsAgent.connect(op.opampUrl.websocket, randomUid(), { Authorization: 'Bearer not-a-token' })).rejects.toThrow(/HTTP 401/);
    await expect(RawWsAgent.connect(op.opampUrl.websocket, randomUid(), { Authorization: `Bearer ${await token(ns, null)}` })).rejects.toThrow(/HTTP 403/);
    const http = await httpPost(op.opampUrl.http, encodeAgent({ instanceUid: randomUid(), capabilities: 1 }));
    expect(http.status).toBe(401);
    expect(http.headers.get('www-authenticate')).toBe('Bearer');
    expect(await (await fetch(`${op.apiUrl}/metrics`, as('prometheus'))).text()).toMatch(/code="FB_OPAMP_UNAUTHENTICATED"\} [1-9]/);
  });

  it('refuses an expired token, even one the apiserver itself signed', async () => {
    // A real pod-bound token, re-signed with the apiserver's own ServiceAccount key after moving
    // its lifetime into the past: only the expiry is wrong. (TokenRequest will not issue one.)
    const real = await token(ns, 'a');
    const [h, p] = real.split('.') as [string, string];
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as { exp: number; iat: number; nbf: number };
    const now = Math.floor(Date.now() / 1000);
    Object.assign(claims, { iat: now - 7200, nbf: now - 7200, exp: now - 3600 });
    const body = `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
    const key = createPrivateKey(readFileSync(join(cp.dir, 'pki', 'sa.key')));
    const expired = `${body}.${sign('sha256', Buffer.from(body), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
    await expect(RawWsAgent.connect(op.opampUrl.websocket, randomUid(), { Authorization: `Bearer ${expired}` })).rejects.toThrow(/HTTP 401/);
    // The same claims with a fresh lifetime are accepted: the signature is right, the expiry is what failed.
    Object.assign(claims, { iat: now - 10, nbf: now - 10, exp: now + 600 });
    const freshBody = `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
    const fresh = `${freshBody}.${sign('sha256', Buffer.from(freshBody), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
    const a = await RawWsAgent.connect(op.opampUrl.websocket, randomUid(), { Authorization: `Bearer ${fresh}` });
    a.terminate();
  });

  it('binds an agent to the pod its token is bound to, whatever it claims about labels', async () => {
    const a = await agent(await token(ns, 'a'), { app: 'beta' });
    await vi.waitFor(() => expect(configs(a)).toHaveLength(1), WAIT);
    const v = await view(a.uidString);
    expect(v).toMatchObject({ pod: `${ns}/a`, labels: { app: 'alpha' }, identityError: null, verified: { namespace: ns, podName: 'a', podUid: uids[`${ns}/a`], username: `system:serviceaccount:${ns}:agent` } });
  });

  it('gives nothing to an agent whose claimed pod disagrees with its token, and says so', async () => {
    const a = await agent(await token(ns, 'a'), { 'k8s.pod.name': 'b', 'k8s.namespace.name': ns });
    await vi.waitFor(async () => expect((await view(a.uidString)).identityError).toBe(`the agent claims pod ${ns}/b but its token is bound to pod ${ns}/a`), WAIT);
    expect(configs(a)).toHaveLength(0);
    // Counted, not only logged.
    expect(await (await fetch(`${op.apiUrl}/metrics`, as('viewer'))).text()).toMatch(/^fleetbridge_agents_unbound [1-9]/m);
  });

  it('gives nothing to an agent whose token belongs to a pod in another namespace', async () => {
    const a = await agent(await token(other, 'x'));
    await vi.waitFor(async () => expect((await view(a.uidString)).identityError).toBe(`the agent's token is bound to a pod in namespace ${other}, which this bridge does not serve`), WAIT);
    expect(configs(a)).toHaveLength(0);
  });

  it('stops serving config to an agent whose pod was deleted', async () => {
    const a = await agent(await token(ns, 'gone'));
    await vi.waitFor(() => expect(configs(a)).toHaveLength(1), WAIT);
    await core.deleteNamespacedPod({ namespace: ns, name: 'gone' });
    await vi.waitFor(async () => expect((await view(a.uidString)).identityError).toBe(`the pod the agent's token is bound to (${ns}/gone) does not exist`), WAIT);
    expect((await view(a.uidString)).remoteConfig.desiredHash).toBeNull();
  });

  it('admin endpoint: probes open; no token 401; a ServiceAccount the viewer role is bound to reads the API, others get 403', async () => {
    expect(await adminStatus('/healthz')).toBe(200);
    expect(await adminStatus('/readyz')).toBe(200);
    expect(await adminStatus('/api/v1/agents')).toBe(401);
    expect(await adminStatus('/metrics')).toBe(401);
    expect(await adminStatus('/api/v1/agents', { headers: { Authorization: 'Bearer not-a-token' } })).toBe(401);
    // An agent's token is for the bridge's audience, not the apiserver's: it opens nothing here.
    expect(await adminStatus('/api/v1/agents', { headers: { Authorization: `Bearer ${await token(ns, 'a')}` } })).toBe(401);
    const refused = await fetch(`${op.apiUrl}/api/v1/agents`, as('nobody'));
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { error: string }).error).toBe(`system:serviceaccount:${ns}:nobody may not get opampbridges/api fb (group fleetbridge.dev) in namespace ${ns}`);
    expect(await adminStatus('/metrics', as('nobody'))).toBe(403);
    const agents = await fetch(`${op.apiUrl}/api/v1/agents`, as('viewer'));
    expect(agents.status).toBe(200);
    expect(((await agents.json()) as { agents: unknown[] }).agents.length).toBeGreaterThan(0);
    expect(await adminStatus('/api/v1/collectors', as('viewer'))).toBe(200);
    expect(await adminStatus('/metrics', as('viewer'))).toBe(200);
    // Prometheus's role: /metrics only.
    expect(await adminStatus('/metrics', as('prometheus'))).toBe(200);
    expect(await adminStatus('/api/v1/agents', as('prometheus'))).toBe(403);
    // Bound in the bridge's namespace only: the API (a namespaced subresource), not /metrics (a non-resource URL).
    expect(await adminStatus('/api/v1/agents', as('ns-viewer'))).toBe(200);
    expect(await adminStatus('/metrics', as('ns-viewer'))).toBe(403);
    const text = await (await fetch(`${op.apiUrl}/metrics`, as('viewer'))).text();
    expect(text).toMatch(/^fleetbridge_admin_requests_denied_total\{resource="api",reason="unauthenticated"\} [1-9]/m);
    expect(text).toMatch(/^fleetbridge_admin_requests_denied_total\{resource="api",reason="forbidden"\} [1-9]/m);
  });

  it('reports in status that agents are authenticated', async () => {
    await vi.waitFor(async () => {
      const b = (await custom.getNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'opampbridges', name: 'fb' })) as { status?: { conditions?: { type: string; status: string; reason: string }[] } };
      expect(b.status?.conditions?.find((c) => c.type === 'AgentsAuthenticated')).toMatchObject({ status: 'True', reason: 'ServiceAccountTokens' });
    }, WAIT);
  });
});
