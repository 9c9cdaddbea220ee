/**
 * End to end with real OpenTelemetry Collectors (issue 4): the operator on a real kube-apiserver
 * (the run's shared control plane), Pod objects in the API, and for each pod a real OpAMP
 * Supervisor (contrib v0.149.0) running a real collector (v0.145.0) — the sidecar of
 * examples/kubernetes/sidecar.yaml, configured from that file's supervisor.yaml (its capabilities,
 * validate_config and its Downward-API description: POD_NAMESPACE, POD_NAME, POD_UID are the
 * supervisor's environment here, as the kubelet would set them).
 *
 * Pods never run (no kubelet), so the three "sidecars" of a test share this host. In a pod the
 * pushed config would listen on localhost:4318; here every agent gets the same config (one Collector,
 * one hash) and must not collide, so the OTLP/HTTP receiver listens on a Unix socket with a relative
 * path (`otlp.sock`) and the file exporter writes a relative file: each supervisor, and so each
 * collector, runs in its own directory. Everything checked is what the collector really did: the
 * records its file exporter wrote, with the attribute only the pushed config adds.
 *
 * Needs Go (tools/k8s and tools/otel build the binaries once, cached in .cache/).
 */
import { randomUUID } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { startTestOperator, type RunningOperator } from '../harness/kube/operator.js';
import type { AgentView } from '../../src/fleet/view-types.js';
import { skipUnlessOnCi } from '../harness/tools.js';
import { controlPlaneMissingReason, controlPlaneVersions } from '../harness/kube/binaries.js';
import { createTestNamespace, kubeRequest } from '../harness/kube/control-plane.js';
import { getSharedControlPlane, type SharedControlPlane } from '../harness/kube/shared.js';
import { installCrds } from '../harness/kube/crds.js';
import { ensureOtelBinaries, otelMissingReason, otelVersions } from '../harness/otel/binaries.js';
import { readFileExporterLogs, sendOtlpLog, type ExportedLogRecord } from '../harness/otel/otlp.js';
import { startCollectorWithOpampExtension, startSupervisedCollector, type SupervisedCollector } from '../harness/otel/supervised-collector.js';

const FILE = 'test/integration/e2e-kube-otel.test.ts';
const SIDECAR_MANIFEST = 'examples/kubernetes/sidecar.yaml';
const skip = skipUnlessOnCi(FILE, otelMissingReason() ?? controlPlaneMissingReason());
const G = 'fleetbridge.dev';
const V = 'v1alpha1';
/** Agents: a config change takes config_apply_timeout (3 s) plus a collector restart before APPLIED. */
const AGENT_WAIT = { timeout: 60_000, interval: 100 };
const WAIT = { timeout: 20_000, interval: 100 };
const APP_LABEL = { 'app.kubernetes.io/name': 'checkout' };
/** Relative: each collector's working directory is its supervisor's (one per "pod"). */
const SOCKET = 'otlp.sock';

type Json = Record<string, any>;

/** The documents of the sidecar manifest, and the Supervisor config its ConfigMap carries. */
function sidecarManifest(): { configMap: Json; deployment: Json; sidecar: Json; supervisor: Json; all: Json[] } {
  const all = parseAllDocuments(readFileSync(SIDECAR_MANIFEST, 'utf8'))
    .map((d) => {
      if (d.errors.length > 0) throw new Error(`${SIDECAR_MANIFEST}: ${d.errors.map((e) => e.message).join('; ')}`);
      return d.toJS() as Json | null;
    })
    .filter((d): d is Json => d !== null);
  const configMap = all.find((d) => d['kind'] === 'ConfigMap');
  const deployment = all.find((d) => d['kind'] === 'Deployment' || d['kind'] === 'Pod');
  if (!configMap || !deployment) throw new Error(`${SIDECAR_MANIFEST} needs a ConfigMap and a Deployment (or Pod)`);
  const podSpec = (deployment['kind'] === 'Pod' ? deployment['spec'] : deployment['spec']['template']['spec']) as Json;
  const sidecar = (podSpec['containers'] as Json[]).find((c) => JSON.stringify(c['command'] ?? c['args'] ?? []).includes('opampsupervisor'));
  if (!sidecar) throw new Error(`${SIDECAR_MANIFEST}: no container runs opampsupervisor`);
  return { configMap, deployment, sidecar, supervisor: parse(configMap['data']['supervisor.yaml'] as string) as Json, all };
}

