/**
 * Security in standalone mode, with the opamp-go test agent as the peer: Secret manifests in the
 * folder feed `${secret:...}` references (values pushed, never shown), bearer tokens (with
 * rotation through ConnectionSettingsOffers) and TLS / mTLS certificates (reloaded on change).
 */
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { randomBytes, X509Certificate } from 'node:crypto';
import { connect as tlsConnect } from 'node:tls';
import { Agent as UndiciAgent } from 'undici';
import { goMissingReason, startGoAgent, type GoAgent } from '../harness/go-agent.js';
import { collectorYaml, startTestBridge, type TestBridge } from '../harness/standalone.js';
import { makeTestPki, opensslMissingReason, type TestPki } from '../harness/tls.js';
import { skipUnlessOnCi } from '../harness/tools.js';
import type { AgentView } from '../../src/fleet/view-types.js';

const skip = skipUnlessOnCi('standalone-security.test', goMissingReason() ?? opensslMissingReason());
const WAIT = { timeout: 15_000, interval: 100 };

const bridgeYaml = (spec: object) => `apiVersion: fleetbridge.dev/v1alpha1\nkind: OpAMPBridge\nmetadata: { name: fb, namespace: default }\nspec: ${JSON.stringify(spec)}\n`;
const secretYaml = (name: string, stringData: Record<string, string>, namespace = 'default') =>
  `apiVersion: v1\nkind: Secret\nmetadata: { name: ${name}, namespace: ${namespace} }\nstringData: ${JSON.stringify(stringData)}\n`;

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

