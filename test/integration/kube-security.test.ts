/**
 * Secrets in configs and bearer-token rotation in operator mode, against a real kube-apiserver,
 * with the opamp-go test agent as the peer:
 * - `${secret:NAME/KEY}` is substituted into what the agent receives and into nothing shown: a
 *   planted value is searched for in the logs, Collector and OpAMPBridge objects, Events, /metrics
 *   and the HTTP API, including what the agent reports back (effective config, errors).
 * - Rotating the Secret re-pushes to exactly the agents whose config uses it; status follows.
 * - auth.mode bearerToken: tokens from a Secret; rotation through ConnectionSettingsOffers, tracked
 *   by reconnects; a revoked token loses its connection.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { startTestOperator, type RunningOperator } from '../harness/kube/operator.js';
import { MERGE_PATCH } from '../../src/kube/client.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { goMissingReason, startGoAgent, type GoAgent } from '../harness/go-agent.js';
import { ensureOtelBinaries } from '../harness/otel/binaries.js';
import { connect as tlsConnect } from 'node:tls';
import { createServer as createHttpServer, type IncomingHttpHeaders } from 'node:http';
import { X509Certificate } from 'node:crypto';
import { Agent as UndiciAgent } from 'undici';
import { makeTestPki, opensslMissingReason, type TestPki } from '../harness/tls.js';
import { startSupervisedCollector } from '../harness/otel/supervised-collector.js';
import { skipUnlessOnCi } from '../harness/tools.js';
import { createTestNamespace } from '../harness/kube/control-plane.js';
import { getSharedControlPlane, type SharedControlPlane } from '../harness/kube/shared.js';
import { installCrds } from '../harness/kube/crds.js';
import type { AgentView } from '../../src/fleet/view-types.js';

const skip = skipUnlessOnCi('kube-security.test', goMissingReason() ?? opensslMissingReason());
const G = 'fleetbridge.dev';
const V = 'v1alpha1';
const WAIT = { timeout: 20_000, interval: 100 };

let cp: SharedControlPlane;
let kc: KubeConfig;
let core: CoreV1Api;
let custom: CustomObjectsApi;
const cleanups: (() => Promise<unknown>)[] = [];

/** Everything the operator logs, at debug level, as text. */
function captureLogs(): { logger: pino.Logger; text: () => string } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(String(chunk));
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), text: () => chunks.join('') };
}

/** fleetbridge_secret_reloads_total for one use and outcome, from the operator's /metrics. */
async function secretReloads(op: RunningOperator, use: string, outcome: string, dispatcher?: UndiciAgent): Promise<number> {
  const text = await (await fetch(`${op.apiUrl}/metrics`, { dispatcher } as RequestInit)).text();
  const line = text.split('\n').find((l) => l.startsWith('fleetbridge_secret_reloads_total{') && l.includes(`use="${use}"`) && l.includes(`outcome="${outcome}"`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

async function pod(ns: string, name: string, labels: Record<string, string>): Promise<string> {
  const p = await core.createNamespacedPod({ namespace: ns, body: { metadata: { name, labels }, spec: { serviceAccountName: 'agent', containers: [{ name: 'c', image: 'x' }] } } });
  return p.metadata!.uid!;
}

async function saToken(ns: string, podName: string, podUid: string): Promise<string> {
  const tr = await core.createNamespacedServiceAccountToken({
    namespace: ns,
    name: 'agent',
    body: { spec: { audiences: ['fleetbridge'], expirationSeconds: 600, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: podName, uid: podUid } } },
  });
  return tr.status!.token;
}

async function setupNamespace(prefix: string): Promise<string> {
  const ns = await createTestNamespace(cp, prefix);
  await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'agent' } } });
  return ns;
}

