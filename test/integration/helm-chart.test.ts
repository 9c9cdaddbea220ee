/**
 * The Helm chart and the plain manifests, against real tools and a real kube-apiserver:
 * helm lint / template (default and non-default values, invalid values refused by the schema),
 * helm install / upgrade / uninstall, `kubectl apply --server-side --dry-run=server -k deploy/`,
 * deploy/ regenerated from the chart and compared, and the operator run with exactly the chart's
 * RBAC (the apiserver authorizes with RBAC) through a scenario that makes every kind of call it
 * makes — any forbidden call fails the test.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { CoreV1Api, CustomObjectsApi, KubeConfig, AppsV1Api } from '@kubernetes/client-node';
import { pino } from 'pino';
import { startTestOperator } from '../harness/kube/operator.js';
import { MERGE_PATCH } from '../../src/kube/client.js';
import { AgentCapabilities as C } from '../../src/opamp/messages.js';
import { RawWsAgent, randomUid } from '../harness/raw-agent.js';
import { ensureHelm, helmMissingReason } from '../harness/helm/binaries.js';
import { ensureKubectl } from '../harness/kube/binaries.js';
import { createTestNamespace } from '../harness/kube/control-plane.js';
import { getSharedControlPlane, type SharedControlPlane } from '../harness/kube/shared.js';
import { installCrds } from '../harness/kube/crds.js';
import { DEPLOY_NAMESPACE, renderDeploy } from '../../scripts/render-deploy.mjs';
import { skipUnlessOnCi } from '../harness/tools.js';

const run = promisify(execFile);
const skip = skipUnlessOnCi('helm-chart.test', helmMissingReason());
const CHART = 'charts/fleetbridge';
const G = 'fleetbridge.dev';
const V = 'v1alpha1';
const WAIT = { timeout: 20_000, interval: 200 };

type Doc = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string }; [k: string]: any };

describe.skipIf(skip)('the Helm chart and deploy/', () => {
  let helm: string;
  let kubectl: string;
  let cp: SharedControlPlane;
  let dir: string;
  let kubeconfig: string;
  let core: CoreV1Api;
  let custom: CustomObjectsApi;
  const cleanups: (() => Promise<unknown>)[] = [];

  const h = async (args: string[]) => {
    try {
      return (await run(helm, args, { timeout: 120_000, maxBuffer: 64 << 20, env: { ...process.env, HELM_CACHE_HOME: join(dir, 'cache'), HELM_CONFIG_HOME: join(dir, 'config'), HELM_DATA_HOME: join(dir, 'data') } })).stdout;
    } catch (err) {
      const e = err as { stderr?: string; stdout?: string; message: string };
      throw new Error(`helm ${args.join(' ')} failed: ${e.stderr || e.stdout || e.message}`);
    }
  };
  const template = async (...args: string[]) => parseAllDocuments(await h(['template', 'fb', CHART, '--namespace', 'obs', ...args])).map((d) => d.toJS() as Doc).filter(Boolean);

  beforeAll(async () => {
    [helm, kubectl] = await Promise.all([ensureHelm(), ensureKubectl()]);
    cp = await getSharedControlPlane();
    await installCrds(cp);
    dir = await mkdtemp(join(tmpdir(), 'fb-helm-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    kubeconfig = join(dir, 'kubeconfig');
    await writeFile(kubeconfig, cp.kubeconfigYaml);
    const kc = new KubeConfig();
    kc.loadFromString(cp.kubeconfigYaml);
    core = kc.makeApiClient(CoreV1Api);
    custom = kc.makeApiClient(CustomObjectsApi);
  }, 20 * 60_000);

  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  });

  it('lints, and renders least-privilege objects with a restricted pod', async () => {
    await h(['lint', CHART, '--strict']);
    await h(['lint', CHART, '--strict', '--set', 'replicaCount=3', '--set', 'serviceMonitor.enabled=true', '--set-json', 'bridge.spec.namespaceSelector={"matchLabels":{"team":"a"}}']);
    const docs = await template();
    const kinds = docs.map((d) => `${d.kind}/${d.metadata.name}`).sort();
    expect(kinds).toEqual(['ClusterRole/fb-fleetbridge-obs', 'ClusterRole/fb-fleetbridge-obs-metrics-reader', 'ClusterRole/fb-fleetbridge-obs-viewer', 'ClusterRoleBinding/fb-fleetbridge-obs', 'Deployment/fb-fleetbridge', 'OpAMPBridge/fleetbridge', 'PodDisruptionBudget/fb-fleetbridge', 'Role/fb-fleetbridge', 'RoleBinding/fb-fleetbridge', 'Service/fleetbridge', 'ServiceAccount/fb-fleetbridge']);
    const dep = docs.find((d) => d.kind === 'Deployment')!;
    const pod = dep['spec'].template.spec;
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(pod.containers[0].securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    expect(pod.containers[0].readinessProbe.httpGet).toMatchObject({ path: '/readyz', port: 'admin' });
    expect(pod.containers[0].args).toContain('--admin-auth=kubernetes');
    // Namespaced by default: nothing cluster-wide but TokenReviews and SubjectAccessReviews (agents' and admin callers' tokens).
    expect(docs.find((d) => d.kind === 'ClusterRole' && d.metadata.name === 'fb-fleetbridge-obs')!['rules']).toEqual([
      { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
      { apiGroups: ['authorization.k8s.io'], resources: ['subjectaccessreviews'], verbs: ['create'] },
    ]);
    // The roles admin callers are bound to: the API (a subresource of this bridge) and /metrics.
    expect(docs.find((d) => d.metadata.name === 'fb-fleetbridge-obs-viewer')!['rules']).toEqual([
      { apiGroups: ['fleetbridge.dev'], resources: ['opampbridges/api'], resourceNames: ['fleetbridge'], verbs: ['get'] },
      { apiGroups: ['fleetbridge.dev'], resources: ['collectors', 'opampbridges'], verbs: ['get', 'list', 'watch'] },
      { nonResourceURLs: ['/metrics'], verbs: ['get'] },
    ]);
    expect(docs.find((d) => d.metadata.name === 'fb-fleetbridge-obs-metrics-reader')!['rules']).toEqual([{ nonResourceURLs: ['/metrics'], verbs: ['get'] }]);
    // With a namespaceSelector the served resources move to the ClusterRole, namespaces included.
    const wide = await template('--set-json', 'bridge.spec.namespaceSelector={"matchLabels":{"team":"a"}}', '--set', 'serviceMonitor.enabled=true');
    const cr = wide.find((d) => d.kind === 'ClusterRole')!['rules'] as { resources: string[] }[];
    expect(cr.flatMap((r) => r.resources).sort()).toEqual(['collectors', 'collectors/status', 'events', 'namespaces', 'pods', 'secrets', 'subjectaccessreviews', 'tokenreviews']);
    // Prometheus scrapes with its ServiceAccount token (bound to the metrics-reader role) ...
    const sm = wide.find((d) => d.kind === 'ServiceMonitor')!;
    expect(sm['spec'].endpoints[0]).toMatchObject({ port: 'admin', path: '/metrics', bearerTokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token' });
    // ... unless /metrics is left open (admin.metricsAuth false); subjects listed in values are bound.
    const open = await template('--set', 'serviceMonitor.enabled=true', '--set', 'admin.metricsAuth=false', '--set-json', 'admin.metricsReaders=[{"kind":"ServiceAccount","name":"prometheus-k8s","namespace":"monitoring"}]');
    expect(open.find((d) => d.kind === 'ServiceMonitor')!['spec'].endpoints[0].bearerTokenFile).toBeUndefined();
    expect(open.find((d) => d.kind === 'Deployment')!['spec'].template.spec.containers[0].args).toContain('--metrics-auth=false');
    expect(open.find((d) => d.kind === 'ClusterRoleBinding' && d.metadata.name === 'fb-fleetbridge-obs-metrics-reader')).toMatchObject({ roleRef: { name: 'fb-fleetbridge-obs-metrics-reader' }, subjects: [{ kind: 'ServiceAccount', name: 'prometheus-k8s', namespace: 'monitoring' }] });
  });

  it('refuses bad values at install with the schema\'s message', async () => {
    await expect(template('--set', 'replicaCount=0')).rejects.toThrow(/replicaCount/);
    await expect(template('--set', 'bridge.spec.auth.mode=password')).rejects.toThrow(/auth[./]mode/);
    await expect(template('--set', 'image.pullPolicy=Sometimes')).rejects.toThrow(/pullPolicy/);
    await expect(template('--set', 'nosuchvalue=1')).rejects.toThrow(/nosuchvalue/);
    await expect(template('--set', 'admin.auth=basic')).rejects.toThrow(/admin[./]auth/);
  });

  it('deploy/ is the chart rendered (npm run gen:deploy), and the API server accepts all of it', async () => {
    const files = await renderDeploy(helm);
    for (const [name, text] of files) expect((await readFile(join('deploy', name), 'utf8')) === text, `deploy/${name} is stale: run npm run gen:deploy`).toBe(true);
    // A dry run creates nothing, so the namespace the objects go to must exist for real.
    await core.createNamespace({ body: { metadata: { name: DEPLOY_NAMESPACE } } }).catch((err: unknown) => {
      if ((err as { code?: number }).code !== 409) throw err;
    });
    // --force-conflicts: other tests created the CRDs with other field managers.
    const out = await run(kubectl, ['--kubeconfig', kubeconfig, 'apply', '--server-side', '--force-conflicts', '--dry-run=server', '--field-manager=fleetbridge-test', '-k', 'deploy/'], { timeout: 120_000 });
    expect(out.stdout).toMatch(/deployment\.apps\/fleetbridge serverside-applied \(server dry run\)/);
  });

  it('installs, upgrades and uninstalls in a real API server; CRDs stay', async () => {
    const ns = await createTestNamespace(cp, 'helm-install');
    await h(['install', 'fb', CHART, '--namespace', ns, '--kubeconfig', kubeconfig]);
    const apps = (() => {
      const kc = new KubeConfig();
      kc.loadFromString(cp.kubeconfigYaml);
      return kc.makeApiClient(AppsV1Api);
    })();
    expect((await apps.readNamespacedDeployment({ namespace: ns, name: 'fb-fleetbridge' })).spec?.replicas).toBe(2);
    expect(await custom.getNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'opampbridges', name: 'fleetbridge' })).toMatchObject({ spec: { auth: { mode: 'serviceAccountToken' } } });
    await h(['upgrade', 'fb', CHART, '--namespace', ns, '--kubeconfig', kubeconfig, '--set', 'replicaCount=3']);
    expect((await apps.readNamespacedDeployment({ namespace: ns, name: 'fb-fleetbridge' })).spec?.replicas).toBe(3);
    await h(['uninstall', 'fb', '--namespace', ns, '--kubeconfig', kubeconfig]);
    await expect(apps.readNamespacedDeployment({ namespace: ns, name: 'fb-fleetbridge' })).rejects.toThrow();
    const crds = await run(kubectl, ['--kubeconfig', kubeconfig, 'get', 'crd', 'collectors.fleetbridge.dev', '-o', 'name'], { timeout: 60_000 });
    expect(crds.stdout.trim()).toBe('customresourcedefinition.apiextensions.k8s.io/collectors.fleetbridge.dev');
  });

  /**
   * Installs the chart into `release`, runs the operator with the chart's ServiceAccount token, and
   * drives every kind of call it makes from a workload namespace `served` (read pods, Collectors and
   * a Secret; write both statuses, the Lease and an Event). Any forbidden call fails.
   */
  async function operatorUnderChartRbac(release: string, served: string, set: string[]): Promise<void> {
    // A scraper bound to the chart's metrics-reader role through admin.metricsReaders, and a ServiceAccount bound to nothing.
    for (const name of ['scraper', 'stranger']) await core.createNamespacedServiceAccount({ namespace: release, body: { metadata: { name } } });
    await h(['install', 'fb', CHART, '--namespace', release, '--kubeconfig', kubeconfig, '--set', 'bridge.spec.heartbeatIntervalSeconds=1', '--set-json', `admin.metricsReaders=[{"kind":"ServiceAccount","name":"scraper","namespace":"${release}"}]`, ...set]);
    cleanups.push(() => h(['uninstall', 'fb', '--namespace', release, '--kubeconfig', kubeconfig]));
    // Credentials of the chart's ServiceAccount, as the pod would have them.
    const saToken = (await core.createNamespacedServiceAccountToken({ namespace: release, name: 'fb-fleetbridge', body: { spec: { audiences: [], expirationSeconds: 3600 } } })).status!.token;
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: cp.server, caData: Buffer.from(cp.caCert).toString('base64') }],
      users: [{ name: 'operator', token: saToken }],
      contexts: [{ name: 'c', cluster: 'c', user: 'operator' }],
      currentContext: 'c',
    });
    // What the workloads have: an agent pod, a labelled Secret, a Collector (which the agent fails).
    await core.createNamespacedServiceAccount({ namespace: served, body: { metadata: { name: 'agent' } } });
    const p = await core.createNamespacedPod({ namespace: served, body: { metadata: { name: 'a', labels: { app: 'a' } }, spec: { serviceAccountName: 'agent', containers: [{ name: 'c', image: 'x' }] } } });
    await core.createNamespacedSecret({ namespace: served, body: { metadata: { name: 'creds', labels: { 'fleetbridge.dev/config-secret': 'true' } }, stringData: { key: `v-${randomBytes(4).toString('hex')}` } } });
    await custom.createNamespacedCustomObject({ group: G, version: V, namespace: served, plural: 'collectors', body: { apiVersion: `${G}/${V}`, kind: 'Collector', metadata: { name: 'c' }, spec: { selector: { matchLabels: { app: 'a' } }, secretRefs: [{ name: 'creds' }], config: { exporters: { otlphttp: { endpoint: 'https://x.example', headers: { k: '${secret:creds/key}' } } } } } } });

    const lines: string[] = [];
    const logger = pino({ level: 'debug' }, new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }));
    const op = await startTestOperator({ kc, namespace: release, bridgeName: 'fleetbridge', logger, identity: 'rbac-test', leaderElection: true, cleanups });
    const token = (await core.createNamespacedServiceAccountToken({ namespace: served, name: 'agent', body: { spec: { audiences: ['fleetbridge'], expirationSeconds: 600, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'a', uid: p.metadata!.uid! } } } })).status!.token;
    const agent = await RawWsAgent.connect(op.opampUrl.websocket, randomUid(), { Authorization: `Bearer ${token}` });
    cleanups.push(async () => agent.terminate());
    agent.send({ capabilities: C.ReportsStatus | C.AcceptsRemoteConfig | C.ReportsRemoteConfig, agentDescription: {}, remoteConfigStatus: {} });
    await vi.waitFor(() => expect(agent.received.some((m) => m.remoteConfig)).toBe(true), WAIT);
    const rc = agent.received.find((m) => m.remoteConfig)!.remoteConfig!;
    agent.send({ capabilities: C.ReportsStatus | C.AcceptsRemoteConfig | C.ReportsRemoteConfig, remoteConfigStatus: { lastRemoteConfigHash: rc.configHash, status: 3, errorMessage: 'rejected' } });
    // Status of both kinds, the Lease and an Event (in the Collector's namespace): every write it makes.
    await vi.waitFor(async () => {
      const c = (await custom.getNamespacedCustomObject({ group: G, version: V, namespace: served, plural: 'collectors', name: 'c' })) as { status?: { failed?: number } };
      expect(c.status?.failed).toBe(1);
      const b = (await custom.getNamespacedCustomObject({ group: G, version: V, namespace: release, plural: 'opampbridges', name: 'fleetbridge' })) as { status?: { agents?: { connected?: number } } };
      expect(b.status?.agents?.connected).toBe(1);
      expect((await core.listNamespacedEvent({ namespace: served })).items.some((e) => e.reason === 'ApplyFailed')).toBe(true);
    }, WAIT);
    expect(op.isLeader()).toBe(true);
    await op.settled();
    // The admin endpoint authorizes with the chart's grants too (TokenReview, SubjectAccessReview).
    const adminToken = async (sa: string) => (await core.createNamespacedServiceAccountToken({ namespace: release, name: sa, body: { spec: { audiences: [], expirationSeconds: 600 } } })).status!.token;
    const stranger = await fetch(`${op.apiUrl}/metrics`, { headers: { Authorization: `Bearer ${await adminToken('stranger')}` } });
    expect(stranger.status).toBe(403);
    const scrape = await fetch(`${op.apiUrl}/metrics`, { headers: { Authorization: `Bearer ${await adminToken('scraper')}` } });
    expect(scrape.status).toBe(200);
    const metrics = await scrape.text();
    // (The stranger's refusal at the admin endpoint is the bridge's verdict, not a call it was denied.)
    const forbidden = lines.filter((l) => /forbidden|\b403\b/i.test(l) && !l.includes('"msg":"Admin request refused"'));
    expect(forbidden, forbidden.join('\n')).toEqual([]);
    expect(metrics).not.toMatch(/^fleetbridge_kube_api_errors_total\{[^}]*\} [1-9]/m);
  }

  it('the operator needs no right the chart does not grant (RBAC on), serving its own namespace', async () => {
    const ns = await createTestNamespace(cp, 'helm-rbac');
    // Secrets narrowed to the one the Collector lists: single-name watches are authorized by name.
    await operatorUnderChartRbac(ns, ns, ['--set', 'secrets.resourceNames={creds}']);
  });

  it('the operator needs no right the chart does not grant (RBAC on), serving namespaces by selector', async () => {
    const release = await createTestNamespace(cp, 'helm-rbac-wide');
    const served = await createTestNamespace(cp, 'helm-rbac-team');
    const team = `t${randomBytes(4).toString('hex')}`;
    await core.patchNamespace({ name: served, body: { metadata: { labels: { 'fleetbridge-test/team': team } } } }, MERGE_PATCH);
    await operatorUnderChartRbac(release, served, ['--set-json', `bridge.spec.namespaceSelector={"matchLabels":{"fleetbridge-test/team":"${team}"}}`]);
  });
});
