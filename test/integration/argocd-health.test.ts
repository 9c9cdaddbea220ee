/**
 * The Argo CD health checks in deploy/argocd/ (docs/argocd.md), run by a real Lua 5.1 interpreter
 * the way Argo CD runs them: `obj` set to the resource, only the base and table libraries, the
 * returned table read as {status, message}.
 *
 * - Their inputs are real: Collectors and an OpAMPBridge read back from a kube-apiserver while the
 *   operator serves raw WebSocket agents through no status, no agents, applying, applied, a stale
 *   generation, an apply failure, drift and an invalid config; a bridge without authentication and
 *   one whose bearer-token Secret is missing.
 * - Some of those objects are kept as fixtures (test/fixtures/argocd/), so the mapping is also
 *   checked on fixed inputs. Regenerate them with FLEETBRIDGE_UPDATE_ARGOCD_FIXTURES=1.
 * - docs/argocd.md embeds exactly the scripts; examples/gitops/ holds valid Collectors that
 *   standalone mode (`npm start` on examples/) does not load.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { startTestOperator, type RunningOperator } from '../harness/kube/operator.js';
import { MERGE_PATCH } from '../../src/kube/client.js';
import { AgentCapabilities as C } from '../../src/opamp/messages.js';
import { Collector } from '../../src/schema/v1alpha1/index.js';
import { parseManifestText } from '../../src/standalone/manifests.js';
import { RawWsAgent } from '../harness/raw-agent.js';
import { goMissingReason } from '../harness/go-agent.js';
import { skipUnlessOnCi } from '../harness/tools.js';
import { createTestNamespace } from '../harness/kube/control-plane.js';
import { getSharedControlPlane, type SharedControlPlane } from '../harness/kube/shared.js';
import { installCrds } from '../harness/kube/crds.js';

const SCRIPTS = { Collector: 'deploy/argocd/health-collector.lua', OpAMPBridge: 'deploy/argocd/health-opampbridge.lua' } as const;
const FIXTURES = 'test/fixtures/argocd';
const UPDATE_FIXTURES = process.env['FLEETBRIDGE_UPDATE_ARGOCD_FIXTURES'] === '1';
const G = 'fleetbridge.dev';
const V = 'v1alpha1';
const CAPS = C.ReportsStatus | C.AcceptsRemoteConfig | C.ReportsRemoteConfig | C.ReportsEffectiveConfig | C.ReportsHealth;
const WAIT = { timeout: 20_000, interval: 100 };

type Kind = keyof typeof SCRIPTS;
type Health = { status: string; message: string };
type Obj = { apiVersion?: string; kind?: string; metadata: { name?: string; namespace?: string; generation?: number; managedFields?: unknown }; spec?: Record<string, unknown>; status?: Record<string, any> };

function luaMissingReason(): string | null {
  const r = spawnSync('lua5.1', ['-v'], { encoding: 'utf8', timeout: 10_000 });
  return r.error ? `\`lua5.1\` was not found on PATH (${r.error.message}); install the Debian package lua5.1` : null;
}

// ---- running a health check as Argo CD does ---------------------------------------------------

/** A Lua string literal with the same bytes (UTF-8), escaping all but printable ASCII. */
function luaString(s: string): string {
  let out = '"';
  for (const b of Buffer.from(s, 'utf8')) out += b >= 0x20 && b < 0x7f && b !== 0x22 && b !== 0x5c ? String.fromCharCode(b) : `\\${String(b).padStart(3, '0')}`;
  return `${out}"`;
}

/** JSON as a Lua table constructor, as Argo CD converts it: objects and arrays to tables, null to nil. */
function luaLiteral(v: unknown): string {
  if (v === null || v === undefined) return 'nil';
  if (typeof v === 'boolean') return String(v);
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error(`not a JSON number: ${v}`);
    return Number.isInteger(v) ? String(v) : v.toPrecision(17);
  }
  if (typeof v === 'string') return luaString(v);
  if (Array.isArray(v)) return `{${v.map(luaLiteral).join(', ')}}`;
  return `{${Object.entries(v as Record<string, unknown>)
    .filter(([, x]) => x !== null && x !== undefined)
    .map(([k, x]) => `[${luaString(k)}] = ${luaLiteral(x)}`)
    .join(', ')}}`;
}