describe('the sidecar manifest (examples/kubernetes/sidecar.yaml)', () => {
  it('carries a supervisor.yaml that takes and reports remote config, validates it, and names its pod from the Downward API', () => {
    const { configMap, deployment, sidecar, supervisor } = sidecarManifest();
    expect(supervisor['server']['endpoint']).toMatch(/^ws:\/\/fleetbridge\.[a-z0-9-]+\.svc:4320\/v1\/opamp$/);
    expect(supervisor['capabilities']).toMatchObject({
      accepts_remote_config: true,
      reports_remote_config: true,
      reports_effective_config: true,
      reports_health: true,
    });
    expect(supervisor['agent']['validate_config']).toBe(true);
    expect(supervisor['agent']['description']['non_identifying_attributes']).toEqual({
      'k8s.namespace.name': '${env:POD_NAMESPACE}',
      'k8s.pod.name': '${env:POD_NAME}',
      'k8s.pod.uid': '${env:POD_UID}',
    });
    // The variables come from the Downward API, in the container that runs the Supervisor.
    const fieldOf = (name: string) => (sidecar['env'] as Json[]).find((e) => e['name'] === name)?.['valueFrom']?.['fieldRef']?.['fieldPath'];
    expect([fieldOf('POD_NAMESPACE'), fieldOf('POD_NAME'), fieldOf('POD_UID')]).toEqual(['metadata.namespace', 'metadata.name', 'metadata.uid']);
    // The container reads the ConfigMap's supervisor.yaml from where its --config says.
    const args = [...(sidecar['command'] ?? []), ...(sidecar['args'] ?? [])] as string[];
    const configPath = args[args.indexOf('--config') + 1]!;
    const mount = (sidecar['volumeMounts'] as Json[]).find((m) => configPath.startsWith(`${m['mountPath']}/`));
    expect(mount, `a volume mounted at the directory of ${configPath}`).toBeDefined();
    const podSpec = deployment['kind'] === 'Pod' ? deployment['spec'] : deployment['spec']['template']['spec'];
    const volume = (podSpec['volumes'] as Json[]).find((v) => v['name'] === mount!['name']);
    expect(volume?.['configMap']?.['name']).toBe(configMap['metadata']['name']);
    expect(configPath.slice(String(mount!['mountPath']).length + 1)).toBe('supervisor.yaml');
    // The Supervisor's storage is writable and its own.
    const storage = supervisor['storage']['directory'] as string;
    expect((sidecar['volumeMounts'] as Json[]).some((m) => storage === m['mountPath'] || storage.startsWith(`${m['mountPath']}/`))).toBe(true);
  });
});

interface Sidecar {
  pod: string;
  podUid: string;
  dir: string;
  socket: string;
  agent: SupervisedCollector;
}

interface Fleet {
  ns: string;
  op: RunningOperator;
  sidecars: Sidecar[];
}

