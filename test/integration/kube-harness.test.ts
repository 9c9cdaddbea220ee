/**
 * Proves the Kubernetes test harness (test/harness/kube/) and what a bare etcd + kube-apiserver
 * gives the operator's tests: Pods as objects, CRDs with a status subresource, Leases,
 * TokenRequest bound to a Pod + TokenReview, an API server restart on the same port, cleanup.
 * Figures (start times, RSS) are printed for docs/adr/0002-envtest-from-go-modules.md.
 */
import { existsSync } from 'node:fs';
import {
  ApiextensionsV1Api,
  AuthenticationV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  RbacAuthorizationV1Api,
  setHeaderOptions,
  V1MicroTime,
  type V1CustomResourceDefinition,
  type V1Pod,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { controlPlaneMissingReason, controlPlaneVersions, ensureControlPlaneBinaries } from '../harness/kube/binaries.js';
import { createTestNamespace, kubeRequest, startControlPlane, type ControlPlane } from '../harness/kube/control-plane.js';
import { getSharedControlPlane, type SharedControlPlane } from '../harness/kube/shared.js';
import { skipUnlessOnCi } from '../harness/tools.js';

const skip = skipUnlessOnCi('kube-harness.test', controlPlaneMissingReason());
const WAIT = { timeout: 15_000, interval: 100 };
const MERGE = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const MiB = (n: number | undefined): string => (n === undefined ? '?' : `${(n / 1048576).toFixed(0)} MiB`);

function clientsFor(yaml: string) {
  const kc = new KubeConfig();
  kc.loadFromString(yaml);
  return {
    kc,
    core: kc.makeApiClient(CoreV1Api),
    ext: kc.makeApiClient(ApiextensionsV1Api),
    custom: kc.makeApiClient(CustomObjectsApi),
    coord: kc.makeApiClient(CoordinationV1Api),
    authn: kc.makeApiClient(AuthenticationV1Api),
    rbac: kc.makeApiClient(RbacAuthorizationV1Api),
  };
}

function pod(name: string, labels: Record<string, string>, serviceAccountName?: string): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels },
    spec: { ...(serviceAccountName ? { serviceAccountName } : {}), containers: [{ name: 'otelcol', image: 'otel/opentelemetry-collector:latest' }] },
  };
}

const WIDGETS: V1CustomResourceDefinition = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'widgets.harness.fleetbridge.dev' },
  spec: {
    group: 'harness.fleetbridge.dev',
    names: { kind: 'Widget', plural: 'widgets', singular: 'widget', listKind: 'WidgetList' },
    scope: 'Namespaced',
    versions: [
      {
        name: 'v1',
        served: true,
        storage: true,
        subresources: { status: {} },
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: {
              spec: { type: 'object', properties: { size: { type: 'integer', minimum: 1 } } },
              status: { type: 'object', properties: { observedGeneration: { type: 'integer' }, phase: { type: 'string' } } },
            },
          },
        },
      },
    ],
  },
};