describe.skipIf(skip)('secrets and credentials in operator mode', () => {
  beforeAll(async () => {
    cp = await getSharedControlPlane();
    kc = new KubeConfig();
    kc.loadFromString(cp.kubeconfigYaml);
    core = kc.makeApiClient(CoreV1Api);
    custom = kc.makeApiClient(CustomObjectsApi);
    await installCrds(cp);
  }, 20 * 60_000);

  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  });

  describe('secretRefs', () => {
    let ns: string;
    let op: RunningOperator;
    let logs: ReturnType<typeof captureLogs>;
    let secure: GoAgent;
    let plain: GoAgent;
    const planted = [1, 2, 3].map((i) => `planted-${i}-${randomBytes(8).toString('hex')}`);

    const collector = async (name: string) =>
      (await custom.getNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'collectors', name })) as { status?: { configHash?: string; applied?: number; failed?: number; conditions?: { type: string; status: string; reason: string; message: string }[]; failingAgents?: { message: string }[] } };
    const view = async (uid: string) => (await (await fetch(`${op.apiUrl}/api/v1/agents/${uid}`)).json()) as AgentView;
    const setSecret = (value: string) => core.patchNamespacedSecret({ namespace: ns, name: 'creds', body: { data: { 'api-key': b64(value) } } }, MERGE_PATCH);

    beforeAll(async () => {
      ns = await setupNamespace('secrets');
      await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'creds', labels: { 'fleetbridge.dev/config-secret': 'true' } }, data: { 'api-key': b64(planted[0]!) } } });
      // Listed by a Collector but not labelled for configs (think: the bridge's own agent tokens).
      await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'not-for-configs' }, stringData: { token: 'never-pushed-token' } } });
      // A Secret no Collector lists: the bridge must never read it.
      await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'unrelated' }, stringData: { value: 'never-read' } } });
      const collectors = [
        {
          name: 'secure',
          spec: {
            selector: { matchLabels: { app: 'secure' } },
            secretRefs: [{ name: 'creds' }],
            configYaml: 'exporters:\n  otlphttp:\n    endpoint: https://ingest.example\n    headers:\n      x-api-key: ${secret:creds/api-key}\n      authorization: Bearer ${secret:creds/api-key}\n',
          },
        },
        { name: 'plain', spec: { selector: { matchLabels: { app: 'plain' } }, config: { exporters: { debug: {} } } } },
        { name: 'missing', spec: { selector: { matchLabels: { app: 'held' } }, secretRefs: [{ name: 'nope' }], config: { exporters: { otlphttp: { endpoint: 'https://x.example', headers: { k: '${secret:nope/k}' } } } } } },
        { name: 'sneaky', spec: { selector: { matchLabels: { app: 'elsewhere' } }, secretRefs: [{ name: 'not-for-configs' }], config: { exporters: { otlphttp: { endpoint: 'https://x.example', headers: { stolen: '${secret:not-for-configs/token}' } } } } } },
                { name: 'undeclared', spec: { selector: { matchLabels: { app: 'none' } }, config: { exporters: { otlphttp: { endpoint: 'https://x.example', headers: { k: '${secret:unrelated/value}' } } } } } },
      ];
      for (const c of collectors) {
        await custom.createNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'collectors', body: { apiVersion: `${G}/${V}`, kind: 'Collector', metadata: { name: c.name }, spec: c.spec } });
      }
      await custom.createNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'opampbridges', body: { apiVersion: `${G}/${V}`, kind: 'OpAMPBridge', metadata: { name: 'fb' }, spec: { heartbeatIntervalSeconds: 1 } } });
      const uidSecure = await pod(ns, 'secure-0', { app: 'secure' });
      const uidPlain = await pod(ns, 'plain-0', { app: 'plain' });
      logs = captureLogs();
      op = await startTestOperator({ kc, namespace: ns, logger: logs.logger, adminAuth: 'none', cleanups });
      secure = await startGoAgent({ endpoint: op.opampUrl.websocket, headers: { Authorization: `Bearer ${await saToken(ns, 'secure-0', uidSecure)}` }, heartbeatSeconds: 1 });
      plain = await startGoAgent({ endpoint: op.opampUrl.websocket, headers: { Authorization: `Bearer ${await saToken(ns, 'plain-0', uidPlain)}` }, heartbeatSeconds: 1 });
      cleanups.push(() => secure.stop(), () => plain.stop());
    }, 120_000);

    it('pushes the value to the agent, and shows only the reference and its hash', async () => {
      const rc = await secure.waitForRemoteConfig((e) => !!e.body?.includes(planted[0]!), { timeoutMs: 20_000 });
      expect(rc.body).toContain(`x-api-key: ${planted[0]}`);
      expect(rc.body).toContain(`authorization: Bearer ${planted[0]}`);
      await secure.waitForConfigStatus('APPLIED', rc.hash);
      await vi.waitFor(async () => {
        const st = (await collector('secure')).status;
        expect(st).toMatchObject({ configHash: rc.hash, applied: 1 });
      }, WAIT);
      // The agent echoes the config as its effective config: stored and shown redacted.
      await vi.waitFor(async () => {
        const v = await view(secure.instanceUid);
        expect(v.effectiveConfig?.['']?.body).toMatch(/x-api-key: \[REDACTED\]/);
        expect(v.effectiveConfig?.['']?.body).not.toContain(planted[0]);
        expect(v.drift).toMatchObject({ drifted: false });
      }, WAIT);
    });

    it('re-pushes a rotated Secret to exactly the agents that use it, and status follows the new hash', async () => {
      await plain.waitForConfigStatus('APPLIED');
      const plainBefore = plain.remoteConfigs().length;
      const before = (await collector('secure')).status!.configHash!;
      const t0 = Date.now();
      await setSecret(planted[1]!);
      const rc = await secure.waitForRemoteConfig((e) => !!e.body?.includes(planted[1]!), { timeoutMs: 20_000 });
      const pushedMs = Date.now() - t0;
      expect(rc.hash).not.toBe(before);
      await secure.waitForConfigStatus('APPLIED', rc.hash);
      await vi.waitFor(async () => expect((await collector('secure')).status).toMatchObject({ configHash: rc.hash, applied: 1 }), WAIT);
      expect(plain.remoteConfigs()).toHaveLength(plainBefore);
      console.log(`[kube-security] Secret rotation → agent received the new config in ${pushedMs} ms`);
    });

    it('redacts a secret value that an agent puts into its error message', async () => {
      await secure.command({ cmd: 'mode', remoteConfig: 'fail', error: `401 from https://ingest.example with key ${planted[2]}` });
      await setSecret(planted[2]!);
      const rc = await secure.waitForRemoteConfig((e) => !!e.body?.includes(planted[2]!), { timeoutMs: 20_000 });
      await secure.waitForConfigStatus('FAILED', rc.hash);
      await vi.waitFor(async () => {
        const st = (await collector('secure')).status!;
        expect(st.failed).toBe(1);
        expect(st.failingAgents?.[0]?.message).toBe('401 from https://ingest.example with key [REDACTED]');
      }, WAIT);
      await vi.waitFor(async () => {
        const ev = await core.listNamespacedEvent({ namespace: ns });
        expect(ev.items.map((e) => e.message ?? '').join('\n')).toContain('with key [REDACTED]');
      }, WAIT);
    });

    it('holds agents whose config needs a missing or unlabelled Secret, and refuses references the Collector does not list', async () => {
      await vi.waitFor(async () => {
        const missing = (await collector('missing')).status;
        expect(missing?.conditions?.find((c) => c.type === 'ConfigValid' || c.type === 'Ready')?.message ?? '').toContain(`Secret ${ns}/nope not found`);
        const sneaky = (await collector('sneaky')).status;
        expect(sneaky?.conditions?.find((c) => c.type === 'ConfigValid' || c.type === 'Ready')?.message ?? '').toContain(`Secret ${ns}/not-for-configs is not labelled fleetbridge.dev/config-secret=true`);
        const undeclared = (await collector('undeclared')).status;
        expect(undeclared?.conditions?.find((c) => c.type === 'ConfigValid')).toMatchObject({ status: 'False' });
        expect(undeclared?.conditions?.find((c) => c.type === 'ConfigValid')?.message).toContain('references Secret unrelated, which is not listed in spec.secretRefs');
      }, WAIT);
    });

    it('never shows a planted value: logs, objects, Events, metrics and the API', async () => {
      await op.settled();
      const texts: Record<string, string> = {
        logs: logs.text(),
        collectors: JSON.stringify(await custom.listNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'collectors' })),
        bridges: JSON.stringify(await custom.listNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'opampbridges' })),
        events: JSON.stringify(await core.listNamespacedEvent({ namespace: ns })),
        metrics: await (await fetch(`${op.apiUrl}/metrics`)).text(),
        agents: await (await fetch(`${op.apiUrl}/api/v1/agents`)).text(),
        agent: await (await fetch(`${op.apiUrl}/api/v1/agents/${secure.instanceUid}`)).text(),
        apiCollectors: await (await fetch(`${op.apiUrl}/api/v1/collectors`)).text(),
      };
      // The search can find: the agent did receive every value, and the logs are not empty.
      expect(secure.remoteConfigs().map((r) => r.body ?? '').join('\n')).toContain(planted[2]);
      expect(texts['logs']).toContain('Sent remote config');
      expect(texts['agent']).toContain('[REDACTED]');
      for (const [where, text] of Object.entries(texts)) {
        for (const p of planted) expect(text.includes(p), `${where} shows ${p}`).toBe(false);
        expect(text.includes(b64(planted[0]!)), `${where} shows a value in base64`).toBe(false);
        expect(text.includes('never-read'), `${where} shows an unlisted Secret`).toBe(false);
        expect(text.includes('never-pushed-token'), `${where} shows an unlabelled Secret`).toBe(false);
      }
    });
  });

  describe('bearer tokens', () => {
    let ns: string;
    let op: RunningOperator;
    const tok = (n: number) => `tok-${n}-${randomBytes(12).toString('hex')}`;
    const t1 = tok(1);
    const t2 = tok(2);
    const bridge = async () =>
      (await custom.getNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'opampbridges', name: 'fb' })) as { status?: { agents?: { connected?: number; staleCredentials?: number }; conditions?: { type: string; status: string; reason: string }[] } };
    const view = async (uid: string) => (await (await fetch(`${op.apiUrl}/api/v1/agents/${uid}`)).json()) as AgentView;
    const attrs = (p: string) => ({ 'k8s.pod.name': p, 'k8s.namespace.name': ns });

    beforeAll(async () => {
      ns = await setupNamespace('bearer');
      await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'agent-tokens' }, stringData: { token: t1 } } });
      await custom.createNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'collectors', body: { apiVersion: `${G}/${V}`, kind: 'Collector', metadata: { name: 'all' }, spec: { selector: {}, config: { exporters: { debug: {} } } } } });
      await custom.createNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'opampbridges', body: { apiVersion: `${G}/${V}`, kind: 'OpAMPBridge', metadata: { name: 'fb' }, spec: { heartbeatIntervalSeconds: 1, auth: { mode: 'bearerToken', bearerToken: { secretName: 'agent-tokens' } } } } });
      for (const p of ['p1', 'p2']) await pod(ns, p, { app: 'x' });
      op = await startTestOperator({ kc, namespace: ns, adminAuth: 'none', cleanups });
    }, 120_000);

    it('refuses a missing or wrong token at the upgrade, and serves a right one', async () => {
      // opamp-go reports a refused upgrade only as "bad handshake": the bridge's counter shows the 401s.
      const refusals = async () => Number(/fleetbridge_opamp_protocol_errors_total\{transport="websocket",code="FB_OPAMP_UNAUTHENTICATED"\} (\d+)/.exec(await (await fetch(`${op.apiUrl}/metrics`)).text())?.[1] ?? 0);
      const refused: Record<string, string>[] = [{}, { Authorization: `Bearer ${t2}` }, { Authorization: `Basic ${b64(`x:${t1}`)}` }];
      for (const headers of refused) {
        const before = await refusals();
        const bad = await startGoAgent({ endpoint: op.opampUrl.websocket, headers, attrs: attrs('p1') });
        cleanups.push(() => bad.stop());
        await bad.waitFor((e) => e.event === 'connect_failed', { timeoutMs: 10_000 });
        expect(await refusals()).toBeGreaterThan(before);
        expect(bad.events.some((e) => e.event === 'connected')).toBe(false);
        await bad.stop();
      }
      const http = await fetch(op.opampUrl.http, { method: 'POST', headers: { 'Content-Type': 'application/x-protobuf', Authorization: `Bearer ${t2}` }, body: new Uint8Array([0]) });
      expect(http.status).toBe(401);
      const good = await startGoAgent({ endpoint: op.opampUrl.websocket, headers: { Authorization: `Bearer ${t1}` }, attrs: attrs('p1') });
      cleanups.push(() => good.stop());
      await good.waitForConfigStatus('APPLIED');
      expect(await view(good.instanceUid)).toMatchObject({ pod: `${ns}/p1`, verified: { method: 'bearerToken', username: 'bearer-token:token', credential: { key: 'token', current: true } } });
      await vi.waitFor(async () => expect((await bridge()).status?.conditions?.find((c) => c.type === 'AgentsAuthenticated')).toMatchObject({ status: 'True', reason: 'BearerTokens' }), WAIT);
      await good.stop();
    });

    it('rotates: agents are offered the new token and reconnect with it; the ones that cannot are counted; a revoked token is cut off', async () => {
      const mover = await startGoAgent({ endpoint: op.opampUrl.websocket, headers: { Authorization: `Bearer ${t1}` }, attrs: attrs('p1') });
      const stayer = await startGoAgent({ endpoint: op.opampUrl.websocket, headers: { Authorization: `Bearer ${t1}` }, attrs: attrs('p2'), acceptsConnectionSettings: false });
      cleanups.push(() => mover.stop(), () => stayer.stop());
      await mover.waitForConfigStatus('APPLIED');
      await stayer.waitForConfigStatus('APPLIED');

      // New token becomes current; the old one stays accepted under another key.
      await core.replaceNamespacedSecret({ namespace: ns, name: 'agent-tokens', body: { metadata: { name: 'agent-tokens' }, stringData: { token: t2, previous: t1 } } });
      const offer = await mover.waitFor((e) => e.event === 'connection_settings' && e.authorization === `Bearer ${t2}`, { timeoutMs: 20_000 });
      expect(offer).toMatchObject({ authorizationChanged: true, heartbeatIntervalSeconds: 1 });
      // The mover reconnects (a new opamp-go client) with the new token, and is counted as moved.
      await mover.waitFor((e) => e.event === 'connected' && Number(e.client) >= 2, { timeoutMs: 20_000 });
      await vi.waitFor(async () => expect((await view(mover.instanceUid)).verified).toMatchObject({ credential: { key: 'token', current: true } }), WAIT);
      await vi.waitFor(async () => expect((await view(stayer.instanceUid)).verified).toMatchObject({ credential: { key: 'previous', current: false } }), WAIT);
      await vi.waitFor(async () => expect((await bridge()).status?.agents).toMatchObject({ connected: 2, staleCredentials: 1 }), WAIT);

      // Revoking the old token closes the stayer's connection; it cannot come back with it.
      await core.replaceNamespacedSecret({ namespace: ns, name: 'agent-tokens', body: { metadata: { name: 'agent-tokens' }, stringData: { token: t2 } } });
      const since = stayer.events.length;
      await stayer.waitFor((e) => e.event === 'connect_failed', { since, timeoutMs: 30_000 });
      await vi.waitFor(async () => expect((await bridge()).status?.agents).toMatchObject({ connected: 1, staleCredentials: 0 }), WAIT);
      expect((await view(mover.instanceUid)).connected).toBe(true);
    }, 90_000);

    it('the OpAMP Supervisor follows a rotated token too, and does not reconnect in a loop', async () => {
      await ensureOtelBinaries();
      const t3 = tok(3);
      await pod(ns, 'p3', { app: 'x' });
      const workDir = await mkdtemp(join(tmpdir(), 'fb-sec-'));
      cleanups.push(() => rm(workDir, { recursive: true, force: true }));
      const sup = await startSupervisedCollector({
        endpoint: op.opampUrl.websocket,
        workDir,
        attributes: attrs('p3'),
        extraConfig: {
          server: { endpoint: op.opampUrl.websocket, headers: { Authorization: `Bearer ${t2}` } },
          capabilities: { accepts_opamp_connection_settings: true },
        },
      });
      cleanups.push(() => sup.stop());
      const connects = () => (sup.logs().match(/Connected to the server/g) ?? []).length;
      await vi
        .waitFor(async () => expect(await view(sup.instanceUid)).toMatchObject({ connected: true, pod: `${ns}/p3`, remoteConfig: { inSync: true } }), { timeout: 60_000, interval: 200 })
        .catch(async (err: Error) => {
          const v = await view(sup.instanceUid).catch(() => null);
          throw new Error(`${err.message}\nagent view: ${JSON.stringify(v && { ...v, effectiveConfig: undefined, availableComponents: undefined }, null, 1)}\nsupervisor log tail:\n${sup.logs().slice(-6000)}`);
        });
      // It took the heartbeat offer (its client restarts once for that) and then stays put: the
      // bridge receives four heartbeats (1 s apart) in a row without the Supervisor connecting again.
      let settled = connects();
      let from = BigInt((await view(sup.instanceUid)).sequenceNum);
      await vi
        .waitFor(
          async () => {
            const v = await view(sup.instanceUid);
            if (connects() !== settled) [settled, from] = [connects(), BigInt(v.sequenceNum)];
            expect(BigInt(v.sequenceNum) - from).toBeGreaterThanOrEqual(4n);
          },
          { timeout: 30_000, interval: 250 },
        )
        .catch((err: Error) => {
          throw new Error(`${err.message}\nconnects: ${connects()}\n${sup.logs().slice(-3000)}`);
        });
      expect(settled).toBeLessThanOrEqual(3);

      await core.replaceNamespacedSecret({ namespace: ns, name: 'agent-tokens', body: { metadata: { name: 'agent-tokens' }, stringData: { token: t3, previous: t2 } } });
      await vi.waitFor(async () => expect((await view(sup.instanceUid)).verified).toMatchObject({ credential: { key: 'token', current: true } }), { timeout: 30_000, interval: 200 });
      // Dropping the previous token: once the bridge has reloaded the tokens (and closed whoever
      // held a revoked one), the agent on the current token is still connected and in sync.
      const reloads = await secretReloads(op, 'bearer_tokens', 'ok');
      await core.replaceNamespacedSecret({ namespace: ns, name: 'agent-tokens', body: { metadata: { name: 'agent-tokens' }, stringData: { token: t3 } } });
      await vi.waitFor(async () => expect(await secretReloads(op, 'bearer_tokens', 'ok')).toBeGreaterThan(reloads), { timeout: 30_000, interval: 200 });
      expect(await view(sup.instanceUid)).toMatchObject({ connected: true, remoteConfig: { inSync: true } });
    }, 120_000);
  });

  describe('TLS from Secrets, client certificates', () => {
    let ns: string;
    let op: RunningOperator;
    let pki: TestPki;
    let agentCert: Awaited<ReturnType<TestPki['issueClient']>>;
    let foreignCert: Awaited<ReturnType<TestPki['issueClient']>>;
    const view = async (uid: string) => (await (await fetch(`${op.apiUrl}/api/v1/agents/${uid}`, { dispatcher } as RequestInit)).json()) as AgentView;
    let dispatcher: UndiciAgent;
    const tlsSecret = (name: string, pair: { cert: string; key: string }, ca?: string) =>
      ({ metadata: { name }, type: 'kubernetes.io/tls', stringData: { 'tls.crt': pair.cert, 'tls.key': pair.key, ...(ca ? { 'ca.crt': ca } : {}) } });
    const peerFingerprint = (port: number) =>
      new Promise<string>((resolve, reject) => {
        const sock = tlsConnect({ host: '127.0.0.1', port, ca: pki.ca.cert, servername: 'localhost' }, () => {
          resolve(sock.getPeerX509Certificate()!.fingerprint256);
          sock.end();
        });
        sock.on('error', reject);
      });
    const attrs = (p: string) => ({ 'k8s.pod.name': p, 'k8s.namespace.name': ns });

    beforeAll(async () => {
      ns = await setupNamespace('mtls');
      await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'other' } } });
      pki = await makeTestPki();
      cleanups.push(() => pki.remove());
      agentCert = await pki.issueClient('agent', `/CN=system:serviceaccount:${ns}:agent`);
      foreignCert = await pki.issueClient('foreign', '/CN=other', `URI:spiffe://cluster.local/ns/somewhere-else/sa/agent`);
      dispatcher = new UndiciAgent({ connect: { ca: pki.ca.cert } });
      await core.createNamespacedSecret({ namespace: ns, body: tlsSecret('opamp-tls', pki.server, pki.ca.cert) });
      await core.createNamespacedSecret({ namespace: ns, body: tlsSecret('admin-tls', pki.server) });
      await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'agents-ca' }, stringData: { 'ca.crt': pki.ca.cert } } });
      await custom.createNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'collectors', body: { apiVersion: `${G}/${V}`, kind: 'Collector', metadata: { name: 'all' }, spec: { selector: {}, config: { exporters: { debug: {} } } } } });
      await custom.createNamespacedCustomObject({
        group: G,
        version: V,
        namespace: ns,
        plural: 'opampbridges',
        body: { apiVersion: `${G}/${V}`, kind: 'OpAMPBridge', metadata: { name: 'fb' }, spec: { heartbeatIntervalSeconds: 1, tls: { secretName: 'opamp-tls', clientCASecretName: 'agents-ca' }, adminTLS: { secretName: 'admin-tls' }, auth: { mode: 'mtls' } } },
      });
      await pod(ns, 'p1', { app: 'x' });
      await core.createNamespacedPod({ namespace: ns, body: { metadata: { name: 'p2', labels: { app: 'x' } }, spec: { serviceAccountName: 'other', containers: [{ name: 'c', image: 'x' }] } } });
      op = await startTestOperator({ kc, namespace: ns, adminAuth: 'none', cleanups });
    }, 120_000);

    it('refuses invalid combinations in the API server with clear messages', async () => {
      const bad = async (spec: object) => {
        try {
          await custom.createNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'opampbridges', body: { apiVersion: `${G}/${V}`, kind: 'OpAMPBridge', metadata: { name: `bad-${randomBytes(3).toString('hex')}` }, spec } });
        } catch (err) {
          return String((err as { body?: string }).body ?? err);
        }
        return 'accepted';
      };
      expect(await bad({ auth: { mode: 'mtls' } })).toContain('auth.mode mtls needs tls.secretName and tls.clientCASecretName');
      expect(await bad({ auth: { mode: 'bearerToken' } })).toContain('auth.mode bearerToken needs auth.bearerToken.secretName');
      expect(await bad({ ownTelemetry: { metrics: { endpoint: 'not a url' } } })).not.toBe('accepted');
    });

    it('serves wss:// and https:// from the Secret, and binds a client certificate to a pod of its namespace and ServiceAccount', async () => {
      expect(op.opampUrl.websocket).toMatch(/^wss:\/\//);
      expect(op.apiUrl).toMatch(/^https:\/\//);
      expect((await fetch(`${op.apiUrl}/healthz`, { dispatcher } as RequestInit)).status).toBe(200);
      const a = await startGoAgent({ endpoint: op.opampUrl.websocket, caFile: pki.ca.certFile, certFile: agentCert.certFile, keyFile: agentCert.keyFile, attrs: attrs('p1'), heartbeatSeconds: 1 });
      cleanups.push(() => a.stop());
      await a.waitForConfigStatus('APPLIED');
      expect(await view(a.instanceUid)).toMatchObject({ pod: `${ns}/p1`, identityError: null, verified: { method: 'mtls', namespace: ns, serviceAccount: 'agent', username: `system:serviceaccount:${ns}:agent` } });

      // The same certificate claiming a pod that runs as another ServiceAccount gets nothing.
      const liar = await startGoAgent({ endpoint: op.opampUrl.websocket, caFile: pki.ca.certFile, certFile: agentCert.certFile, keyFile: agentCert.keyFile, attrs: attrs('p2') });
      cleanups.push(() => liar.stop());
      await vi.waitFor(async () => expect((await view(liar.instanceUid)).identityError).toBe(`the agent claims pod ${ns}/p2 (ServiceAccount other) but its certificate is for ${ns}/agent`), WAIT);
      expect(liar.remoteConfigs()).toHaveLength(0);
      // A certificate for another namespace cannot get into this one.
      const foreign = await startGoAgent({ endpoint: op.opampUrl.websocket, caFile: pki.ca.certFile, certFile: foreignCert.certFile, keyFile: foreignCert.keyFile, attrs: attrs('p1') });
      cleanups.push(() => foreign.stop());
      await vi.waitFor(async () => expect((await view(foreign.instanceUid)).identityError).toContain('but its certificate is for somewhere-else/agent'), WAIT);
      expect(foreign.remoteConfigs()).toHaveLength(0);

      // No certificate, or one from another CA: refused with HTTP status codes, not handshake errors.
      const post = (cert?: { cert: string; key: string }) =>
        fetch(op.opampUrl.http, { method: 'POST', headers: { 'Content-Type': 'application/x-protobuf' }, body: new Uint8Array([0]), dispatcher: new UndiciAgent({ connect: { ca: pki.ca.cert, ...(cert ? { cert: cert.cert, key: cert.key } : {}) } }) } as RequestInit);
      expect((await post()).status).toBe(401);
      expect((await post(pki.clients.otherCa)).status).toBe(401);
      expect((await post(pki.clients.plain)).status).toBe(403);
    });

    it('reloads the serving certificate when its Secret changes, keeping connected agents', async () => {
      const a = await startGoAgent({ endpoint: op.opampUrl.websocket, caFile: pki.ca.certFile, certFile: agentCert.certFile, keyFile: agentCert.keyFile, attrs: attrs('p1'), heartbeatSeconds: 1 });
      cleanups.push(() => a.stop());
      await a.waitForConfigStatus('APPLIED');
      const port = Number(new URL(op.opampUrl.websocket).port);
      expect(await peerFingerprint(port)).toBe(new X509Certificate(pki.server.cert).fingerprint256);
      await core.replaceNamespacedSecret({ namespace: ns, name: 'opamp-tls', body: tlsSecret('opamp-tls', pki.server2, pki.ca.cert) });
      await vi.waitFor(async () => expect(await peerFingerprint(port)).toBe(new X509Certificate(pki.server2.cert).fingerprint256), WAIT);
      // Still the first connection: no reconnect, and it keeps being served (heartbeats seen).
      const seen = (await view(a.instanceUid)).lastSeen;
      await vi.waitFor(async () => expect((await view(a.instanceUid)).lastSeen > seen).toBe(true), WAIT);
      expect(a.events.filter((e) => e.event === 'connected')).toHaveLength(1);
      // A Secret with a broken certificate is refused; the current one keeps serving.
      const refused = await secretReloads(op, 'opamp_tls', 'error', dispatcher);
      await core.replaceNamespacedSecret({ namespace: ns, name: 'opamp-tls', body: { ...tlsSecret('opamp-tls', pki.server2), stringData: { 'tls.crt': 'garbage', 'tls.key': pki.server2.key } } });
      await vi.waitFor(async () => expect(await secretReloads(op, 'opamp_tls', 'error', dispatcher)).toBeGreaterThan(refused), WAIT);
      expect(await peerFingerprint(port)).toBe(new X509Certificate(pki.server2.cert).fingerprint256);
      expect((await view(a.instanceUid)).connected).toBe(true);
    });
  });

  describe('own-telemetry offers', () => {
    it('sends the Supervisor a destination for its collector\'s own logs, with headers from a Secret, and re-offers when the Secret rotates', async () => {
      await ensureOtelBinaries();
      // An OTLP/HTTP endpoint of our own that records what reaches it.
      const received: { path: string; headers: IncomingHttpHeaders; bytes: number }[] = [];
      const sink = createHttpServer((req, res) => {
        let bytes = 0;
        req.on('data', (c: Buffer) => (bytes += c.length));
        req.on('end', () => {
          received.push({ path: req.url ?? '', headers: req.headers, bytes });
          res.writeHead(200, { 'Content-Type': 'application/x-protobuf' }).end();
        });
      });
      await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
      cleanups.push(() => new Promise((r) => sink.close(r)));
      const sinkPort = (sink.address() as { port: number }).port;

      const ns = await setupNamespace('owntel');
      const key1 = `k1-${randomBytes(6).toString('hex')}`;
      const key2 = `k2-${randomBytes(6).toString('hex')}`;
      await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'telemetry-headers' }, stringData: { 'x-api-key': key1 } } });
      await custom.createNamespacedCustomObject({ group: G, version: V, namespace: ns, plural: 'collectors', body: { apiVersion: `${G}/${V}`, kind: 'Collector', metadata: { name: 'all' }, spec: { selector: {}, config: { receivers: { nop: {} }, exporters: { nop: {} }, service: { pipelines: { logs: { receivers: ['nop'], exporters: ['nop'] } } } } } } });
      await custom.createNamespacedCustomObject({
        group: G,
        version: V,
        namespace: ns,
        plural: 'opampbridges',
        body: { apiVersion: `${G}/${V}`, kind: 'OpAMPBridge', metadata: { name: 'fb' }, spec: { heartbeatIntervalSeconds: 1, auth: { mode: 'none' }, ownTelemetry: { logs: { endpoint: `http://127.0.0.1:${sinkPort}/v1/logs`, headersSecretName: 'telemetry-headers' } } } },
      });
      await pod(ns, 'c1', { app: 'x' });
      const op = await startTestOperator({ kc, namespace: ns, adminAuth: 'none', cleanups });
      const workDir = await mkdtemp(join(tmpdir(), 'fb-own-'));
      cleanups.push(() => rm(workDir, { recursive: true, force: true }));
      const sup = await startSupervisedCollector({
        endpoint: op.opampUrl.websocket,
        workDir,
        attributes: { 'k8s.pod.name': 'c1', 'k8s.namespace.name': ns },
        extraConfig: { capabilities: { reports_own_logs: true } },
      });
      cleanups.push(() => sup.stop());
      const logsWith = (key: string) => received.filter((r) => r.path === '/v1/logs' && r.headers['x-api-key'] === key && r.bytes > 0);
      await vi.waitFor(() => expect(logsWith(key1).length).toBeGreaterThan(0), { timeout: 60_000, interval: 250 });
      const view = (await (await fetch(`${op.apiUrl}/api/v1/agents/${sup.instanceUid}`)).json()) as AgentView;
      expect(view.connectionSettings?.offeredHash).toMatch(/^[0-9a-f]{64}$/);
      // The header value is a secret too: what the agent reports back shows it redacted.
      expect(JSON.stringify(view)).not.toContain(key1);

      await core.replaceNamespacedSecret({ namespace: ns, name: 'telemetry-headers', body: { metadata: { name: 'telemetry-headers' }, stringData: { 'x-api-key': key2 } } });
      await vi.waitFor(() => expect(logsWith(key2).length).toBeGreaterThan(0), { timeout: 60_000, interval: 250 });
    }, 150_000);
  });
});