describe.skipIf(skip)('the operator with real OpenTelemetry Collectors (Supervisor sidecars)', () => {
  let cp: SharedControlPlane;
  let kc: KubeConfig;
  let core: CoreV1Api;
  let custom: CustomObjectsApi;
  let root: string;
  let supervisorYaml: Json;
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    const t0 = Date.now();
    const bins = await ensureOtelBinaries({ log: (l) => console.log(`[e2e] ${l}`) });
    cp = await getSharedControlPlane();
    kc = new KubeConfig();
    kc.loadFromString(cp.kubeconfigYaml);
    core = kc.makeApiClient(CoreV1Api);
    custom = kc.makeApiClient(CustomObjectsApi);
    await installCrds(cp);
    supervisorYaml = sidecarManifest().supervisor;
    // Short: a Unix socket path must stay under 108 bytes.
    root = await mkdtemp(join(tmpdir(), 'fb-e2e-'));
    const version = await kubeRequest<{ gitVersion: string }>(cp, 'GET', '/version');
    console.log(
      `[e2e] ready in ${Date.now() - t0} ms; kube-apiserver ${version.body.gitVersion} (control plane ${JSON.stringify(controlPlaneVersions())}, scope ${cp.scope}); ` +
        `otel ${JSON.stringify(otelVersions())}; binaries ${JSON.stringify(bins)}`,
    );
  }, 40 * 60_000);

  afterEach(async () => {
    // Stop this test's agents and operators before the next test starts its own (two cores).
    const list = cleanups.splice(0).reverse();
    await Promise.allSettled(list.map((c) => c()));
  }, 60_000);

  afterAll(async () => {
    // FLEETBRIDGE_E2E_KEEP=1 keeps the agents' folders (supervisor.yaml, supervisor.log, storage/, the exported files).
    if (root && process.env['FLEETBRIDGE_E2E_KEEP'] === '1') console.log(`[e2e] kept ${root}`);
    else if (root) await rm(root, { recursive: true, force: true });
  });

  // ---- helpers (after test/integration/kube-operator.test.ts) ---------------------------------

  async function bridge(ns: string): Promise<RunningOperator> {
    await custom.createNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'opampbridges', body: { apiVersion: `${G}/${V}`, kind: 'OpAMPBridge', metadata: { name: 'fleetbridge' }, spec: { heartbeatIntervalSeconds: 5, auth: { mode: 'none' } } } });
    const op = await startTestOperator({ kc, namespace: ns, bridgeName: 'fleetbridge', adminAuth: 'none', identity: `e2e-${ns}`, leaderElection: true, cleanups });
    return op;
  }

  async function collector(ns: string, name: string, matchLabels: Record<string, string>, config: unknown): Promise<void> {
    await custom.createNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'collectors', body: { apiVersion: `${G}/${V}`, kind: 'Collector', metadata: { name }, spec: { selector: { matchLabels }, config } } });
  }

  /** Edits a Collector as `kubectl edit` would: the given spec fields replace the old ones whole. */
  async function patchCollectorSpec(ns: string, name: string, spec: Record<string, unknown>): Promise<void> {
    const obj = (await custom.getNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'collectors', name })) as { spec: Record<string, unknown> };
    await custom.replaceNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'collectors', name, body: { ...obj, spec: { ...obj.spec, ...spec } } });
  }

  async function getCollector(ns: string, name: string): Promise<{ metadata: { generation: number }; status?: Json }> {
    return (await custom.getNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'collectors', name })) as never;
  }

  /** A Pod object as the Deployment of the sidecar manifest would create it (it never runs: no kubelet). */
  async function pod(ns: string, name: string, labels: Record<string, string>): Promise<string> {
    const p = await core.createNamespacedPod({
      namespace: ns,
      body: { metadata: { name, labels }, spec: { containers: [{ name: 'app', image: 'registry.example.com/shop/checkout:1.0.0' }, { name: 'otelcol', image: 'registry.example.com/fleetbridge/otelcol-supervised:0.145.0' }] } },
    });
    return p.metadata!.uid!;
  }

  async function view(op: RunningOperator, uid: string): Promise<AgentView> {
    const r = await fetch(`${op.apiUrl}/api/v1/agents/${uid}`);
    if (r.status !== 200) throw new Error(`GET /api/v1/agents/${uid}: ${r.status} ${await r.text()}`);
    return (await r.json()) as AgentView;
  }

  const cond = (st: Json | undefined, type: string) => (st?.['conditions'] as { type: string; status: string; reason: string; message: string }[] | undefined)?.find((c) => c.type === type);

  /** The pipeline every sidecar gets: OTLP/HTTP in (Unix socket), an attribute only this config adds, a file out. */
  const pipeline = (marker: string, exporters: Record<string, unknown> = { file: { path: `logs-${marker}.jsonl`, flush_interval: '200ms' } }) => ({
    receivers: { otlp: { protocols: { http: { endpoint: SOCKET, transport: 'unix' } } } },
    processors: {
      'attributes/e2e': { actions: [{ key: 'e2e.marker', value: marker, action: 'insert' }] },
      batch: { timeout: '200ms' },
    },
    exporters,
    service: { pipelines: { logs: { receivers: ['otlp'], processors: ['attributes/e2e', 'batch'], exporters: Object.keys(exporters) } } },
  });

  /** A Supervisor + collector standing in for the sidecar of pod `name`, configured as the manifest's supervisor.yaml. */
  async function startSidecar(op: RunningOperator, ns: string, name: string, podUid: string, opts: { localOverride?: Record<string, unknown> } = {}): Promise<Sidecar> {
    const dir = join(root, `${ns.slice(-8)}-${name}`);
    const agent = await startSupervisedCollector({
      endpoint: op.opampUrl.websocket,
      workDir: dir,
      env: { POD_NAMESPACE: ns, POD_NAME: name, POD_UID: podUid },
      validateConfig: supervisorYaml['agent']['validate_config'] === true,
      extraConfig: { capabilities: supervisorYaml['capabilities'], agent: { description: supervisorYaml['agent']['description'] } },
      ...opts,
    });
    cleanups.push(() => agent.stop());
    return { pod: name, podUid, dir, socket: join(dir, SOCKET), agent };
  }

  /** What to print when a wait fails: the agents' API views and the supervisors' output tails. */
  async function diagnostics(op: RunningOperator, sidecars: Sidecar[]): Promise<string> {
    const parts: string[] = [];
    for (const s of sidecars) {
      const v = await view(op, s.agent.instanceUid).catch((e: unknown) => String(e));
      const shown = typeof v === 'string' ? v : JSON.stringify({ ...v, effectiveConfig: v.effectiveConfig ? '(present)' : null, availableComponents: undefined });
      parts.push(`--- ${s.pod} (${s.agent.instanceUid}) view: ${shown.slice(0, 3000)}\nsupervisor output tail:\n${s.agent.logs().slice(-3000)}`);
    }
    return parts.join('\n');
  }

  async function explain<T>(op: RunningOperator, sidecars: Sidecar[], what: string, p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (err) {
      throw new Error(`${what}: ${(err as Error).message}\n${await diagnostics(op, sidecars)}`);
    }
  }

  /** Waits until every sidecar reports APPLIED for its desired hash (not `notHash`) and is healthy. */
  function waitAllInSync(f: Fleet, notHash: string | null = null, sidecars = f.sidecars): Promise<AgentView[]> {
    return explain(
      f.op,
      sidecars,
      'agents APPLIED and healthy',
      vi.waitFor(async () => {
        const views = await Promise.all(sidecars.map((s) => view(f.op, s.agent.instanceUid)));
        for (const v of views) {
          expect(v.remoteConfig.desiredHash).not.toBe(notHash);
          expect(v.remoteConfig, v.instanceUid).toMatchObject({ inSync: true, status: 'APPLIED' });
          expect(v.health?.healthy, v.instanceUid).toBe(true);
        }
        return views;
      }, AGENT_WAIT),
    );
  }

  /** Sends log records to a sidecar's collector until one shows up in its file exporter's `logs-<marker>.jsonl`. */
  function sendUntilExported(f: Fleet, s: Sidecar, marker: string, timeout = 20_000, sendEveryMs = 1000): Promise<ExportedLogRecord> {
    const body = `e2e-${s.pod}-${randomUUID()}`;
    let lastSent = 0;
    return explain(
      f.op,
      [s],
      `a record sent to ${s.pod} in logs-${marker}.jsonl`,
      vi.waitFor(
        async () => {
          const found = readFileExporterLogs(join(s.dir, `logs-${marker}.jsonl`)).find((r) => r.body === body);
          if (found) return found;
          if (Date.now() - lastSent >= sendEveryMs) {
            lastSent = Date.now();
            await sendOtlpLog({ socketPath: s.socket }, { body, attributes: { 'e2e.pod': s.pod } }, 2000).catch(() => 0);
          }
          throw new Error(`"${body}" not yet in ${join(s.dir, `logs-${marker}.jsonl`)}`);
        },
        { timeout, interval: 100 },
      ),
    );
  }

  /**
   * A namespace with its own bridge, `n` Pod objects with the app label and a sidecar for each; once
   * every sidecar is connected, bound to its pod and healthy (its Supervisor has finished starting),
   * the Collector "pipeline" selecting that label is applied. Resolves when every sidecar APPLIED it.
   *
   * The Collector comes last on purpose: the Supervisor v0.149.0 loses a config pushed while it is
   * still starting (it connects before it composes its initial config from disk, which then
   * overwrites the one just received; it still reports APPLIED for the pushed hash). Seen here on
   * about 1 agent start in 30 when the Collector existed first; Fleetbridge reports such an agent
   * as drifted ("receivers.otlp: missing", ...).
   */
  async function sidecarFleet(prefix: string, n: number, config: unknown, overrides: Record<number, Record<string, unknown>> = {}): Promise<Fleet> {
    const ns = await createTestNamespace(cp, prefix);
    const op = await bridge(ns);
    const names = Array.from({ length: n }, (_, i) => `checkout-${i}`);
    const uids = await Promise.all(names.map((name) => pod(ns, name, { ...APP_LABEL, 'pod-template-hash': 'e2e' })));
    const t0 = Date.now();
    const sidecars = await Promise.all(names.map((name, i) => startSidecar(op, ns, name, uids[i]!, overrides[i] ? { localOverride: overrides[i] } : {})));
    const f = { ns, op, sidecars };
    await explain(
      op,
      sidecars,
      'sidecars connected, bound and healthy before any Collector exists',
      vi.waitFor(async () => {
        for (const s of sidecars) {
          const v = await view(op, s.agent.instanceUid);
          expect(v).toMatchObject({ connected: true, pod: `${ns}/${s.pod}`, identityError: null, remoteConfig: { desiredHash: null } });
          expect(v.health?.healthy).toBe(true);
        }
      }, AGENT_WAIT),
    );
    const t1 = Date.now();
    await collector(ns, 'pipeline', APP_LABEL, config);
    await waitAllInSync(f);
    console.log(`[e2e] ${ns}: ${n} supervisors started -> connected, bound, healthy in ${t1 - t0} ms; Collector created -> all APPLIED + healthy in ${Date.now() - t1} ms`);
    return f;
  }

  // ---- the tests --------------------------------------------------------------------------------

  it('the sidecar manifest is accepted by the API server as it stands (server-side dry run, strict field validation)', async () => {
    const ns = await createTestNamespace(cp, 'e2e-manifest');
    const path: Record<string, string> = { ConfigMap: `/api/v1/namespaces/${ns}/configmaps`, Deployment: `/apis/apps/v1/namespaces/${ns}/deployments`, Pod: `/api/v1/namespaces/${ns}/pods` };
    for (const doc of sidecarManifest().all) {
      expect(path[doc['kind']], `a path for ${doc['kind']}`).toBeDefined();
      const r = await kubeRequest(cp, 'POST', `${path[doc['kind']]}?dryRun=All&fieldValidation=Strict`, doc);
      expect(r.status, `${doc['kind']} ${doc['metadata']?.['name']}: ${r.text}`).toBe(201);
    }
  });

  it('three sidecars bound to their pods get the Collector\'s pipeline, and their collectors run it', async () => {
    const f = await sidecarFleet('e2e-apply', 3, pipeline('v1'));
    const views = await Promise.all(f.sidecars.map((s) => view(f.op, s.agent.instanceUid)));
    views.forEach((v, i) => {
      const s = f.sidecars[i]!;
      // The agent description carries the pod, from the environment, as the manifest's supervisor.yaml says.
      expect(v.description?.nonIdentifying).toMatchObject({ 'k8s.namespace.name': f.ns, 'k8s.pod.name': s.pod, 'k8s.pod.uid': s.podUid });
      expect(v).toMatchObject({ connected: true, pod: `${f.ns}/${s.pod}`, namespace: f.ns, identityError: null, labels: APP_LABEL });
      expect(v.capabilities.names).toEqual(expect.arrayContaining(['AcceptsRemoteConfig', 'ReportsRemoteConfig', 'ReportsEffectiveConfig', 'ReportsHealth']));
      expect(v.remoteConfig.collectors).toEqual([`${f.ns}/pipeline`]);
    });
    // The new pipeline is live: what each collector's file exporter wrote carries the pushed attribute.
    const recs = await Promise.all(f.sidecars.map((s) => sendUntilExported(f, s, 'v1')));
    recs.forEach((r, i) => expect(r.attributes).toMatchObject({ 'e2e.marker': 'v1', 'e2e.pod': f.sidecars[i]!.pod }));
    await vi.waitFor(async () => {
      const c = await getCollector(f.ns, 'pipeline');
      expect(c.status).toMatchObject({ observedGeneration: c.metadata.generation, matched: 3, connected: 3, applied: 3, applying: 0, failed: 0, healthy: 3, unhealthy: 0, drifted: 0 });
      // Which agent versions run it, as the collectors identify themselves.
      expect(c.status?.['agentVersions']).toEqual([{ version: expect.stringMatching(/ 0\.145\.0$/), agents: 3 }]);
      expect(cond(c.status, 'Ready')).toMatchObject({ status: 'True', reason: 'AllApplied' });
      expect(cond(c.status, 'Degraded')?.status).toBe('False');
      expect(cond(c.status, 'ConfigValid')?.status).toBe('True');
    }, WAIT);
    // Nothing drifted: the effective config each collector reports contains the pushed one (judged
    // once an effective config reported with or after APPLIED arrives, or 5 s after APPLIED).
    for (const s of f.sidecars) await vi.waitFor(async () => expect((await view(f.op, s.agent.instanceUid)).drift).toEqual({ drifted: false, differences: [] }), WAIT);
  }, 180_000);

  it('sidecars that start after their Collector exists (the usual order) run it, or are reported drifted when the Supervisor lost it', async () => {
    const ns = await createTestNamespace(cp, 'e2e-order');
    const op = await bridge(ns);
    await collector(ns, 'pipeline', APP_LABEL, pipeline('v1'));
    const names = ['checkout-0', 'checkout-1', 'checkout-2', 'checkout-3'];
    const uids = await Promise.all(names.map((name) => pod(ns, name, APP_LABEL)));
    const t0 = Date.now();
    const sidecars = await Promise.all(names.map((name, i) => startSidecar(op, ns, name, uids[i]!)));
    const f = { ns, op, sidecars };
    await waitAllInSync(f);
    console.log(`[e2e] ${ns}: 4 supervisors started with the Collector in place -> all APPLIED + healthy in ${Date.now() - t0} ms`);
    // Each agent that says APPLIED either really runs the pipeline, or Fleetbridge says it does not.
    let lost = 0;
    for (const s of sidecars) {
      const v = await vi.waitFor(async () => {
        const x = await view(op, s.agent.instanceUid);
        expect(x.drift).not.toBeNull();
        return x;
      }, WAIT);
      if (v.drift!.drifted) {
        lost++;
        console.log(`[e2e] ${s.pod}: the Supervisor reported APPLIED but lost the pushed config at start-up; drift: ${JSON.stringify(v.drift)}`);
        expect(v.drift!.differences).toContain('receivers.otlp: missing');
      } else {
        expect((await sendUntilExported(f, s, 'v1')).attributes['e2e.marker']).toBe('v1');
      }
    }
    await vi.waitFor(async () => {
      const c = await getCollector(ns, 'pipeline');
      expect(c.status).toMatchObject({ matched: 4, applied: 4, failed: 0, healthy: 4, drifted: lost });
      if (lost === 0) expect(cond(c.status, 'Ready')).toMatchObject({ status: 'True', reason: 'AllApplied' });
      else expect(cond(c.status, 'Degraded')).toMatchObject({ status: 'True', reason: 'Drifted' });
    }, WAIT);
    console.log(`[e2e] ${ns}: ${lost} of 4 agents lost the config pushed while their Supervisor started`);
  }, 180_000);

  it('an edit of the Collector goes live on all three; status.configHash is the hash the agents report', async () => {
    const f = await sidecarFleet('e2e-edit', 3, pipeline('v1'));
    const before = (await view(f.op, f.sidecars[0]!.agent.instanceUid)).remoteConfig.desiredHash;
    const pidsBefore = f.sidecars.map((s) => s.agent.collectorPid());
    const t0 = performance.now();
    await patchCollectorSpec(f.ns, 'pipeline', { config: pipeline('v2') });
    // From the edit on, keep sending to every sidecar: the first record carrying v2 is when the new value is live.
    const dataLive = Promise.all(f.sidecars.map((s) => sendUntilExported(f, s, 'v2', 60_000, 200).then((r) => ({ r, ms: performance.now() - t0 }))));
    dataLive.catch(() => undefined); // awaited below; not unhandled if the APPLIED wait fails first
    const applied = await waitAllInSync(f, before);
    const toApplied = performance.now() - t0;
    const live = await dataLive;
    for (const { r } of live) expect(r.attributes['e2e.marker']).toBe('v2');
    console.log(
      `[e2e] edit -> all 3 APPLIED: ${Math.round(toApplied)} ms (config_apply_timeout 3 s included); ` +
        `edit -> data with the new value: ${live.map(({ ms }, i) => `${f.sidecars[i]!.pod} ${Math.round(ms)} ms`).join(', ')} (all: ${Math.round(Math.max(...live.map((l) => l.ms)))} ms)`,
    );
    const hash = applied[0]!.remoteConfig.reportedHash;
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(hash).not.toBe(before);
    for (const v of applied) expect(v.remoteConfig).toMatchObject({ desiredHash: hash, reportedHash: hash });
    // The supervisors stayed; their collectors were restarted with the new config.
    f.sidecars.forEach((s, i) => {
      expect(s.agent.collectorPid()).not.toBe(pidsBefore[i]);
      expect(process.kill(s.agent.pid, 0)).toBe(true);
    });
    await vi.waitFor(async () => {
      const c = await getCollector(f.ns, 'pipeline');
      expect(c.status).toMatchObject({ observedGeneration: c.metadata.generation, configHash: hash, matched: 3, applied: 3, failed: 0, healthy: 3 });
      expect(cond(c.status, 'Ready')).toMatchObject({ status: 'True', reason: 'AllApplied' });
    }, WAIT);
  }, 180_000);

  it('a config the collector rejects: FAILED with the validator\'s message, Degraded with an Event, the old pipeline keeps running; a fix recovers', async () => {
    const f = await sidecarFleet('e2e-reject', 3, pipeline('v1'));
    for (const s of f.sidecars) await sendUntilExported(f, s, 'v1');
    const good = (await view(f.op, f.sidecars[0]!.agent.instanceUid)).remoteConfig.desiredHash;
    const pidsBefore = f.sidecars.map((s) => s.agent.collectorPid());
    const t0 = performance.now();
    await patchCollectorSpec(f.ns, 'pipeline', { config: pipeline('bad', { 'doesnotexist/x': {} }) });
    const failed = await explain(
      f.op,
      f.sidecars,
      'FAILED for the rejected config',
      vi.waitFor(async () => {
        const views = await Promise.all(f.sidecars.map((s) => view(f.op, s.agent.instanceUid)));
        for (const v of views) {
          expect(v.remoteConfig.desiredHash).not.toBe(good);
          expect(v.remoteConfig).toMatchObject({ reportedHash: v.remoteConfig.desiredHash, status: 'FAILED', inSync: false });
        }
        return views;
      }, AGENT_WAIT),
    );
    console.log(`[e2e] rejected config -> all 3 FAILED in ${Math.round(performance.now() - t0)} ms; message: ${JSON.stringify(failed[0]!.remoteConfig.errorMessage)}`);
    for (const v of failed) {
      // The validator's (`otelcol validate`) own words, passed on by the Supervisor.
      expect(v.remoteConfig.errorMessage).toMatch(/^configuration validation failed: /);
      expect(v.remoteConfig.errorMessage).toContain('unknown type: "doesnotexist"');
      expect(v.health?.healthy).toBe(true);
    }
    await vi.waitFor(async () => {
      const c = await getCollector(f.ns, 'pipeline');
      expect(c.status).toMatchObject({ observedGeneration: c.metadata.generation, matched: 3, applied: 0, failed: 3, healthy: 3 });
      const failing = c.status!['failingAgents'] as { name: string; message: string; instanceUid: string }[];
      expect(failing.map((x) => x.name).sort()).toEqual(f.sidecars.map((s) => `${f.ns}/${s.pod}`).sort());
      for (const x of failing) expect(x.message).toBe(failed.find((v) => v.instanceUid === x.instanceUid)!.remoteConfig.errorMessage);
      const degraded = cond(c.status, 'Degraded');
      expect(degraded).toMatchObject({ status: 'True', reason: 'ApplyFailed' });
      expect(degraded!.message).toMatch(new RegExp(`^3 of 3 agents failed to apply the config; ${f.ns}/checkout-\\d: configuration validation failed: `));
      expect(degraded!.message).toContain('unknown type: "doesnotexist"');
      expect(cond(c.status, 'Ready')).toMatchObject({ status: 'False', reason: 'ApplyFailed' });
    }, WAIT);
    const event = await vi.waitFor(async () => {
      const evs = await core.listNamespacedEvent({ namespace: f.ns });
      const e = evs.items.find((x) => x.reason === 'ApplyFailed' && x.involvedObject.name === 'pipeline' && x.involvedObject.kind === 'Collector' && x.type === 'Warning');
      expect(e?.message).toContain('unknown type: "doesnotexist"');
      return e!;
    }, WAIT);
    console.log(`[e2e] ApplyFailed Event (count ${event.count}): ${event.message}`);
    const applyFailed = (await core.listNamespacedEvent({ namespace: f.ns })).items.filter((x) => x.reason === 'ApplyFailed');
    console.log(`[e2e] ApplyFailed Events so far: ${applyFailed.length} (${applyFailed.map((x) => `count ${x.count}: ${x.message?.slice(0, 40)}...`).join(' | ')})`);
    // The previous collectors keep running the last good pipeline: same processes, and data still carries v1.
    f.sidecars.forEach((s, i) => expect(s.agent.collectorPid()).toBe(pidsBefore[i]));
    for (const s of f.sidecars) expect((await sendUntilExported(f, s, 'v1')).attributes['e2e.marker']).toBe('v1');

    // The fix goes out to the agents that failed, and the Collector is Ready again.
    const t1 = performance.now();
    await patchCollectorSpec(f.ns, 'pipeline', { config: pipeline('v3') });
    await waitAllInSync(f, failed[0]!.remoteConfig.desiredHash);
    console.log(`[e2e] fix after FAILED -> all 3 APPLIED in ${Math.round(performance.now() - t1)} ms`);
    for (const s of f.sidecars) expect((await sendUntilExported(f, s, 'v3')).attributes['e2e.marker']).toBe('v3');
    await vi.waitFor(async () => {
      const c = await getCollector(f.ns, 'pipeline');
      expect(c.status).toMatchObject({ matched: 3, applied: 3, failed: 0, failingAgents: [] });
      expect(cond(c.status, 'Ready')).toMatchObject({ status: 'True', reason: 'AllApplied' });
      expect(cond(c.status, 'Degraded')?.status).toBe('False');
    }, WAIT);
  }, 240_000);

  it('a collector killed under its supervisor shows unhealthy until the supervisor restarts it', async () => {
    const f = await sidecarFleet('e2e-health', 2, pipeline('v1'));
    const [victim, other] = f.sidecars as [Sidecar, Sidecar];
    const pid = await victim.agent.waitForCollectorPid();
    const t0 = performance.now();
    process.kill(pid, 'SIGKILL');
    // A SIGKILLed collector leaves its Unix socket file behind and the restarted one could not bind
    // it. That file is an artifact of running three "pods" on one host (in a pod the receiver is on
    // TCP in the pod's own network namespace), so the test removes it; the supervisor restarts the
    // collector 5 s after the exit.
    rmSync(victim.socket, { force: true });
    const down = await explain(
      f.op,
      [victim],
      'the killed collector reported unhealthy',
      vi.waitFor(async () => {
        const v = await view(f.op, victim.agent.instanceUid);
        expect(v.health?.healthy).toBe(false);
        return v;
      }, WAIT),
    );
    const toUnhealthy = performance.now() - t0;
    expect(down.health?.lastError).toMatch(new RegExp(`Agent process PID=${pid} exited unexpectedly`));
    expect(down.connected).toBe(true); // the supervisor is still there
    await vi.waitFor(async () => {
      const c = await getCollector(f.ns, 'pipeline');
      expect(c.status).toMatchObject({ matched: 2, connected: 2, healthy: 1, unhealthy: 1 });
    }, WAIT);
    expect((await view(f.op, other.agent.instanceUid)).health?.healthy).toBe(true);

    const newPid = await victim.agent.waitForCollectorPid({ notPid: pid, timeoutMs: 30_000 });
    await explain(
      f.op,
      [victim],
      'the restarted collector reported healthy',
      vi.waitFor(async () => expect((await view(f.op, victim.agent.instanceUid)).health?.healthy).toBe(true), { timeout: 30_000, interval: 100 }),
    );
    const toHealthy = performance.now() - t0;
    await vi.waitFor(async () => {
      const c = await getCollector(f.ns, 'pipeline');
      expect(c.status).toMatchObject({ matched: 2, applied: 2, healthy: 2, unhealthy: 0 });
    }, WAIT);
    console.log(`[e2e] SIGKILL of collector ${pid} -> unhealthy in the API ${Math.round(toUnhealthy)} ms; restarted as ${newPid}, healthy again ${Math.round(toHealthy)} ms after the kill`);
    // And it runs the pushed pipeline again.
    expect((await sendUntilExported(f, victim, 'v1')).attributes['e2e.marker']).toBe('v1');
  }, 180_000);

  it('a sidecar whose local config overrides the pushed one is reported drifted, and the Collector Degraded (Drifted)', async () => {
    // checkout-1's supervisor merges a local file after $REMOTE_CONFIG that sets the marker itself.
    const f = await sidecarFleet('e2e-drift', 2, pipeline('v1'), {
      1: { processors: { 'attributes/e2e': { actions: [{ key: 'e2e.marker', value: 'local-override', action: 'insert' }] } } },
    });
    const [clean, drifted] = f.sidecars as [Sidecar, Sidecar];
    // What the collectors really run: the override wins on checkout-1.
    expect((await sendUntilExported(f, drifted, 'v1')).attributes['e2e.marker']).toBe('local-override');
    expect((await sendUntilExported(f, clean, 'v1')).attributes['e2e.marker']).toBe('v1');
    const v = await explain(
      f.op,
      [drifted],
      'drift reported',
      vi.waitFor(async () => {
        const x = await view(f.op, drifted.agent.instanceUid);
        expect(x.drift?.drifted).toBe(true);
        return x;
      }, WAIT),
    );
    console.log(`[e2e] drift of ${drifted.pod}: ${JSON.stringify(v.drift)}`);
    expect(v.remoteConfig).toMatchObject({ status: 'APPLIED', inSync: true });
    expect(v.drift!.differences.some((d) => d.includes('processors.attributes/e2e.actions') && d.includes('local-override'))).toBe(true);
    expect((await view(f.op, clean.agent.instanceUid)).drift).toEqual({ drifted: false, differences: [] });
    await vi.waitFor(async () => {
      const c = await getCollector(f.ns, 'pipeline');
      expect(c.status).toMatchObject({ matched: 2, applied: 2, failed: 0, drifted: 1, healthy: 2 });
      const degraded = cond(c.status, 'Degraded');
      expect(degraded).toMatchObject({ status: 'True', reason: 'Drifted' });
      expect(degraded!.message).toContain(`${f.ns}/${drifted.pod}`);
      expect((c.status!['failingAgents'] as { name: string }[]).map((x) => x.name)).toEqual([`${f.ns}/${drifted.pod}`]);
    }, WAIT);
    const c = await getCollector(f.ns, 'pipeline');
    console.log(`[e2e] drifted Collector: Degraded ${JSON.stringify(cond(c.status, 'Degraded'))}; Ready ${JSON.stringify(cond(c.status, 'Ready'))}`);
    // The API's Collector view counts it too.
    const api = (await (await fetch(`${f.op.apiUrl}/api/v1/collectors`)).json()) as { collectors: { name: string; namespace: string; status: { drifted: number } }[] };
    expect(api.collectors.find((x) => x.namespace === f.ns && x.name === 'pipeline')?.status.drifted).toBe(1);
  }, 180_000);

  it('a collector with only the opamp extension, bound to its pod, is shown connected and healthy and never counted applying or failed', async () => {
    const ns = await createTestNamespace(cp, 'e2e-readonly');
    const op = await bridge(ns);
    await collector(ns, 'pipeline', APP_LABEL, pipeline('v1'));
    const uid = await pod(ns, 'readonly-0', APP_LABEL);
    const ro = await startCollectorWithOpampExtension({
      endpoint: op.opampUrl.websocket,
      attributes: { 'k8s.namespace.name': ns, 'k8s.pod.name': 'readonly-0', 'k8s.pod.uid': uid },
      workDir: join(root, `${ns.slice(-8)}-readonly-0`),
    });
    cleanups.push(() => ro.stop());
    const v = await vi
      .waitFor(async () => {
        const x = await view(op, ro.instanceUid);
        expect(x).toMatchObject({ connected: true, pod: `${ns}/readonly-0`, identityError: null });
        expect(x.health?.healthy).toBe(true);
        return x;
      }, WAIT)
      .catch(async (err: Error) => {
        throw new Error(`${err.message}\ncollector output tail:\n${ro.logs().slice(-4000)}`);
      });
    expect(v.capabilities.names).not.toContain('AcceptsRemoteConfig');
    expect(v.remoteConfig.collectors).toEqual([`${ns}/pipeline`]);
    expect(v.remoteConfig).toMatchObject({ reportedHash: null, status: 'UNSET' });
    expect(v.drift).toBeNull();
    // Sample the Collector's status for at least 3 s (15 status intervals, heartbeats included): never applying or failed.
    const samples: Json[] = [];
    const t0 = Date.now();
    await vi.waitFor(
      async () => {
        const c = await getCollector(ns, 'pipeline');
        if (c.status?.['matched'] === 1) samples.push(c.status);
        for (const s of samples) expect(s).toMatchObject({ matched: 1, connected: 1, healthy: 1, unhealthy: 0, applying: 0, failed: 0, applied: 0 });
        expect(samples.length).toBeGreaterThan(5);
        expect(Date.now() - t0).toBeGreaterThanOrEqual(3000);
      },
      { timeout: 20_000, interval: 250 },
    );
    const c = await getCollector(ns, 'pipeline');
    console.log(`[e2e] read-only agent: capabilities ${v.capabilities.raw} ${JSON.stringify(v.capabilities.names)}; Collector status ${JSON.stringify({ ...c.status, conditions: undefined })}; Ready ${JSON.stringify(cond(c.status, 'Ready'))}`);
  }, 120_000);
});