/**
 * Runs `script` with `obj` set, in an environment like Argo CD's: the base functions and `table`,
 * no string, math, io or os library, and no string methods. Returns the table it returned, which
 * must hold exactly a status and a message (strings).
 */
function runLua(script: string, obj: unknown): Health {
  const program = `
local script = ${luaString(script)}
local chunk, err = loadstring(script, "=health.lua")
if not chunk then io.stderr:write("compile: " .. err); os.exit(3) end
local env = { obj = ${luaLiteral(obj)}, table = table, _VERSION = _VERSION }
for _, name in ipairs({ "assert", "error", "ipairs", "next", "pairs", "pcall", "print", "rawequal", "rawget", "rawset", "select", "setmetatable", "getmetatable", "tonumber", "tostring", "type", "unpack", "xpcall" }) do
  env[name] = _G[name]
end
env._G = env
setfenv(chunk, env)
local out = io.stdout
local strings = getmetatable("")
local index = strings.__index
strings.__index = nil
local ok, hs = pcall(chunk)
strings.__index = index
if not ok then io.stderr:write("runtime: " .. tostring(hs)); os.exit(4) end
if type(hs) ~= "table" then io.stderr:write("returned " .. type(hs)); os.exit(5) end
local keys = {}
for k, v in pairs(hs) do
  if type(v) ~= "string" then io.stderr:write("field " .. tostring(k) .. " is a " .. type(v)); os.exit(6) end
  keys[#keys + 1] = tostring(k)
end
table.sort(keys)
out:write(table.concat(keys, ","), "\\n", hs.status or "", "\\n", hs.message or "")
`;
  const r = spawnSync('lua5.1', ['-'], { input: program, encoding: 'utf8', timeout: 10_000 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`lua5.1 exited ${r.status}: ${r.stderr}`);
  const [keys, status, ...message] = r.stdout.split('\n');
  expect(keys, 'the returned table holds exactly status and message').toBe('message,status');
  expect(['Healthy', 'Progressing', 'Degraded']).toContain(status);
  return { status: status!, message: message.join('\n') };
}

const scriptText = (kind: Kind) => readFileSync(SCRIPTS[kind], 'utf8');
const health = (kind: Kind, obj: unknown) => runLua(scriptText(kind), obj);

// ---- fixtures: objects captured from the real runs below ------------------------------------

/** What each fixture must give. Every file in test/fixtures/argocd/ is listed here. */
const EXPECTED: Record<string, { kind: Kind; status: string; message: RegExp }> = {
  'collector-no-status.json': { kind: 'Collector', status: 'Progressing', message: /^Waiting for the Fleetbridge operator to report status/ },
  'collector-no-agents.json': { kind: 'Collector', status: 'Healthy', message: /^No connected agent matches the selector$/ },
  'collector-applying.json': { kind: 'Collector', status: 'Progressing', message: /^1 of 1 agents have not applied the config yet$/ },
  'collector-healthy.json': { kind: 'Collector', status: 'Healthy', message: /^All 1 agents applied the config$/ },
  'collector-stale-generation.json': { kind: 'Collector', status: 'Progressing', message: /^Waiting for the Fleetbridge operator to observe generation 2 \(status is for generation 1\)$/ },
  'collector-apply-failed.json': { kind: 'Collector', status: 'Degraded', message: /^1 of 1 agents failed to apply the config; shop\/web-1: exporter "kafka" is not in this build$/ },
  'collector-drifted.json': { kind: 'Collector', status: 'Degraded', message: /^1 of 1 agents run a config that differs from the pushed one; shop\/web-1: drifted from the pushed config: exporters\.debug: missing/ },
  'collector-invalid-config.json': { kind: 'Collector', status: 'Degraded', message: /^Invalid config: config is not valid YAML: .* \(nothing is pushed to the agents it selects\)$/ },
  'opampbridge-no-status.json': { kind: 'OpAMPBridge', status: 'Progressing', message: /^Waiting for the Fleetbridge operator to report status/ },
  'opampbridge-auth-disabled.json': { kind: 'OpAMPBridge', status: 'Healthy', message: /^Warning: agents are not authenticated \(spec\.auth\.mode is none: .*\)\. Serving OpAMP on ws:\/\/fb\.shop\.svc:\d+\/v1\/opamp; \d+ agents connected$/ },
  'opampbridge-stale-generation.json': { kind: 'OpAMPBridge', status: 'Progressing', message: /^Waiting for the Fleetbridge operator to observe generation 2 \(status is for generation 1\)$/ },
  'opampbridge-tokens-unavailable.json': { kind: 'OpAMPBridge', status: 'Degraded', message: /^Agents are refused: Secret observability\/agent-tokens not found$/ },
};

/** Saves a captured object as a fixture (only with FLEETBRIDGE_UPDATE_ARGOCD_FIXTURES=1), with fixed namespace names. */
function capture(file: string, obj: Obj, ns: string, fixedNs: string): void {
  if (!UPDATE_FIXTURES) return;
  if (!EXPECTED[file]) throw new Error(`no expectation for fixture ${file}`);
  const copy = structuredClone(obj);
  delete copy.metadata.managedFields;
  writeFileSync(join(FIXTURES, file), JSON.stringify(copy, null, 2).replaceAll(ns, fixedNs) + '\n');
}

const skipLua = skipUnlessOnCi('argocd-health.test', luaMissingReason());

describe('the Argo CD health checks: documentation and examples', () => {
  it('docs/argocd.md embeds exactly the scripts in an argocd-cm ConfigMap', () => {
    const doc = readFileSync('docs/argocd.md', 'utf8');
    const blocks = [...doc.matchAll(/^```yaml\n([\s\S]*?)^```$/gm)].map((m) => parse(m[1]!) as { kind?: string; metadata?: { name?: string }; data?: Record<string, string> });
    const cms = blocks.filter((b) => b?.kind === 'ConfigMap' && b.metadata?.name === 'argocd-cm');
    expect(cms).toHaveLength(1);
    expect(cms[0]!.data).toEqual({
      'resource.customizations.health.fleetbridge.dev_Collector': scriptText('Collector'),
      'resource.customizations.health.fleetbridge.dev_OpAMPBridge': scriptText('OpAMPBridge'),
    });
    // No second copy of a script (a separate lua block) that could go stale.
    expect(doc.match(/^```lua$/gm)).toBeNull();
  });

  it('examples/gitops/ holds valid Collectors that standalone mode skips, and an Application pointing at them', () => {
    const collectorsFile = 'examples/gitops/collectors/collectors.yaml';
    const text = readFileSync(collectorsFile, 'utf8');
    const list = parse(text) as { apiVersion: string; kind: string; items: unknown[] };
    expect(list).toMatchObject({ apiVersion: 'v1', kind: 'List' });
    const collectors = list.items.map((i) => Collector.parse(i));
    expect(collectors.map((c) => `${c.metadata.namespace}/${c.metadata.name}`)).toEqual(['observability/gitops-gateway', 'observability/gitops-gateway-canary']);
    // `npm start` serves examples/: nothing under examples/gitops/ may reach it.
    for (const f of ['examples/gitops/argocd/application.yaml', collectorsFile]) {
      const parsed = parseManifestText(readFileSync(f, 'utf8'), f);
      expect(parsed).toMatchObject({ collectors: [], bridges: [], secrets: [], issues: [] });
      expect(parsed.skipped).toHaveLength(1);
    }
    const app = parseAllDocuments(readFileSync('examples/gitops/argocd/application.yaml', 'utf8')).map((d) => d.toJS() as { kind: string; spec: { source: { path: string }; destination: { namespace: string } } });
    expect(app).toHaveLength(1);
    expect(app[0]).toMatchObject({ kind: 'Application', spec: { source: { path: 'examples/gitops/collectors' }, destination: { namespace: 'observability' } } });
  });
});

describe.skipIf(skipLua)('the Argo CD health checks on fixed inputs', () => {
  it('runs in a sandbox as strict as Argo CD\'s (no string or math library)', () => {
    expect(() => runLua('return { status = string.format("%s", "Healthy"), message = "" }', {})).toThrow(/runtime: .*string/);
    expect(() => runLua('return { status = ("Healthy"):lower(), message = "" }', {})).toThrow(/runtime:/);
    expect(() => runLua('return { status = "Healthy", message = tostring(math.floor(1)) }', {})).toThrow(/runtime: .*math/);
    expect(runLua('return { status = "Healthy", message = "x" .. obj.n .. table.concat({ "a", "b" }) }', { n: 2 })).toEqual({ status: 'Healthy', message: 'x2ab' });
  });

  it('gives each captured object the expected health', () => {
    const files = readdirSync(FIXTURES).filter((f) => f.endsWith('.json')).sort();
    expect(files).toEqual(Object.keys(EXPECTED).sort());
    for (const f of files) {
      const e = EXPECTED[f]!;
      const obj = JSON.parse(readFileSync(join(FIXTURES, f), 'utf8')) as Obj;
      expect(obj.kind, f).toBe(e.kind);
      const h = health(e.kind, obj);
      expect(h.status, `${f}: ${h.message}`).toBe(e.status);
      expect(h.message, f).toMatch(e.message);
    }
  });

  it('handles what the operator does not write today, from variants of the captured objects', () => {
    const fixture = (f: string) => JSON.parse(readFileSync(join(FIXTURES, f), 'utf8')) as Obj;
    const setCond = (o: Obj, type: string, c: Record<string, unknown> | null) => {
      const conds = (o.status!['conditions'] as { type: string }[]).filter((x) => x.type !== type);
      o.status!['conditions'] = c ? [...conds, { type, ...c }] : conds;
      return o;
    };
    // A bridge whose caches have not synced yet.
    expect(health('OpAMPBridge', setCond(fixture('opampbridge-auth-disabled.json'), 'Ready', { status: 'False', reason: 'NotServing', message: 'Waiting for the Kubernetes caches to sync' }))).toEqual({ status: 'Progressing', message: 'Waiting for the Kubernetes caches to sync' });
    // A bridge with a future refusal reason; and one whose agents authenticate.
    expect(health('OpAMPBridge', setCond(fixture('opampbridge-auth-disabled.json'), 'AgentsAuthenticated', { status: 'False', reason: 'SomethingElse', message: 'Agents are refused: x' }))).toEqual({ status: 'Degraded', message: 'Agents are refused: x' });
    expect(health('OpAMPBridge', setCond(fixture('opampbridge-auth-disabled.json'), 'AgentsAuthenticated', { status: 'True', reason: 'ServiceAccountTokens', message: 'ok' })).message).toMatch(/^Serving OpAMP on /);
    // A Collector with no Ready condition yet, or an unknown Ready=False reason.
    expect(health('Collector', setCond(fixture('collector-healthy.json'), 'Ready', null))).toEqual({ status: 'Progressing', message: 'Waiting for the Ready condition' });
    expect(health('Collector', setCond(fixture('collector-healthy.json'), 'Ready', { status: 'False', reason: 'Other', message: 'broken' }))).toEqual({ status: 'Degraded', message: 'broken' });
    // Healthy, but agents report bad component health.
    const unhealthy = fixture('collector-healthy.json');
    unhealthy.status!['unhealthy'] = 1;
    expect(health('Collector', unhealthy)).toEqual({ status: 'Healthy', message: 'All 1 agents applied the config; 1 agents report themselves unhealthy' });
    // Generations as strings (Argo CD turns a json.Number into a string) still compare as numbers.
    const stringly = fixture('collector-stale-generation.json') as unknown as { metadata: { generation: unknown }; status: { observedGeneration: unknown } };
    stringly.metadata.generation = '10';
    stringly.status.observedGeneration = '9';
    expect(health('Collector', stringly).message).toBe('Waiting for the Fleetbridge operator to observe generation 10 (status is for generation 9)');
  });
});

// ---- real runs -----------------------------------------------------------------------------------

const skipKube = skipLua || skipUnlessOnCi('argocd-health.test', goMissingReason());

describe.skipIf(skipKube)('the Argo CD health checks on objects from a running operator', () => {
  let cp: SharedControlPlane;
  let kc: KubeConfig;
  let core: CoreV1Api;
  let custom: CustomObjectsApi;
  let ns: string;
  let op: RunningOperator;
  let bridgeCreated: Obj;
  const cleanups: (() => Promise<unknown>)[] = [];

  const createCollector = async (name: string, spec: Record<string, unknown>) =>
    (await custom.createNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'collectors', body: { apiVersion: `${G}/${V}`, kind: 'Collector', metadata: { name }, spec } })) as Obj;
  const getCollector = async (name: string) => (await custom.getNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'collectors', name })) as Obj;
  const getBridge = async (namespace: string) => (await custom.getNamespacedCustomObject({ group: G, version: V, namespace, plural: 'opampbridges', name: 'fb' })) as Obj;
  const cond = (o: Obj, type: string) => (o.status?.['conditions'] as { type: string; status: string; reason: string }[] | undefined)?.find((c) => c.type === type);
  const configs = (a: RawWsAgent) => a.received.filter((m) => m.remoteConfig).map((m) => ({ hash: Buffer.from(m.remoteConfig!.configHash!), body: Buffer.from(m.remoteConfig!.config!.configMap!['']!.body!) }));

  async function createBridge(namespace: string, spec: Record<string, unknown>): Promise<Obj> {
    return (await custom.createNamespacedCustomObject({ group: G, version: V, namespace, plural: 'opampbridges', body: { apiVersion: `${G}/${V}`, kind: 'OpAMPBridge', metadata: { name: 'fb' }, spec } })) as Obj;
  }

  async function operator(namespace: string): Promise<RunningOperator> {
    const o = await startTestOperator({ kc, namespace, cleanups });
    return o;
  }

  /** Waits until `read` gives an object whose health is `status`; returns that object. */
  async function untilHealth(kind: Kind, read: () => Promise<Obj>, status: string, message?: RegExp): Promise<{ obj: Obj; health: Health }> {
    let last: { obj: Obj; health: Health } | undefined;
    await vi.waitFor(async () => {
      const obj = await read();
      last = { obj, health: health(kind, obj) };
      expect(last.health.status, last.health.message).toBe(status);
      if (message) expect(last.health.message).toMatch(message);
    }, WAIT);
    return last!;
  }

  beforeAll(async () => {
    cp = await getSharedControlPlane();
    kc = new KubeConfig();
    kc.loadFromString(cp.kubeconfigYaml);
    core = kc.makeApiClient(CoreV1Api);
    custom = kc.makeApiClient(CustomObjectsApi);
    await installCrds(cp);
    ns = await createTestNamespace(cp, 'argocd-health');
    bridgeCreated = await createBridge(ns, { heartbeatIntervalSeconds: 1, auth: { mode: 'none' } });
    op = await operator(ns);
  }, 20 * 60_000);

  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  });

  it('follows a Collector from creation through applying, applied, a spec change, a failure and drift', async () => {
    // Just created: no status yet.
    const created = await createCollector('web', { selector: { matchLabels: { app: 'web' } }, config: { exporters: { debug: {} } } });
    expect(created.status).toBeUndefined();
    expect(health('Collector', created)).toMatchObject({ status: 'Progressing' });
    capture('collector-no-status.json', created, ns, 'shop');

    // No agent matches yet: nothing to do.
    const noAgents = await untilHealth('Collector', () => getCollector('web'), 'Healthy');
    expect(noAgents.obj.status).toMatchObject({ matched: 0 });
    expect(cond(noAgents.obj, 'Ready')).toMatchObject({ status: 'True', reason: 'NoAgents' });
    capture('collector-no-agents.json', noAgents.obj, ns, 'shop');

    // An agent of a matching pod gets the config and has not reported it applied.
    await core.createNamespacedPod({ namespace: ns, body: { metadata: { name: 'web-1', labels: { app: 'web' } }, spec: { containers: [{ name: 'otelcol', image: 'otel/opentelemetry-collector-contrib' }] } } });
    const a = await RawWsAgent.connect(op.opampUrl.websocket);
    cleanups.push(async () => a.terminate());
    a.send({ capabilities: CAPS, agentDescription: { identifyingAttributes: [{ key: 'service.name', value: { stringValue: 'otelcol' } }], nonIdentifyingAttributes: [{ key: 'k8s.pod.name', value: { stringValue: 'web-1' } }, { key: 'k8s.namespace.name', value: { stringValue: ns } }] }, remoteConfigStatus: {} });
    await vi.waitFor(() => expect(configs(a)).toHaveLength(1), WAIT);
    const applying = await untilHealth('Collector', () => getCollector('web'), 'Progressing', /agents have not applied/);
    expect(applying.obj.status).toMatchObject({ matched: 1, applying: 1 });
    capture('collector-applying.json', applying.obj, ns, 'shop');

    // Applied.
    a.send({ capabilities: CAPS, remoteConfigStatus: { lastRemoteConfigHash: configs(a)[0]!.hash, status: 1 } });
    const healthy = await untilHealth('Collector', () => getCollector('web'), 'Healthy', /^All 1 agents applied the config$/);
    capture('collector-healthy.json', healthy.obj, ns, 'shop');

    // A spec change: the object the apiserver returns has the new generation and the old status.
    const changed = (await custom.patchNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'collectors', name: 'web', body: { spec: { config: { exporters: { debug: null, kafka: {} } } } } }, MERGE_PATCH)) as Obj;
    expect(changed.metadata.generation).toBe(2);
    expect(changed.status).toMatchObject({ observedGeneration: 1 });
    expect(health('Collector', changed)).toEqual({ status: 'Progressing', message: 'Waiting for the Fleetbridge operator to observe generation 2 (status is for generation 1)' });
    capture('collector-stale-generation.json', changed, ns, 'shop');

    // The agent fails to apply the new config.
    await vi.waitFor(() => expect(configs(a)).toHaveLength(2), WAIT);
    a.send({ capabilities: CAPS, remoteConfigStatus: { lastRemoteConfigHash: configs(a)[1]!.hash, status: 3, errorMessage: 'exporter "kafka" is not in this build' } });
    const failed = await untilHealth('Collector', () => getCollector('web'), 'Degraded', /failed to apply the config/);
    expect(cond(failed.obj, 'Degraded')).toMatchObject({ status: 'True', reason: 'ApplyFailed' });
    expect(failed.health.message).toBe(`1 of 1 agents failed to apply the config; ${ns}/web-1: exporter "kafka" is not in this build`);
    capture('collector-apply-failed.json', failed.obj, ns, 'shop');

    // Fixed; the agent says it applied it, but runs a config without the debug exporter.
    await custom.patchNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'collectors', name: 'web', body: { spec: { config: { exporters: { kafka: null, debug: { verbosity: 'basic' } } } } } }, MERGE_PATCH);
    await vi.waitFor(() => expect(configs(a)).toHaveLength(3), WAIT);
    const fixedHash = configs(a)[2]!.hash;
    const effective = (body: string) => ({ configMap: { configMap: { '': { body: Buffer.from(body), contentType: 'text/yaml' } } } });
    a.send({ capabilities: CAPS, remoteConfigStatus: { lastRemoteConfigHash: fixedHash, status: 1 }, effectiveConfig: effective('exporters:\n  otlp:\n    endpoint: elsewhere:4317\n') });
    const drifted = await untilHealth('Collector', () => getCollector('web'), 'Degraded', /run a config that differs/);
    expect(cond(drifted.obj, 'Degraded')).toMatchObject({ status: 'True', reason: 'Drifted' });
    capture('collector-drifted.json', drifted.obj, ns, 'shop');

    // It runs the pushed config again: Healthy.
    a.send({ capabilities: CAPS, effectiveConfig: effective(configs(a)[2]!.body.toString('utf8')) });
    const recovered = await untilHealth('Collector', () => getCollector('web'), 'Healthy', /^All 1 agents applied the config$/);
    expect(recovered.obj.status).toMatchObject({ observedGeneration: recovered.obj.metadata.generation, drifted: 0, failed: 0 });
  }, 120_000);

  it('makes a Collector with an invalid config Degraded, with the ConfigValid message', async () => {
    await createCollector('broken', { selector: { matchLabels: { app: 'broken' } }, configYaml: 'receivers:\n  otlp: [unclosed\n' });
    const broken = await untilHealth('Collector', () => getCollector('broken'), 'Degraded', /^Invalid config: config is not valid YAML/);
    expect(cond(broken.obj, 'ConfigValid')).toMatchObject({ status: 'False', reason: 'InvalidConfig' });
    capture('collector-invalid-config.json', broken.obj, ns, 'shop');
  }, 60_000);

  it('makes the example GitOps Collectors Healthy once synced (no agent matches them here)', async () => {
    const list = parse(readFileSync('examples/gitops/collectors/collectors.yaml', 'utf8')) as { items: Obj[] };
    for (const item of list.items) {
      const body = { ...item, metadata: { ...item.metadata, namespace: ns } };
      const created = (await custom.createNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'collectors', body })) as Obj;
      expect(health('Collector', created).status).toBe('Progressing');
    }
    for (const item of list.items) {
      const c = await untilHealth('Collector', () => getCollector(item.metadata.name!), 'Healthy', /^No connected agent matches the selector$/);
      expect(cond(c.obj, 'ConfigValid')?.status).toBe('True');
    }
  }, 60_000);

  it('shows a bridge without authentication Healthy with a warning, and Progressing right after a spec change', async () => {
    expect(bridgeCreated.status).toBeUndefined();
    expect(health('OpAMPBridge', bridgeCreated)).toMatchObject({ status: 'Progressing' });
    capture('opampbridge-no-status.json', bridgeCreated, ns, 'shop');

    const served = await untilHealth('OpAMPBridge', () => getBridge(ns), 'Healthy', /^Warning: agents are not authenticated \(spec\.auth\.mode is none/);
    expect(cond(served.obj, 'AgentsAuthenticated')).toMatchObject({ status: 'False', reason: 'AuthenticationDisabled' });
    expect(cond(served.obj, 'Ready')).toMatchObject({ status: 'True', reason: 'Serving' });
    capture('opampbridge-auth-disabled.json', served.obj, ns, 'shop');

    const changed = (await custom.patchNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'opampbridges', name: 'fb', body: { spec: { heartbeatIntervalSeconds: 2 } } }, MERGE_PATCH)) as Obj;
    expect(changed.metadata.generation).toBe(2);
    expect(health('OpAMPBridge', changed)).toEqual({ status: 'Progressing', message: 'Waiting for the Fleetbridge operator to observe generation 2 (status is for generation 1)' });
    capture('opampbridge-stale-generation.json', changed, ns, 'shop');
    // The operator applies the heartbeat live and then observes generation 2.
    await untilHealth('OpAMPBridge', () => getBridge(ns), 'Healthy', /^Warning: agents are not authenticated/);
    expect((await getBridge(ns)).status?.observedGeneration).toBe(2);

    // Turning TLS on needs a new listening socket: the operator keeps reporting generation 2 as
    // observed and says that a restart applies generation 3, so health stays Progressing (not a false Healthy).
    const moved = (await custom.patchNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'opampbridges', name: 'fb', body: { spec: { tls: { secretName: 'fb-tls' } } } }, MERGE_PATCH)) as Obj;
    expect(moved.metadata.generation).toBe(3);
    await vi.waitFor(async () => expect(cond(await getBridge(ns), 'Ready')).toMatchObject({ status: 'True', reason: 'RestartRequired' }), { timeout: 15_000, interval: 200 });
    const after = await getBridge(ns);
    expect(health('OpAMPBridge', after)).toEqual({ status: 'Progressing', message: 'Waiting for the Fleetbridge operator to observe generation 3 (status is for generation 2)' });
  }, 60_000);

  it('makes a bridge whose bearer-token Secret is missing Degraded', async () => {
    const ns2 = await createTestNamespace(cp, 'argocd-health-tokens');
    await createBridge(ns2, { heartbeatIntervalSeconds: 1, auth: { mode: 'bearerToken', bearerToken: { secretName: 'agent-tokens' } } });
    await operator(ns2);
    const refused = await untilHealth('OpAMPBridge', () => getBridge(ns2), 'Degraded');
    expect(cond(refused.obj, 'AgentsAuthenticated')).toMatchObject({ status: 'False', reason: 'TokensUnavailable' });
    expect(refused.health.message).toBe(`Agents are refused: Secret ${ns2}/agent-tokens not found`);
    capture('opampbridge-tokens-unavailable.json', refused.obj, ns2, 'observability');
  }, 60_000);
});