describe.skipIf(skip)('Kubernetes test harness (etcd + kube-apiserver from Go modules)', () => {
  let shared: SharedControlPlane;
  let c: ReturnType<typeof clientsFor>;

  beforeAll(async () => {
    // A cold build takes minutes (CI pre-builds with tools/k8s/build.sh); a cached one is instant.
    const t0 = Date.now();
    const bins = await ensureControlPlaneBinaries({ log: (l) => console.log(`[kube-harness] ${l}`) });
    console.log(`[kube-harness] binaries ${bins.built ? 'built' : 'cached'} in ${Date.now() - t0} ms: ${bins.apiserver}`);
    const t1 = Date.now();
    shared = await getSharedControlPlane();
    console.log(`[kube-harness] shared control plane (scope ${shared.scope}) ready after ${Date.now() - t1} ms`);
    c = clientsFor(shared.kubeconfigYaml);
  }, 40 * 60_000);

  it('builds are cached: a second ensureControlPlaneBinaries() is instant and returns the same paths', async () => {
    const t0 = performance.now();
    const again = await ensureControlPlaneBinaries();
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(again.built).toBe(false);
    expect(existsSync(again.apiserver) && existsSync(again.etcd)).toBe(true);
  });

  it('getSharedControlPlane() returns one instance, reachable with the token, the CA and the kubeconfig', async () => {
    expect(await getSharedControlPlane()).toBe(shared);
    expect(shared.server).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(shared.etcdUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const version = await kubeRequest<{ gitVersion: string }>(shared, 'GET', '/version');
    expect(version.body.gitVersion).toBe(controlPlaneVersions().kubernetes);
    // fetch with the dispatcher that trusts the test CA
    const res = await fetch(`${shared.server}/readyz`, { headers: { authorization: `Bearer ${shared.token}` }, dispatcher: shared.dispatcher } as RequestInit);
    expect(await res.text()).toBe('ok');
    // anonymous requests are authenticated as system:anonymous and refused by RBAC outside the health endpoints
    const anon = await kubeRequest(shared, 'GET', '/api/v1/namespaces', undefined, { token: 'not-a-token' });
    expect(anon.status).toBe(401);
    const names = (await c.core.listNamespace()).items.map((n) => n.metadata?.name);
    expect(names).toEqual(expect.arrayContaining(['default', 'kube-system', 'kube-public', 'kube-node-lease']));
  });

  it('stores Pods with labels (they never run: no scheduler/kubelet) and their status subresource', async () => {
    const ns = await createTestNamespace(shared, 'pods');
    await c.core.createNamespacedPod({ namespace: ns, body: pod('collector-a', { app: 'otelcol', tier: 'edge' }) });
    await c.core.createNamespacedPod({ namespace: ns, body: pod('collector-b', { app: 'otelcol', tier: 'core' }) });
    const edge = await c.core.listNamespacedPod({ namespace: ns, labelSelector: 'app=otelcol,tier=edge' });
    expect(edge.items.map((p) => p.metadata?.name)).toEqual(['collector-a']);
    const a = edge.items[0]!;
    expect(a.metadata?.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(a.status?.phase).toBe('Pending');
    expect(a.spec?.nodeName).toBeUndefined();

    // what kubelet would write, through pods/status
    await c.core.patchNamespacedPodStatus(
      { name: 'collector-a', namespace: ns, body: { status: { phase: 'Running', podIP: '10.1.0.7', podIPs: [{ ip: '10.1.0.7' }] } } },
      MERGE,
    );
    const running = await c.core.readNamespacedPod({ name: 'collector-a', namespace: ns });
    expect(running.status).toMatchObject({ phase: 'Running', podIP: '10.1.0.7' });
    // relabel
    await c.core.patchNamespacedPod({ name: 'collector-b', namespace: ns, body: { metadata: { labels: { tier: 'edge' } } } }, MERGE);
    expect((await c.core.listNamespacedPod({ namespace: ns, labelSelector: 'tier=edge' })).items).toHaveLength(2);
    // an unscheduled pod is deleted at once
    await c.core.deleteNamespacedPod({ name: 'collector-b', namespace: ns });
    await expect(c.core.readNamespacedPod({ name: 'collector-b', namespace: ns })).rejects.toMatchObject({ code: 404 });
  });

  it('a deleted namespace stays Terminating (no namespace controller): use a fresh namespace per test', async () => {
    const ns = await createTestNamespace(shared, 'doomed');
    await c.core.deleteNamespace({ name: ns });
    const doomed = await c.core.readNamespace({ name: ns });
    expect(doomed.status?.phase).toBe('Terminating');
    // Only the namespace controller (not run here) removes this finalizer, so it stays.
    expect(doomed.spec?.finalizers).toContain('kubernetes');
    await expect(c.core.createNamespacedPod({ namespace: ns, body: pod('late', {}) })).rejects.toMatchObject({ code: 403 });
  });

  it('applies a CRD that becomes Established; status subresource semantics hold', async () => {
    await c.ext.createCustomResourceDefinition({ body: WIDGETS });
    await vi.waitFor(async () => {
      const crd = await c.ext.readCustomResourceDefinition({ name: WIDGETS.metadata!.name! });
      expect(crd.status?.conditions?.find((x) => x.type === 'Established')?.status).toBe('True');
    }, WAIT);
    const ns = await createTestNamespace(shared, 'crd');
    const g = { group: 'harness.fleetbridge.dev', version: 'v1', namespace: ns, plural: 'widgets' };
    // right after Established the first create of the new kind blocks ~2 s (measured); retry it anyway in case it 404s
    await vi.waitFor(
      () => c.custom.createNamespacedCustomObject({ ...g, body: { apiVersion: 'harness.fleetbridge.dev/v1', kind: 'Widget', metadata: { name: 'w' }, spec: { size: 1 }, status: { phase: 'ignored' } } }),
      WAIT,
    );
    type Widget = { metadata: { generation: number; resourceVersion: string }; spec: { size: number }; status?: { phase?: string; observedGeneration?: number } };
    const created = (await c.custom.getNamespacedCustomObject({ ...g, name: 'w' })) as Widget;
    expect(created.status).toBeUndefined(); // status on the main resource is dropped
    expect(created.metadata.generation).toBe(1);

    await c.custom.patchNamespacedCustomObjectStatus({ ...g, name: 'w', body: { status: { phase: 'Ready', observedGeneration: 1 }, spec: { size: 99 } } }, MERGE);
    const afterStatus = (await c.custom.getNamespacedCustomObject({ ...g, name: 'w' })) as Widget;
    expect(afterStatus.status).toEqual({ phase: 'Ready', observedGeneration: 1 });
    expect(afterStatus.spec.size).toBe(1); // spec is ignored on /status
    expect(afterStatus.metadata.generation).toBe(1); // status writes do not bump generation

    await c.custom.patchNamespacedCustomObject({ ...g, name: 'w', body: { spec: { size: 2 } } }, MERGE);
    expect(((await c.custom.getNamespacedCustomObject({ ...g, name: 'w' })) as Widget).metadata.generation).toBe(2);
    // schema validation is enforced
    await expect(c.custom.patchNamespacedCustomObject({ ...g, name: 'w', body: { spec: { size: 0 } } }, MERGE)).rejects.toMatchObject({ code: 422 });
  });

  it('Leases: create, renew with the current resourceVersion, 409 on a stale one (MicroTime needs V1MicroTime)', async () => {
    const ns = await createTestNamespace(shared, 'lease');
    // Pitfall: Lease times are MicroTime (6 fractional digits). client-node 1.x serializes a plain Date
    // with 3 digits and the apiserver answers 400; its V1MicroTime class pads to microseconds.
    await expect(
      c.coord.createNamespacedLease({ namespace: ns, body: { metadata: { name: 'plain-date' }, spec: { holderIdentity: 'a', renewTime: new Date() } } }),
    ).rejects.toMatchObject({ code: 400 });

    const lease = await c.coord.createNamespacedLease({
      namespace: ns,
      body: {
        metadata: { name: 'fleetbridge-leader' },
        spec: { holderIdentity: 'a', leaseDurationSeconds: 15, acquireTime: new V1MicroTime(), renewTime: new V1MicroTime(), leaseTransitions: 0 },
      },
    });
    // Read back, renewTime is a plain Date again: re-wrap before writing the object back.
    const renewed = await c.coord.replaceNamespacedLease({
      name: 'fleetbridge-leader',
      namespace: ns,
      body: { ...lease, spec: { ...lease.spec, acquireTime: new V1MicroTime(lease.spec!.acquireTime!), renewTime: new V1MicroTime() } },
    });
    expect(renewed.metadata?.resourceVersion).not.toBe(lease.metadata?.resourceVersion);
    expect(renewed.spec?.holderIdentity).toBe('a');
    await expect(
      c.coord.replaceNamespacedLease({
        name: 'fleetbridge-leader',
        namespace: ns,
        body: { ...lease, spec: { ...lease.spec, holderIdentity: 'b', acquireTime: new V1MicroTime(), renewTime: new V1MicroTime() } },
      }),
    ).rejects.toMatchObject({ code: 409 });
  });

  it('TokenRequest bound to a Pod + TokenReview: user, pod name/uid in extra, audience, invalid once the Pod is gone', { timeout: 60_000 }, async () => {
    const ns = await createTestNamespace(shared, 'tokens');
    await c.core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'agent' } } });
    const p = await c.core.createNamespacedPod({ namespace: ns, body: pod('collector-0', { app: 'otelcol' }, 'agent') });
    const tr = await c.core.createNamespacedServiceAccountToken({
      namespace: ns,
      name: 'agent',
      body: {
        spec: {
          audiences: ['fleetbridge'],
          expirationSeconds: 600,
          boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'collector-0', uid: p.metadata!.uid! },
        },
      },
    });
    const token = tr.status!.token;

    const review = await c.authn.createTokenReview({ body: { spec: { token, audiences: ['fleetbridge'] } } });
    console.log(`[kube-harness] TokenReview of a pod-bound token: ${JSON.stringify(review.status)}`);
    expect(review.status?.authenticated).toBe(true);
    expect(review.status?.audiences).toEqual(['fleetbridge']);
    expect(review.status?.user?.username).toBe(`system:serviceaccount:${ns}:agent`);
    expect(review.status?.user?.groups).toEqual(expect.arrayContaining(['system:serviceaccounts', `system:serviceaccounts:${ns}`]));
    expect(review.status?.user?.extra?.['authentication.kubernetes.io/pod-name']).toEqual(['collector-0']);
    expect(review.status?.user?.extra?.['authentication.kubernetes.io/pod-uid']).toEqual([p.metadata!.uid!]);

    // wrong audience: not authenticated
    const other = await c.authn.createTokenReview({ body: { spec: { token, audiences: ['someone-else'] } } });
    expect(other.status?.authenticated).toBeFalsy();

    // a token bound to nothing carries no pod extra
    const plain = await c.core.createNamespacedServiceAccountToken({ namespace: ns, name: 'agent', body: { spec: { audiences: ['fleetbridge'], expirationSeconds: 600 } } });
    const plainReview = await c.authn.createTokenReview({ body: { spec: { token: plain.status!.token, audiences: ['fleetbridge'] } } });
    expect(plainReview.status?.authenticated).toBe(true);
    expect(plainReview.status?.user?.extra?.['authentication.kubernetes.io/pod-name']).toBeUndefined();

    // a non-admin reviewer needs create on tokenreviews (ClusterRole system:auth-delegator)
    await c.core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'operator' } } });
    const opToken = (await c.core.createNamespacedServiceAccountToken({ namespace: ns, name: 'operator', body: { spec: { audiences: [], expirationSeconds: 600 } } })).status!.token;
    const reviewBody = { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: ['fleetbridge'] } };
    expect((await kubeRequest(shared, 'POST', '/apis/authentication.k8s.io/v1/tokenreviews', reviewBody, { token: opToken })).status).toBe(403);
    await c.rbac.createClusterRoleBinding({
      body: {
        metadata: { name: `${ns}-operator-auth-delegator` },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:auth-delegator' },
        subjects: [{ kind: 'ServiceAccount', name: 'operator', namespace: ns }],
      },
    });
    const boundAt = Date.now();
    await vi.waitFor(async () => {
      const r = await kubeRequest<{ status: { authenticated?: boolean } }>(shared, 'POST', '/apis/authentication.k8s.io/v1/tokenreviews', reviewBody, { token: opToken });
      expect(r.status).toBe(201);
      expect(r.body.status.authenticated).toBe(true);
    }, WAIT);
    console.log(`[kube-harness] the auth-delegator binding took effect after ${Date.now() - boundAt} ms`);

    // the bound token dies with its Pod (TokenReview looks the Pod up by name and uid)
    // (kube-apiserver caches successful token authentications for 10 s, so this can take that long)
    await c.core.deleteNamespacedPod({ name: 'collector-0', namespace: ns, gracePeriodSeconds: 0 });
    const deletedAt = Date.now();
    await vi.waitFor(async () => {
      const gone = await c.authn.createTokenReview({ body: { spec: { token, audiences: ['fleetbridge'] } } });
      expect(gone.status?.authenticated).toBeFalsy();
    }, { timeout: 20_000, interval: 250 });
    console.log(`[kube-harness] a pod-bound token stopped validating ${Date.now() - deletedAt} ms after its Pod was deleted`);
    // …and a new Pod with the same name does not revive it (different uid)
    await c.core.createNamespacedPod({ namespace: ns, body: pod('collector-0', { app: 'otelcol' }, 'agent') });
    const recreated = await c.authn.createTokenReview({ body: { spec: { token, audiences: ['fleetbridge'] } } });
    expect(recreated.status?.authenticated).toBeFalsy();
  });

  describe('a private control plane (self-signed serving cert): restart and cleanup', () => {
    let cp: ControlPlane;

    beforeAll(async () => {
      const t0 = Date.now();
      cp = await startControlPlane({ servingCerts: 'self-signed' });
      const rss = cp.rss();
      console.log(
        `[kube-harness] private control plane up in ${Date.now() - t0} ms (setup ${cp.timings.setupMs} ms, etcd ready ${cp.timings.etcdReadyMs} ms, ` +
          `apiserver /readyz ${cp.timings.apiServerReadyMs} ms, namespace default ${cp.timings.apiServerUsableMs} ms); ` +
          `RSS apiserver ${MiB(rss.apiserver)}, etcd ${MiB(rss.etcd)}`,
      );
    }, 120_000);

    afterAll(async () => {
      await cp?.stop();
    });

    it('restartApiServer(): same port and data; tokens issued before still validate; the outage is visible', async () => {
      const { core, authn } = clientsFor(cp.kubeconfigYaml);
      const ns = await createTestNamespace(cp, 'restart');
      await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'agent' } } });
      const token = (await core.createNamespacedServiceAccountToken({ namespace: ns, name: 'agent', body: { spec: { audiences: ['fleetbridge'], expirationSeconds: 600 } } })).status!.token;
      const pid = cp.apiServerPid;
      const server = cp.server;

      const t0 = Date.now();
      await cp.stopApiServer();
      const stoppedMs = Date.now() - t0;
      expect(cp.apiServerPid).toBeUndefined();
      await expect(kubeRequest(cp, 'GET', '/readyz', undefined, { timeoutMs: 2000 })).rejects.toThrow(/ECONNREFUSED/);
      await cp.startApiServer();
      const rss = cp.rss();
      console.log(
        `[kube-harness] apiserver stop ${stoppedMs} ms, start again ${Date.now() - t0 - stoppedMs} ms ` +
          `(/readyz ${cp.timings.apiServerReadyMs} ms, usable ${cp.timings.apiServerUsableMs} ms); RSS apiserver ${MiB(rss.apiserver)}, etcd ${MiB(rss.etcd)}`,
      );

      expect(cp.server).toBe(server);
      expect(cp.apiServerPid).not.toBe(pid);
      expect((await core.readNamespace({ name: ns })).metadata?.name).toBe(ns);
      const review = await authn.createTokenReview({ body: { spec: { token, audiences: ['fleetbridge'] } } });
      expect(review.status?.authenticated).toBe(true);

      const t1 = Date.now();
      await cp.restartApiServer();
      console.log(`[kube-harness] restartApiServer() took ${Date.now() - t1} ms`);
      expect((await kubeRequest(cp, 'GET', '/readyz')).text).toBe('ok');
    }, 120_000);

    it('stop() kills both processes and removes the temp dir', async () => {
      const pids = [cp.apiServerPid!, cp.etcdPid!];
      expect(pids.every((p) => typeof p === 'number')).toBe(true);
      expect(existsSync(cp.dir)).toBe(true);
      await cp.stop();
      const alive = (pid: number): boolean => {
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      };
      expect(pids.filter(alive)).toEqual([]);
      expect(existsSync(cp.dir)).toBe(false);
      await expect(cp.startApiServer()).rejects.toThrow(/stopped/);
    }, 60_000);
  });
});