describe.skipIf(skip)('standalone mode: secrets, tokens, certificates', () => {
  async function bridge(manifests: Record<string, string>): Promise<TestBridge> {
    const b = await startTestBridge({ manifests });
    cleanups.push(() => b.stop());
    return b;
  }
  async function agent(opts: Parameters<typeof startGoAgent>[0]): Promise<GoAgent> {
    const a = await startGoAgent({ heartbeatSeconds: 1, ...opts });
    cleanups.push(() => a.stop());
    return a;
  }

  it('refuses to start with serviceAccountToken auth, which needs Kubernetes', async () => {
    await expect(startTestBridge({ manifests: { 'bridge.yaml': bridgeYaml({}) } })).rejects.toThrow(
      'bridge.yaml: spec.auth.mode serviceAccountToken (the default) needs Kubernetes (a TokenReview); in standalone mode set spec.auth.mode to bearerToken (tokens from a Secret manifest), mtls, or none',
    );
  });

  it('substitutes Secret values into pushes only, redacts what agents report, and re-pushes exactly the users of a rotated Secret', async () => {
    const planted = [1, 2, 3].map((i) => `planted-${i}-${randomBytes(8).toString('hex')}`);
    const secure = { exporters: { otlphttp: { endpoint: 'https://ingest.example', headers: { 'x-api-key': '${secret:creds/api-key}' } } } };
    const b = await bridge({
      'bridge.yaml': bridgeYaml({ auth: { mode: 'none' } }),
      'creds.yaml': secretYaml('creds', { 'api-key': planted[0]! }),
      'secure.yaml': collectorYaml('secure', { role: 'secure' }, secure).replace('spec:\n', 'spec:\n  secretRefs: [{ name: creds }]\n'),
      'plain.yaml': collectorYaml('plain', { role: 'plain' }, { exporters: { debug: {} } }),
    });
    const a = await agent({ endpoint: b.opampWsUrl, attrs: { role: 'secure' } });
    const p = await agent({ endpoint: b.opampWsUrl, attrs: { role: 'plain' } });
    const rc = await a.waitForRemoteConfig((e) => !!e.body?.includes(planted[0]!));
    await a.waitForConfigStatus('APPLIED', rc.hash);
    await p.waitForConfigStatus('APPLIED');
    await vi.waitFor(async () => expect((await b.getAgent(a.instanceUid))?.effectiveConfig?.['']?.body).toMatch(/x-api-key: \[REDACTED\]/), WAIT);
    expect((await b.getCollector('secure'))?.configHash).toBe(rc.hash);

    // Rotation: a new value reaches the agent that uses it; the other gets nothing.
    const plainConfigs = p.remoteConfigs().length;
    const plainHash = (await b.getCollector('plain'))?.configHash;
    expect(plainHash).toMatch(/^[0-9a-f]+$/);
    await b.writeManifest('creds.yaml', secretYaml('creds', { 'api-key': planted[1]! }));
    const rc2 = await a.waitForRemoteConfig((e) => !!e.body?.includes(planted[1]!));
    expect(rc2.hash).not.toBe(rc.hash);
    await a.waitForConfigStatus('APPLIED', rc2.hash);
    await vi.waitFor(async () => expect((await b.getCollector('secure'))?.status).toMatchObject({ applied: 1 }), WAIT);
    expect((await b.getCollector('secure'))?.configHash).toBe(rc2.hash);
    expect(p.remoteConfigs()).toHaveLength(plainConfigs);
    expect((await b.getCollector('plain'))?.configHash).toBe(plainHash);

    // An agent that quotes the value in its error: shown redacted.
    await a.command({ cmd: 'mode', remoteConfig: 'fail', error: `rejected key ${planted[2]}` });
    await b.writeManifest('creds.yaml', secretYaml('creds', { 'api-key': planted[2]! }));
    await a.waitForConfigStatus('FAILED');
    await vi.waitFor(async () => expect((await b.getAgent(a.instanceUid))?.remoteConfig.errorMessage).toBe('rejected key [REDACTED]'), WAIT);

    // A broken Secret file is reported by key, without its value, and the last good one stays.
    await b.writeManifest('creds.yaml', `apiVersion: v1\nkind: Secret\nmetadata: { name: creds }\ndata: { api-key: "not base64 ${planted[2]}!" }\n`);
    await vi.waitFor(async () => expect((await b.getCollectors()).invalidFiles.map((f) => f.issues.join(' '))).toEqual([expect.stringContaining('creds.yaml: Secret: data.api-key: must be base64')]), WAIT);

    const texts: Record<string, string> = {
      logs: JSON.stringify(b.logs),
      agents: JSON.stringify(await b.getAgents()),
      agent: JSON.stringify(await b.getAgent(a.instanceUid)),
      collectors: JSON.stringify(await b.getCollectors()),
      metrics: await b.metricsText(),
    };
    expect(a.remoteConfigs().map((r) => r.body ?? '').join('')).toContain(planted[2]);
    for (const [where, text] of Object.entries(texts)) for (const v of planted) expect(text.includes(v), `${where} shows ${v}`).toBe(false);
  });

  it('without an OpAMPBridge manifest, serves any agent and warns that authentication is off', async () => {
    const b = await bridge({ 'all.yaml': collectorYaml('all', {}, { exporters: { debug: {} } }) });
    expect(b.logs).toContainEqual(expect.objectContaining({ level: 40, msg: expect.stringMatching(/^Agent authentication is off/) }));
    const a = await agent({ endpoint: b.opampWsUrl });
    await a.waitForConfigStatus('APPLIED');
    expect((await b.getAgent(a.instanceUid))?.verified ?? null).toBeNull();

    // Adding an OpAMPBridge that asks for tokens switches the running bridge: the agent that
    // connected without one is disconnected, and requests without a token are refused.
    await b.writeManifest('t.yaml', secretYaml('t', { token: `tok-${randomBytes(10).toString('hex')}` }));
    await b.writeManifest('bridge.yaml', bridgeYaml({ auth: { mode: 'bearerToken', bearerToken: { secretName: 't' } } }));
    await vi.waitFor(() => expect(b.logs).toContainEqual(expect.objectContaining({ msg: 'Agent authentication changed', mode: 'bearerToken' })), WAIT);
    await vi.waitFor(async () => expect((await b.getAgent(a.instanceUid))?.connected).toBe(false), WAIT);
    const r = await fetch(b.opampHttpUrl, { method: 'POST', headers: { 'Content-Type': 'application/x-protobuf' }, body: new Uint8Array([0]) });
    expect(r.status).toBe(401);
  });

  it('bearer tokens from a Secret manifest: refuses others, rotates through an offer, cuts off a revoked token', async () => {
    const [t1, t2] = [1, 2].map((i) => `tok-${i}-${randomBytes(10).toString('hex')}`);
    const b = await bridge({
      'bridge.yaml': bridgeYaml({ auth: { mode: 'bearerToken', bearerToken: { secretName: 'agent-tokens' } } }),
      'tokens.yaml': secretYaml('agent-tokens', { token: t1! }),
      'all.yaml': collectorYaml('all', {}, { exporters: { debug: {} } }),
    });
    for (const auth of [undefined, `Bearer ${t2}`]) {
      const r = await fetch(b.opampHttpUrl, { method: 'POST', headers: { 'Content-Type': 'application/x-protobuf', ...(auth ? { Authorization: auth } : {}) }, body: new Uint8Array([0]) });
      expect(r.status).toBe(401);
    }
    const mover = await agent({ endpoint: b.opampWsUrl, headers: { Authorization: `Bearer ${t1}` } });
    const stayer = await agent({ endpoint: b.opampWsUrl, headers: { Authorization: `Bearer ${t1}` }, acceptsConnectionSettings: false });
    await mover.waitForConfigStatus('APPLIED');
    await stayer.waitForConfigStatus('APPLIED');
    expect((await b.getAgent(mover.instanceUid))?.verified).toEqual({ method: 'bearerToken', username: 'bearer-token:default/token', namespace: 'default', credential: { key: 'token', current: true } });

    await b.writeManifest('tokens.yaml', secretYaml('agent-tokens', { token: t2!, previous: t1! }));
    await mover.waitFor((e) => e.event === 'connection_settings' && e.authorization === `Bearer ${t2}`, { timeoutMs: 15_000 });
    await mover.waitFor((e) => e.event === 'connected' && Number(e.client) >= 2, { timeoutMs: 15_000 });
    await vi.waitFor(async () => expect((await b.getAgent(mover.instanceUid))?.verified?.credential).toEqual({ key: 'token', current: true }), WAIT);
    expect((await b.getAgent(stayer.instanceUid))?.verified?.credential).toEqual({ key: 'previous', current: false });

    const since = stayer.events.length;
    await b.writeManifest('tokens.yaml', secretYaml('agent-tokens', { token: t2! }));
    await stayer.waitFor((e) => e.event === 'connect_failed', { since, timeoutMs: 15_000 });
    await vi.waitFor(async () => expect((await b.getAgent(stayer.instanceUid))?.connected).toBe(false), WAIT);
    expect((await b.getAgent(mover.instanceUid))?.connected).toBe(true);
    expect(JSON.stringify(b.logs)).not.toContain(t1);
  });

  describe('TLS and client certificates', () => {
    let pki: TestPki;
    afterAll(async () => pki?.remove());

    it('serves wss:// and https:// from Secret manifests, takes a certificate\'s namespace, and reloads certificates in place', async () => {
      pki = await makeTestPki();
      const tlsYaml = (pair: { cert: string; key: string }) => secretYaml('opamp-tls', { 'tls.crt': pair.cert, 'tls.key': pair.key });
      const b = await bridge({
        'bridge.yaml': bridgeYaml({ auth: { mode: 'mtls' }, tls: { secretName: 'opamp-tls', clientCASecretName: 'agents-ca' }, adminTLS: { secretName: 'admin-tls' } }),
        'opamp-tls.yaml': tlsYaml(pki.server),
        'admin-tls.yaml': secretYaml('admin-tls', { 'tls.crt': pki.server.cert, 'tls.key': pki.server.key }),
        'ca.yaml': secretYaml('agents-ca', { 'ca.crt': pki.ca.cert }),
        'team-a.yaml': collectorYaml('team', {}, { exporters: { debug: {} } }, { namespace: 'team-a' }),
      });
      expect(b.opampWsUrl).toMatch(/^wss:/);
      const dispatcher = new UndiciAgent({ connect: { ca: pki.ca.cert } });
      const api = b.apiUrl.replace(/^http:/, 'https:');
      expect((await fetch(`${api}/healthz`, { dispatcher } as RequestInit)).status).toBe(200);
      const view = async (uid: string) => (await (await fetch(`${api}/api/v1/agents/${uid}`, { dispatcher } as RequestInit)).json()) as AgentView;

      const a = await agent({ endpoint: b.opampWsUrl, caFile: pki.ca.certFile, certFile: pki.clients.spiffe.certFile, keyFile: pki.clients.spiffe.keyFile });
      await a.waitForConfigStatus('APPLIED');
      expect(await view(a.instanceUid)).toMatchObject({ namespace: 'team-a', verified: { method: 'mtls', namespace: 'team-a', serviceAccount: 'collector' } });
      const liar = await agent({ endpoint: b.opampWsUrl, caFile: pki.ca.certFile, certFile: pki.clients.spiffe.certFile, keyFile: pki.clients.spiffe.keyFile, attrs: { 'k8s.namespace.name': 'team-b' } });
      await vi.waitFor(async () => expect((await view(liar.instanceUid)).identityError).toBe('the agent claims namespace team-b but its certificate is for namespace team-a'), WAIT);
      expect(liar.remoteConfigs()).toHaveLength(0);
      const post = (cert?: { cert: string; key: string }) =>
        fetch(b.opampHttpUrl, { method: 'POST', headers: { 'Content-Type': 'application/x-protobuf' }, body: new Uint8Array([0]), dispatcher: new UndiciAgent({ connect: { ca: pki.ca.cert, ...(cert ?? {}) } }) } as RequestInit);
      expect((await post()).status).toBe(401);
      expect((await post(pki.clients.otherCa)).status).toBe(401);
      // The Go agent over wss:// without a client certificate, or with one from another CA: refused.
      for (const client of [undefined, pki.clients.otherCa]) {
        const refused = await agent({ endpoint: b.opampWsUrl, caFile: pki.ca.certFile, ...(client ? { certFile: client.certFile, keyFile: client.keyFile } : {}) });
        await refused.waitFor((e) => e.event === 'connect_failed', { timeoutMs: 15_000 });
        expect(refused.events.some((e) => e.event === 'connected')).toBe(false);
        expect(await (await fetch(`${api}/api/v1/agents/${refused.instanceUid}`, { dispatcher } as RequestInit)).status).toBe(404);
      }

      const port = Number(new URL(b.opampWsUrl).port);
      const fingerprint = () =>
        new Promise<string>((resolve, reject) => {
          const s = tlsConnect({ host: '127.0.0.1', port, ca: pki.ca.cert, servername: 'localhost' }, () => {
            resolve(s.getPeerX509Certificate()!.fingerprint256);
            s.end();
          });
          s.on('error', reject);
        });
      expect(await fingerprint()).toBe(new X509Certificate(pki.server.cert).fingerprint256);
      await b.writeManifest('opamp-tls.yaml', tlsYaml(pki.server2));
      await vi.waitFor(async () => expect(await fingerprint()).toBe(new X509Certificate(pki.server2.cert).fingerprint256), WAIT);
      const seen = (await view(a.instanceUid)).lastSeen;
      await vi.waitFor(async () => expect((await view(a.instanceUid)).lastSeen > seen).toBe(true), WAIT);
      expect(a.events.filter((e) => e.event === 'connected')).toHaveLength(1);

      // A bad certificate (a key that does not match) is refused with an error; the last good one is served.
      await b.writeManifest('opamp-tls.yaml', secretYaml('opamp-tls', { 'tls.crt': pki.server.cert, 'tls.key': pki.server2.key }));
      await vi.waitFor(() => expect(b.logs).toContainEqual(expect.objectContaining({ level: 50, endpoint: 'opamp', msg: 'Cannot reload TLS certificates; serving the previous ones' })), WAIT);
      expect(await fingerprint()).toBe(new X509Certificate(pki.server2.cert).fingerprint256);
      expect((await view(a.instanceUid)).connected).toBe(true);
      expect(JSON.stringify(b.logs)).not.toContain(pki.server2.key.split('\n')[1]!);
    });

    it('does not start a TLS endpoint whose certificate Secret is missing', async () => {
      await expect(startTestBridge({ manifests: { 'bridge.yaml': bridgeYaml({ auth: { mode: 'none' }, tls: { secretName: 'nope' } }) } })).rejects.toThrow(/cannot serve the OpAMP endpoint with TLS: Secret default\/nope with tls.crt and tls.key not found/);
    });
  });
});
