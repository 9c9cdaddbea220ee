/**
 * The operator against a real kube-apiserver + etcd (built from Go modules by the harness), with
 * real OpAMP peers: raw WebSocket agents and @elastic/opamp-client-node over HTTP.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { ApiextensionsV1Api, CoreV1Api, CustomObjectsApi, KubeConfig, type V1CustomResourceDefinition } from '@kubernetes/client-node';
import { createOpAMPClient, RemoteConfigStatuses } from '@elastic/opamp-client-node';
import { pino } from 'pino';
import { startTestOperator, type RunningOperator } from '../harness/kube/operator.js';
import { MERGE_PATCH } from '../../src/kube/client.js';
import { AgentCapabilities as C } from '../../src/opamp/messages.js';
import { RawWsAgent } from '../harness/raw-agent.js';
import { goMissingReason } from '../harness/go-agent.js';
import { skipUnlessOnCi } from '../harness/tools.js';
import { kubeRequest, startControlPlane, type ControlPlane } from '../harness/kube/control-plane.js';
import type { AgentView } from '../../src/fleet/view-types.js';

const skip = skipUnlessOnCi('kube-operator.test', goMissingReason());
const G = 'fleetbridge.dev';
const V = 'v1alpha1';
const CAPS = C.ReportsStatus | C.AcceptsRemoteConfig | C.ReportsRemoteConfig | C.ReportsHealth;
const WAIT = { timeout: 15_000, interval: 100 };

let cp: ControlPlane;
let kc: KubeConfig;
let core: CoreV1Api;
let custom: CustomObjectsApi;
const cleanups: (() => Promise<unknown>)[] = [];

describe.skipIf(skip)('operator on a real kube-apiserver', () => {
  beforeAll(async () => {
    cp = await startControlPlane();
    kc = new KubeConfig();
    kc.loadFromString(cp.kubeconfigYaml);
    core = kc.makeApiClient(CoreV1Api);
    custom = kc.makeApiClient(CustomObjectsApi);
    const ext = kc.makeApiClient(ApiextensionsV1Api);
    // Applied as raw JSON, as kubectl does: client-node's typed serializer would drop the
    // x-kubernetes-* keys of a CRD parsed from YAML (it knows only their camelCase model names).
    for (const f of readdirSync('crds')) {
      const r = await kubeRequest(cp, 'POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', parse(readFileSync(`crds/${f}`, 'utf8')));
      expect(r.status, r.text).toBe(201);
    }
    await vi.waitFor(async () => {
      for (const f of readdirSync('crds')) {
        const name = (parse(readFileSync(`crds/${f}`, 'utf8')) as V1CustomResourceDefinition).metadata!.name!;
        const c = await ext.readCustomResourceDefinition({ name });
        expect(c.status?.conditions?.find((x) => x.type === 'Established')?.status).toBe('True');
      }
    }, WAIT);
  }, 600_000);

  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    await cp?.stop();
  });

  async function namespace(prefix: string): Promise<string> {
    const ns = `${prefix}-${randomBytes(3).toString('hex')}`;
    await core.createNamespace({ body: { metadata: { name: ns } } });
    return ns;
  }

  async function bridge(ns: string, extra: { namespaceSelector?: unknown; packages?: unknown } = {}): Promise<RunningOperator> {
    await custom.createNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'opampbridges', body: { apiVersion: `${G}/${V}`, kind: 'OpAMPBridge', metadata: { name: 'fb' }, spec: { heartbeatIntervalSeconds: 1, auth: { mode: 'none' }, ...extra } } });
    const op = await startTestOperator({ kc, namespace: ns, adminAuth: 'none', identity: `test-${ns}`, leaderElection: true, cleanups });
    return op;
  }

  async function collector(ns: string, name: string, matchLabels: Record<string, string>, config: unknown, priority = 0): Promise<void> {
    await custom.createNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'collectors', body: { apiVersion: `${G}/${V}`, kind: 'Collector', metadata: { name }, spec: { selector: { matchLabels }, ...(typeof config === 'string' ? { configYaml: config } : { config }), priority } } });
  }

  /** Edits a Collector as `kubectl edit` would: the given spec fields replace the old ones whole. */
  async function patchCollectorSpec(ns: string, name: string, spec: Record<string, unknown>): Promise<void> {
    const obj = (await custom.getNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'collectors', name })) as { spec: Record<string, unknown> };
    const next = { ...obj.spec, ...spec };
    for (const [k, v] of Object.entries(next)) if (v === null) delete next[k];
    await custom.replaceNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'collectors', name, body: { ...obj, spec: next } });
  }

  async function getCollector(ns: string, name: string): Promise<{ metadata: { generation: number }; status?: Record<string, any> }> {
    return (await custom.getNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'collectors', name })) as never;
  }

  async function pod(ns: string, name: string, labels: Record<string, string>): Promise<string> {
    const p = await core.createNamespacedPod({ namespace: ns, body: { metadata: { name, labels }, spec: { containers: [{ name: 'otelcol', image: 'otel/opentelemetry-collector-contrib' }] } } });
    return p.metadata!.uid!;
  }

  async function agent(op: RunningOperator, attrs: Record<string, string>): Promise<RawWsAgent> {
    const a = await RawWsAgent.connect(op.opampUrl.websocket);
    a.send({ capabilities: CAPS, agentDescription: { identifyingAttributes: [{ key: 'service.name', value: { stringValue: 'otelcol' } }], nonIdentifyingAttributes: Object.entries(attrs).map(([key, v]) => ({ key, value: { stringValue: v } })) }, remoteConfigStatus: {} });
    await a.waitForMessages(1);
    cleanups.push(async () => a.terminate());
    return a;
  }

  const configs = (a: RawWsAgent) => a.received.filter((m) => m.remoteConfig).map((m) => ({ hash: Buffer.from(m.remoteConfig!.configHash!).toString('hex'), cfg: parse(Buffer.from(m.remoteConfig!.config!.configMap!['']!.body!).toString()) as Record<string, any> }));
  const report = (a: RawWsAgent, hash: string, status: 'APPLIED' | 'FAILED', errorMessage = '') =>
    a.send({ capabilities: CAPS, remoteConfigStatus: { lastRemoteConfigHash: Buffer.from(hash, 'hex'), status: status === 'APPLIED' ? 1 : 3, errorMessage } });
  const view = async (op: RunningOperator, uid: string) => (await (await fetch(`${op.apiUrl}/api/v1/agents/${uid}`)).json()) as AgentView;
  const cond = (st: Record<string, any> | undefined, type: string) => (st?.['conditions'] as { type: string; status: string; reason: string; message: string }[] | undefined)?.find((c) => c.type === type);

  it('refuses invalid objects with the schema\'s messages', async () => {
    const ns = await namespace('crd');
    const create = (spec: unknown) => custom.createNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'collectors', body: { apiVersion: `${G}/${V}`, kind: 'Collector', metadata: { name: 'bad' }, spec } });
    const message = async (p: Promise<unknown>) => {
      try {
        await p;
        return 'accepted';
      } catch (err) {
        const body = (err as { body?: string }).body;
        return body ? (JSON.parse(body) as { message: string }).message : String(err);
      }
    };
    expect(await message(create({ selector: { matchExpressions: [{ key: 'app', operator: 'In' }] }, config: {} }))).toMatch(/In and NotIn need a non-empty values list/);
    expect(await message(create({ selector: { matchExpressions: [{ key: 'app', operator: 'Like', values: ['x'] }] }, config: {} }))).toMatch(/Unsupported value: "Like"/);
    expect(await message(create({ selector: {}, config: {}, priority: 5000 }))).toMatch(/spec.priority: Invalid value: 5000: spec.priority in body should be less than or equal to 1000/);
    expect(await message(create({ config: {} }))).toMatch(/spec.selector: Required value/);
    expect(await message(create({ selector: {}, config: 'receivers: {}' }))).toMatch(/spec.config: Invalid value: "string": spec.config in body must be of type object/);
    expect(await message(create({ selector: {}, config: {}, configYaml: 'receivers: {}' }))).toMatch(/set exactly one of config \(an object\) and configYaml \(YAML text\)/);
    expect(await message(create({ selector: {}, configYaml: 'receivers: {}' }))).toBe('accepted');
  });

  it('pushes each agent the config its pod\'s labels select, and writes counts and Ready into status', async () => {
    const ns = await namespace('labels');
    const op = await bridge(ns);
    await collector(ns, 'web', { app: 'web' }, { exporters: { otlp: { endpoint: 'web-backend:4317' } } });
    await collector(ns, 'db', { app: 'db' }, 'exporters:\n  otlp:\n    endpoint: db-backend:4317\n');
    const webUid = await pod(ns, 'web-1', { app: 'web' });
    await pod(ns, 'db-1', { app: 'db' });
    // One agent binds by pod uid, the other by name + namespace; their own "app" attribute is ignored.
    const web = await agent(op, { 'k8s.pod.uid': webUid, app: 'db' });
    const db = await agent(op, { 'k8s.pod.name': 'db-1', 'k8s.namespace.name': ns });
    await vi.waitFor(() => {
      expect(configs(web).at(-1)?.cfg.exporters.otlp.endpoint).toBe('web-backend:4317');
      expect(configs(db).at(-1)?.cfg.exporters.otlp.endpoint).toBe('db-backend:4317');
    }, WAIT);
    expect((await view(op, web.uidString))).toMatchObject({ pod: `${ns}/web-1`, namespace: ns, labels: { app: 'web' }, identityError: null });
    report(web, configs(web).at(-1)!.hash, 'APPLIED');
    report(db, configs(db).at(-1)!.hash, 'APPLIED');
    await vi.waitFor(async () => {
      const c = await getCollector(ns, 'web');
      expect(c.status).toMatchObject({ observedGeneration: c.metadata.generation, matched: 1, connected: 1, applied: 1, failed: 0, configHash: expect.stringMatching(/^[0-9a-f]{64}$/) });
      expect(cond(c.status, 'Ready')).toMatchObject({ status: 'True', reason: 'AllApplied' });
      expect(cond(c.status, 'ConfigValid')?.status).toBe('True');
    }, WAIT);
    // The printer columns, as `kubectl get collectors` shows them.
    const table = (await (await fetch(`${cp.server}/apis/${G}/${V}/namespaces/${ns}/collectors`, { headers: { Accept: 'application/json;as=Table;g=meta.k8s.io;v=v1', Authorization: `Bearer ${cp.token}` }, dispatcher: cp.dispatcher } as RequestInit)).json()) as { columnDefinitions: { name: string }[]; rows: { cells: unknown[] }[] };
    expect(table.columnDefinitions.map((c) => c.name)).toEqual(['Name', 'Ready', 'Matched', 'Applied', 'Failed', 'Healthy', 'Disconnected', 'Hash', 'Version', 'Age']);
    expect(table.rows.find((r) => r.cells[0] === 'web')!.cells.slice(1, 5)).toEqual(['True', 1, 1, 0]);
    // The operator's own health and metrics.
    expect((await fetch(`${op.apiUrl}/readyz`)).status).toBe(200);
    const metrics = await (await fetch(`${op.apiUrl}/metrics`)).text();
    expect(metrics).toMatch(/fleetbridge_reconcile_total\{queue="desired",outcome="success"\} [1-9]/);
    expect(metrics).toMatch(/fleetbridge_status_writes_total\{kind="Collector",outcome="ok"\} [1-9]/);
    expect(metrics).toMatch(/fleetbridge_workqueue_depth\{queue="status"\} \d/);
    expect(metrics).toMatch(/fleetbridge_leader 1/);
    // The bridge's own status.
    await vi.waitFor(async () => {
      const b = (await custom.getNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'opampbridges', name: 'fb' })) as { status?: Record<string, any> };
      expect(b.status).toMatchObject({ endpoint: expect.stringMatching(new RegExp(`^ws://fb\\.${ns}\\.svc:\\d+/v1/opamp$`)), agents: { connected: 2, applied: 2, failed: 0 } });
      expect(cond(b.status, 'Ready')?.status).toBe('True');
    }, WAIT);
  });

  it('makes a Collector Degraded with the agent\'s error and an Event, and recovers when the config is fixed', async () => {
    const ns = await namespace('fail');
    const op = await bridge(ns);
    await collector(ns, 'edge', { role: 'edge' }, { exporters: { kafka: {} } });
    await pod(ns, 'edge-1', { role: 'edge' });
    const a = await agent(op, { 'k8s.pod.name': 'edge-1', 'k8s.namespace.name': ns });
    await vi.waitFor(() => expect(configs(a)).toHaveLength(1), WAIT);
    report(a, configs(a)[0]!.hash, 'FAILED', 'exporter "kafka" is not in this build');
    await vi.waitFor(async () => {
      const c = await getCollector(ns, 'edge');
      expect(c.status).toMatchObject({ failed: 1, failingAgents: [{ name: `${ns}/edge-1`, message: 'exporter "kafka" is not in this build' }] });
      expect(cond(c.status, 'Degraded')).toMatchObject({ status: 'True', reason: 'ApplyFailed', message: `1 of 1 agents failed to apply the config; ${ns}/edge-1: exporter "kafka" is not in this build` });
      expect(cond(c.status, 'Ready')).toMatchObject({ status: 'False', reason: 'ApplyFailed' });
    }, WAIT);
    await vi.waitFor(async () => {
      const evs = await core.listNamespacedEvent({ namespace: ns });
      expect(evs.items.some((e) => e.reason === 'ApplyFailed' && e.involvedObject.name === 'edge' && e.type === 'Warning' && /exporter "kafka" is not in this build/.test(e.message ?? ''))).toBe(true);
    }, WAIT);
    // The failed config is not pushed again; the fix is.
    await patchCollectorSpec(ns, 'edge', { config: { exporters: { debug: {} } } });
    await vi.waitFor(() => expect(configs(a)).toHaveLength(2), WAIT);
    expect(configs(a)[1]!.cfg).toEqual({ exporters: { debug: {} } });
    report(a, configs(a)[1]!.hash, 'APPLIED');
    await vi.waitFor(async () => {
      const c = await getCollector(ns, 'edge');
      expect(cond(c.status, 'Ready')).toMatchObject({ status: 'True', reason: 'AllApplied' });
      expect(cond(c.status, 'Degraded')?.status).toBe('False');
      expect(c.status?.['observedGeneration']).toBe(c.metadata.generation);
    }, WAIT);
  });

  it('holds a config from an agent that lacks a component it names: failed with MissingComponents, an Event, and pushed once the config fits', async () => {
    const ns = await namespace('components');
    const op = await bridge(ns);
    await collector(ns, 'edge', { role: 'edge' }, { exporters: { kafka: {} } });
    await pod(ns, 'edge-1', { role: 'edge' });
    const a = await RawWsAgent.connect(op.opampUrl.websocket);
    cleanups.push(async () => a.terminate());
    const components = { exporters: { subComponentMap: { debug: {}, otlp: {} } }, receivers: { subComponentMap: { otlp: {} } } };
    a.send({
      capabilities: CAPS | C.ReportsAvailableComponents,
      agentDescription: { identifyingAttributes: [{ key: 'service.name', value: { stringValue: 'otelcol' } }], nonIdentifyingAttributes: [{ key: 'k8s.pod.name', value: { stringValue: 'edge-1' } }, { key: 'k8s.namespace.name', value: { stringValue: ns } }] },
      remoteConfigStatus: {},
      availableComponents: { hash: Buffer.from('c1'), components },
    });
    await vi.waitFor(async () => {
      const c = await getCollector(ns, 'edge');
      expect(c.status).toMatchObject({ failed: 1, failingAgents: [{ name: `${ns}/edge-1`, reason: 'MissingComponents', message: expect.stringContaining('exporters/kafka') }] });
      expect(cond(c.status, 'Degraded')).toMatchObject({ status: 'True', reason: 'MissingComponents' });
      const evs = await core.listNamespacedEvent({ namespace: ns });
      expect(evs.items.some((e) => e.reason === 'MissingComponents' && e.involvedObject.name === 'edge' && /exporters\/kafka/.test(e.message ?? ''))).toBe(true);
    }, WAIT);
    expect(configs(a)).toHaveLength(0);
    await patchCollectorSpec(ns, 'edge', { config: { exporters: { otlp: { endpoint: 'gw:4317' } } } });
    await vi.waitFor(() => expect(configs(a)).toHaveLength(1), WAIT);
    expect(configs(a)[0]!.cfg).toEqual({ exporters: { otlp: { endpoint: 'gw:4317' } } });
  });

  it('offers a Collector\'s packages, serves the file from the bridge\'s directory, and writes where agents stand into status (installed, then a failed install with an Event)', async () => {
    const ns = await namespace('packages');
    const dir = mkdtempSync(join(tmpdir(), 'fleetbridge-kpkgs-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const file = randomBytes(40_000);
    const sha = createHash('sha256').update(file).digest('hex');
    writeFileSync(join(dir, 'otelcol.bin'), file);
    const op = await bridge(ns, { packages: { directory: dir } });
    await custom.createNamespacedCustomObject({
      group: G, version: V, namespace: ns, plural: 'collectors',
      body: { apiVersion: `${G}/${V}`, kind: 'Collector', metadata: { name: 'pk' }, spec: { selector: { matchLabels: { role: 'pk' } }, config: {}, packages: [{ name: 'otelcol', version: '1.2.3', sha256: sha, serve: { path: 'otelcol.bin' } }] } },
    });
    await pod(ns, 'pk-1', { role: 'pk' });
    const a = await RawWsAgent.connect(op.opampUrl.websocket);
    cleanups.push(async () => a.terminate());
    const caps = CAPS | C.AcceptsPackages | C.ReportsPackageStatuses;
    a.send({
      capabilities: caps,
      agentDescription: { identifyingAttributes: [{ key: 'service.name', value: { stringValue: 'otelcol' } }], nonIdentifyingAttributes: [{ key: 'k8s.pod.name', value: { stringValue: 'pk-1' } }, { key: 'k8s.namespace.name', value: { stringValue: ns } }] },
      remoteConfigStatus: {},
      packageStatuses: {},
    });
    await vi.waitFor(() => expect(a.received.some((m) => m.packagesAvailable)).toBe(true), WAIT);
    const offer = a.received.find((m) => m.packagesAvailable)!.packagesAvailable!;
    const p = offer.packages!['otelcol']!;
    expect(p.version).toBe('1.2.3');
    expect(Buffer.from(p.file!.contentHash!).toString('hex')).toBe(sha);
    const got = Buffer.from(await (await fetch(p.file!.downloadUrl!)).arrayBuffer());
    expect(createHash('sha256').update(got).digest('hex')).toBe(sha);
    const statuses = (status: number, errorMessage = '') => ({
      serverProvidedAllPackagesHash: offer.allPackagesHash,
      packages: { otelcol: { name: 'otelcol', agentHasVersion: status === 0 ? '1.2.3' : '', agentHasHash: status === 0 ? p.hash : new Uint8Array(), serverOfferedVersion: '1.2.3', serverOfferedHash: p.hash, status, errorMessage } },
    });
    await vi.waitFor(() => expect(configs(a)).toHaveLength(1), WAIT);
    report(a, configs(a)[0]!.hash, 'APPLIED');
    a.send({ capabilities: caps, packageStatuses: statuses(0) });
    await vi.waitFor(async () => {
      const c = await getCollector(ns, 'pk');
      expect(c.status?.['packages']).toEqual({ hash: Buffer.from(offer.allPackagesHash!).toString('hex'), offered: 1, installed: 1, installing: 0, failed: 0, unsupported: 0 });
      expect(cond(c.status, 'Ready')).toMatchObject({ status: 'True' });
    }, WAIT);
    a.send({ capabilities: caps, packageStatuses: statuses(3, 'disk full') });
    await vi.waitFor(async () => {
      const c = await getCollector(ns, 'pk');
      expect(c.status?.['packages']).toMatchObject({ installed: 0, failed: 1 });
      expect(c.status?.['failingAgents']).toContainEqual(expect.objectContaining({ name: `${ns}/pk-1`, reason: 'PackageInstallFailed', message: expect.stringContaining('disk full') }));
      expect(cond(c.status, 'Degraded')).toMatchObject({ status: 'True', reason: 'PackageInstallFailed' });
      expect(cond(c.status, 'Ready')).toMatchObject({ status: 'False', reason: 'PackageInstallFailed' });
      const evs = await core.listNamespacedEvent({ namespace: ns });
      expect(evs.items.some((e) => e.reason === 'PackageInstallFailed' && e.involvedObject.name === 'pk' && /disk full/.test(e.message ?? ''))).toBe(true);
    }, WAIT);
    // The CRD refuses a package with two sources or with none, and duplicate names.
    const create = (packages: unknown) => custom.createNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'collectors', body: { apiVersion: `${G}/${V}`, kind: 'Collector', metadata: { name: `bad-${randomBytes(2).toString('hex')}` }, spec: { selector: {}, config: {}, packages } } }).then(() => 'accepted', (err: { body?: string }) => (JSON.parse(err.body ?? '{}') as { message?: string }).message ?? String(err));
    expect(await create([{ version: '1', sha256: sha }])).toMatch(/set exactly one of url/);
    expect(await create([{ version: '1', sha256: sha, url: 'https://x/y', serve: { path: 'a' } }])).toMatch(/set exactly one of url/);
    expect(await create([{ name: 'a', version: '1', sha256: sha, url: 'https://x/1' }, { name: 'a', version: '2', sha256: sha, url: 'https://x/2' }])).toMatch(/package names must be unique/);
    expect(await create([{ version: '1', sha256: 'ABC', url: 'https://x/1' }])).toMatch(/sha256/);
  });

  it('moves an agent to the other Collector\'s config when its pod is relabelled, and sends nothing once no Collector matches', async () => {
    const ns = await namespace('relabel');
    const op = await bridge(ns);
    await collector(ns, 'blue', { color: 'blue' }, { exporters: { otlp: { endpoint: 'blue:4317' } } });
    await collector(ns, 'green', { color: 'green' }, { exporters: { otlp: { endpoint: 'green:4317' } } });
    await pod(ns, 'p-1', { color: 'blue' });
    const a = await agent(op, { 'k8s.pod.name': 'p-1', 'k8s.namespace.name': ns });
    await vi.waitFor(() => expect(configs(a).at(-1)?.cfg.exporters.otlp.endpoint).toBe('blue:4317'), WAIT);
    await core.patchNamespacedPod({ namespace: ns, name: 'p-1', body: { metadata: { labels: { color: 'green' } } } }, MERGE_PATCH);
    await vi.waitFor(() => expect(configs(a).at(-1)?.cfg.exporters.otlp.endpoint).toBe('green:4317'), WAIT);
    const pushes = configs(a).length;
    await custom.deleteNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'collectors', name: 'green' });
    await vi.waitFor(async () => expect((await view(op, a.uidString)).remoteConfig.desiredHash).toBeNull(), WAIT);
    a.send({ capabilities: CAPS });
    await a.waitForMessages(a.received.length + 1);
    expect(configs(a)).toHaveLength(pushes);
  });

  it('gives nothing to an agent that claims a pod in another namespace or one that does not exist, and reports it', async () => {
    const ns = await namespace('claims');
    const other = await namespace('other');
    const op = await bridge(ns);
    await collector(ns, 'all', {}, { exporters: { debug: {} } });
    await pod(other, 'x-1', {});
    const foreign = await agent(op, { 'k8s.pod.name': 'x-1', 'k8s.namespace.name': other });
    const ghost = await agent(op, { 'k8s.pod.name': 'ghost', 'k8s.namespace.name': ns });
    await vi.waitFor(async () => {
      expect((await view(op, foreign.uidString)).identityError).toBe(`the agent claims a pod in namespace ${other}, which this bridge does not serve`);
      expect((await view(op, ghost.uidString)).identityError).toBe(`the agent claims pod ${ns}/ghost, which does not exist`);
      const b = (await custom.getNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'opampbridges', name: 'fb' })) as { status?: Record<string, any> };
      expect(b.status?.['agents']).toMatchObject({ connected: 2, unbound: 2 });
    }, WAIT);
    expect(configs(foreign)).toHaveLength(0);
    expect(configs(ghost)).toHaveLength(0);
    // Once the pod exists, the agent is bound and gets its config.
    await pod(ns, 'ghost', {});
    await vi.waitFor(() => expect(configs(ghost)).toHaveLength(1), WAIT);
  });

  it('reports an invalid collector config as ConfigValid=False and pushes nothing', async () => {
    const ns = await namespace('invalid');
    const op = await bridge(ns);
    await collector(ns, 'broken', { app: 'x' }, 'receivers: { otlp: {\n');
    await collector(ns, 'dangling', { app: 'y' }, { receivers: { otlp: {} }, service: { pipelines: { traces: { receivers: ['otlp'], exporters: ['nope'] } } } });
    await pod(ns, 'x-1', { app: 'x' });
    await pod(ns, 'y-1', { app: 'y' });
    const x = await agent(op, { 'k8s.pod.name': 'x-1', 'k8s.namespace.name': ns });
    const y = await agent(op, { 'k8s.pod.name': 'y-1', 'k8s.namespace.name': ns });
    await vi.waitFor(async () => {
      const b = await getCollector(ns, 'broken');
      expect(cond(b.status, 'ConfigValid')).toMatchObject({ status: 'False', reason: 'InvalidConfig', message: expect.stringMatching(/^config is not valid YAML: .* \(nothing is pushed to the agents it selects\)$/) });
      const d = await getCollector(ns, 'dangling');
      expect(cond(d.status, 'ConfigValid')).toMatchObject({ status: 'False', message: expect.stringContaining('pipeline traces names exporter "nope", which is not defined') });
      expect(cond(d.status, 'Ready')?.status).toBe('False');
    }, WAIT);
    await vi.waitFor(async () => {
      const evs = await core.listNamespacedEvent({ namespace: ns });
      expect(evs.items.some((e) => e.reason === 'InvalidConfig' && e.involvedObject.name === 'broken')).toBe(true);
    }, WAIT);
    expect(configs(x)).toHaveLength(0);
    expect(configs(y)).toHaveLength(0);
    // An edit that breaks a good config keeps the last good one on the agents.
    await patchCollectorSpec(ns, 'dangling', { config: { exporters: { debug: {} } } });
    await vi.waitFor(() => expect(configs(y)).toHaveLength(1), WAIT);
    await patchCollectorSpec(ns, 'dangling', { config: null, configYaml: 'exporters: [' });
    await vi.waitFor(async () => expect(cond((await getCollector(ns, 'dangling')).status, 'ConfigValid')?.message).toMatch(/the last valid config stays in effect/), WAIT);
    expect(configs(y)).toHaveLength(1);
  });

  it('serves an HTTP agent (@elastic/opamp-client-node) bound to its pod by uid', async () => {
    const ns = await namespace('elastic');
    const op = await bridge(ns);
    await collector(ns, 'svc', { app: 'svc' }, { exporters: { otlphttp: { endpoint: 'https://svc.example' } } });
    const uid = await pod(ns, 'svc-1', { app: 'svc' });
    const got: string[] = [];
    const client = createOpAMPClient({
      endpoint: op.opampUrl.http,
      heartbeatIntervalSeconds: 0.3,
      capabilities: BigInt(C.AcceptsRemoteConfig | C.ReportsRemoteConfig),
      onMessage: ({ remoteConfig }) => {
        if (!remoteConfig) return;
        got.push(Buffer.from(remoteConfig.config?.configMap?.['']?.body ?? new Uint8Array()).toString());
        client.setRemoteConfigStatus({ status: RemoteConfigStatuses.RemoteConfigStatuses_APPLIED, lastRemoteConfigHash: remoteConfig.configHash });
      },
    });
    client.setAgentDescription({ identifyingAttributes: { 'service.name': 'svc' }, nonIdentifyingAttributes: { 'k8s.pod.uid': uid } });
    client.start();
    cleanups.push(() => client.shutdown());
    await vi.waitFor(() => expect(got).toHaveLength(1), WAIT);
    expect(parse(got[0]!)).toEqual({ exporters: { otlphttp: { endpoint: 'https://svc.example' } } });
    await vi.waitFor(async () => expect((await getCollector(ns, 'svc')).status).toMatchObject({ matched: 1, applied: 1 }), WAIT);
  });

  it('keeps serving agents while the apiserver is down, and status converges after it returns', async () => {
    const ns = await namespace('outage');
    const op = await bridge(ns);
    await collector(ns, 'c', { app: 'o' }, { exporters: { debug: {} } });
    await pod(ns, 'o-1', { app: 'o' });
    await pod(ns, 'o-2', { app: 'o' });
    const a1 = await agent(op, { 'k8s.pod.name': 'o-1', 'k8s.namespace.name': ns });
    await vi.waitFor(() => expect(configs(a1)).toHaveLength(1), WAIT);
    report(a1, configs(a1)[0]!.hash, 'APPLIED');
    await vi.waitFor(async () => expect((await getCollector(ns, 'c')).status).toMatchObject({ matched: 1, applied: 1 }), WAIT);

    await cp.stopApiServer();
    // While the API is away: a new agent connects and is configured from the cache; the first one fails.
    const a2 = await agent(op, { 'k8s.pod.name': 'o-2', 'k8s.namespace.name': ns });
    await vi.waitFor(() => expect(configs(a2)).toHaveLength(1), WAIT);
    report(a2, configs(a2)[0]!.hash, 'FAILED', 'disk full');
    await vi.waitFor(async () => expect((await view(op, a2.uidString)).remoteConfig.status).toBe('FAILED'), WAIT);
    await cp.startApiServer();

    await vi.waitFor(async () => {
      const c = await getCollector(ns, 'c');
      expect(c.status).toMatchObject({ matched: 2, applied: 1, failed: 1, failingAgents: [{ name: `${ns}/o-2`, message: 'disk full' }] });
    }, { timeout: 60_000, interval: 250 });
    // Informers are back: a change made after the outage is picked up.
    await patchCollectorSpec(ns, 'c', { config: { exporters: { debug: { verbosity: 'detailed' } } } });
    await vi.waitFor(() => expect(configs(a1)).toHaveLength(2), { timeout: 30_000, interval: 100 });
  }, 180_000);

  it('serves the namespaces its namespaceSelector picks, and no others', async () => {
    const home = await namespace('home');
    const team = await namespace('team');
    const stranger = await namespace('stranger');
    await core.patchNamespace({ name: team, body: { metadata: { labels: { 'fleetbridge.dev/served': 'yes' } } } }, MERGE_PATCH);
    const op = await bridge(home, { namespaceSelector: { matchLabels: { 'fleetbridge.dev/served': 'yes' } } });
    for (const ns of [team, stranger]) {
      await collector(ns, 'c', {}, { exporters: { debug: { verbosity: ns === team ? 'detailed' : 'basic' } } });
      await pod(ns, 'p', {});
    }
    const inTeam = await agent(op, { 'k8s.pod.name': 'p', 'k8s.namespace.name': team });
    const inStranger = await agent(op, { 'k8s.pod.name': 'p', 'k8s.namespace.name': stranger });
    await vi.waitFor(() => expect(configs(inTeam).at(-1)?.cfg).toEqual({ exporters: { debug: { verbosity: 'detailed' } } }), WAIT);
    await vi.waitFor(async () => expect((await view(op, inStranger.uidString)).identityError).toBe(`the agent claims a pod in namespace ${stranger}, which this bridge does not serve`), WAIT);
    await vi.waitFor(async () => expect((await getCollector(team, 'c')).status).toMatchObject({ matched: 1 }), WAIT);
    expect((await getCollector(stranger, 'c')).status).toBeUndefined();
    // Labelling the namespace brings it in.
    await core.patchNamespace({ name: stranger, body: { metadata: { labels: { 'fleetbridge.dev/served': 'yes' } } } }, MERGE_PATCH);
    await vi.waitFor(() => expect(configs(inStranger).at(-1)?.cfg).toEqual({ exporters: { debug: { verbosity: 'basic' } } }), WAIT);
  });

  it('applies an OpAMPBridge edit live: a namespaceSelector added serves the namespaces it picks, and removed serves its own again', async () => {
    const home = await namespace('live-home');
    const team = await namespace('live-team');
    await core.patchNamespace({ name: team, body: { metadata: { labels: { 'fleetbridge.dev/live': 'yes' } } } }, MERGE_PATCH);
    const op = await bridge(home);
    await collector(team, 'c', {}, { exporters: { debug: { verbosity: 'detailed' } } });
    await pod(team, 'p', {});
    const a = await agent(op, { 'k8s.pod.name': 'p', 'k8s.namespace.name': team });
    await vi.waitFor(async () => expect((await view(op, a.uidString)).identityError).toEqual(expect.any(String)), WAIT);
    expect(configs(a)).toEqual([]);
    const getBridge = async () => (await custom.getNamespacedCustomObject({ group: G, version: V, namespace: home, plural: 'opampbridges', name: 'fb' })) as { metadata: { generation: number }; status?: Record<string, any> };
    await custom.patchNamespacedCustomObject({ group: G, version: V, namespace: home, plural: 'opampbridges', name: 'fb', body: { spec: { namespaceSelector: { matchLabels: { 'fleetbridge.dev/live': 'yes' } } } } }, MERGE_PATCH);
    await vi.waitFor(() => expect(configs(a).at(-1)?.cfg).toEqual({ exporters: { debug: { verbosity: 'detailed' } } }), WAIT);
    expect((await view(op, a.uidString)).identityError).toBeNull();
    await vi.waitFor(async () => expect((await getCollector(team, 'c')).status).toMatchObject({ matched: 1 }), WAIT);
    await vi.waitFor(async () => expect((await getBridge()).status).toMatchObject({ observedGeneration: 2, conditions: expect.arrayContaining([expect.objectContaining({ type: 'Ready', reason: 'Serving' })]) }), WAIT);
    // Removing the selector serves the bridge's own namespace only again.
    const obj = await getBridge();
    await custom.replaceNamespacedCustomObject({ group: G, version: V, namespace: home, plural: 'opampbridges', name: 'fb', body: { ...obj, spec: { heartbeatIntervalSeconds: 1, auth: { mode: 'none' } } } });
    await vi.waitFor(async () => expect((await view(op, a.uidString)).identityError).toEqual(expect.any(String)), WAIT);
    await vi.waitFor(async () => expect((await getBridge()).status).toMatchObject({ observedGeneration: 3 }), WAIT);
  });

  it('lets only one of two replicas write status, and hands over when the leader stops', async () => {
    const ns = await namespace('ha');
    const first = await bridge(ns);
    const second = await startTestOperator({ kc, namespace: ns, logger: pino({ level: 'silent' }), adminAuth: 'none', identity: `second-${ns}`, leaderElection: true, cleanups });
    await vi.waitFor(() => expect([first.isLeader(), second.isLeader()].filter(Boolean)).toHaveLength(1), WAIT);
    const [leader, follower] = first.isLeader() ? [first, second] : [second, first];
    await leader.stop();
    await vi.waitFor(() => expect(follower.isLeader()).toBe(true), { timeout: 30_000, interval: 200 });
    const lease = await kc.makeApiClient((await import('@kubernetes/client-node')).CoordinationV1Api).readNamespacedLease({ namespace: ns, name: 'fleetbridge-fb' });
    expect(lease.spec?.holderIdentity).toBe(follower === first ? `test-${ns}` : `second-${ns}`);
  }, 60_000);
});
