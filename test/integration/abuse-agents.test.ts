/**
 * Hostile agents against a real bridge process, each attack beside a well-behaved bystander agent
 * (test/harness/bystander.ts): the bridge stays up, the bystander is answered within 2 s, the
 * bridge's memory stays under its bound, and every refusal is counted. Loopback only; every loop is
 * bounded in count and time.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServerErrorResponseType } from '../../src/opamp/messages.js';
import { bearerHeaders, collectorYaml, metricValue, opampBridgeYaml, secretYaml, startBridgeProcess, waitUntil, type BridgeProcess } from '../harness/bridge-process.js';
import { startBystander, type Bystander } from '../harness/bystander.js';
import { RawWsAgent, encodeAgent, httpPost, randomUid } from '../harness/raw-agent.js';

const TOKEN = 'victim-token-0123456789';
const OTHER = 'thief-token-9876543210';
/** The bridge's resident memory must stay under this during every attack (idle it is about 80 MiB). */
const RSS_BOUND = 400 * 1024 * 1024;

let bridge: BridgeProcess;
let bystander: Bystander;
let peakRss = 0;
let rssTimer: NodeJS.Timeout;

function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

const description = (attrs: Record<string, string>) => ({ identifyingAttributes: Object.entries(attrs).map(([key, v]) => ({ key, value: { stringValue: v } })) });
const refusals = async (code: string) => {
  const text = await bridge.metricsText();
  return ['websocket', 'http'].reduce((n, t) => n + (metricValue(text, 'fleetbridge_opamp_protocol_errors_total', `transport="${t}",code="${code}"`) ?? 0), 0);
};

beforeAll(async () => {
  bridge = await startBridgeProcess({
    manifests: {
      'bridge.yaml': opampBridgeYaml({ auth: { mode: 'bearerToken', bearerToken: { secretName: 'agent-tokens' } }, limits: { newAgentsPerSource: { burst: 1000, perSecond: 100 } } }),
      'agent-tokens.yaml': secretYaml('agent-tokens', { token: TOKEN, other: OTHER }),
      'all.yaml': collectorYaml('all', {}, { receivers: { otlp: { protocols: { grpc: {} } } }, exporters: { debug: {} }, service: { pipelines: { traces: { receivers: ['otlp'], exporters: ['debug'] } } } }),
    },
  });
  bystander = await startBystander(bridge.opampWsUrl, { headers: bearerHeaders(TOKEN) });
  rssTimer = setInterval(() => {
    if (bridge.pid) peakRss = Math.max(peakRss, rss(bridge.pid));
  }, 50);
}, 120_000);

afterAll(async () => {
  clearInterval(rssTimer);
  const lat = await bystander?.stop().catch(() => [] as number[]);
  if (lat?.length) console.log(`[abuse-agents] bystander: ${lat.length} answers, worst ${Math.max(...lat)} ms; bridge peak RSS ${(peakRss / 1048576).toFixed(0)} MiB`);
  await bridge?.stop();
});

function expectHealthy(): void {
  expect(bystander.worstMs()).toBeLessThan(2000);
  expect(peakRss).toBeLessThan(RSS_BOUND);
}

describe('agents that report too much', () => {
  it('refuses huge descriptions from fresh uids (the message limit, then the report bounds), and keeps none of them', async () => {
    const before = await refusals('FB_OPAMP_AGENT_LIMIT');
    // 1,000,000 attributes (about 15 MB): over the message limit, refused before decoding (413, or
    // the connection ends while the client still writes: the server does not read the rest).
    const tooLarge = await refusals('FB_OPAMP_TOO_LARGE');
    const huge = encodeAgent({ instanceUid: randomUid(), sequenceNum: 0, capabilities: 1, agentDescription: { identifyingAttributes: Array.from({ length: 1_000_000 }, (_, i) => ({ key: `k${i}`, value: { stringValue: 'v' } })) } });
    for (let i = 0; i < 5; i++) {
      const status = await httpPost(bridge.opampHttpUrl, huge, { headers: bearerHeaders(TOKEN) }).then((r) => r.status, (err: Error) => String((err.cause as Error | undefined)?.message ?? err));
      expect(String(status)).toMatch(/^413$|EPIPE|ECONNRESET|other side closed/);
    }
    await waitUntil(async () => (await refusals('FB_OPAMP_TOO_LARGE')) - tooLarge === 5, { timeoutMs: 10_000, what: 'five FB_OPAMP_TOO_LARGE refusals' });
    // Under the message limit but over the bounds: refused whole with the reason, 40 times.
    for (let i = 0; i < 40; i++) {
      const body = encodeAgent({ instanceUid: randomUid(), sequenceNum: 0, capabilities: 1, agentDescription: { identifyingAttributes: Array.from({ length: 300 + i * 100 }, (_, j) => ({ key: `k${j}`, value: { stringValue: 'v' } })) } });
      const r = await post(body);
      expect(r.message?.errorResponse?.type).toBe(ServerErrorResponseType.BadRequest);
      expect(r.message?.errorResponse?.errorMessage).toMatch(/more than 256 attributes/);
    }
    const big = await post(encodeAgent({ instanceUid: randomUid(), sequenceNum: 0, capabilities: 1, agentDescription: description({ 'service.name': 'x', blob: 'x'.repeat(3_000_000) }) }));
    expect(big.message?.errorResponse?.errorMessage).toMatch(/value of 3000000 bytes/);
    expect((await refusals('FB_OPAMP_AGENT_LIMIT')) - before).toBe(41);
    // The API answers, and lists none of them.
    const agents = await bridge.getAgents();
    expect(agents.map((a) => a.description?.identifying['service.name'])).toEqual(['bystander']);
    expectHealthy();
  }, 60_000);

  it('serves the bystander while one socket sends the largest reports it may', async () => {
    const agent = await RawWsAgent.connect(bridge.opampWsUrl, randomUid(), bearerHeaders(TOKEN));
    const config = Buffer.from('receivers:\n' + Array.from({ length: 20_000 }, (_, i) => `  otlp/r${i}: { protocols: { grpc: { endpoint: "127.0.0.1:${i}" } } }\n`).join('')).subarray(0, 250 * 1024);
    for (let i = 0; i < 10; i++) {
      agent.send({ capabilities: 0x1fff, agentDescription: description({ 'service.name': `heavy-${i}` }), effectiveConfig: { configMap: { configMap: { '': { body: Buffer.concat([config, Buffer.from(`# ${i}\n`)]), contentType: 'text/yaml' } } } } });
    }
    await agent.waitForMessages(10, 30_000);
    expect(agent.received.every((m) => !m.errorResponse)).toBe(true);
    agent.close();
    expectHealthy();
  }, 60_000);
});

describe('agents that take what is not theirs', () => {
  it('refuses another token holder posting with a connected agent\'s uid: the victim keeps its connection and its state', async () => {
    const victim = await RawWsAgent.connect(bridge.opampWsUrl, randomUid(), bearerHeaders(TOKEN));
    victim.send({ capabilities: 0x1007, agentDescription: description({ 'service.name': 'victim' }) });
    const first = await victim.waitForMessages(1);
    const hash = first.remoteConfig!.configHash!;
    victim.send({ capabilities: 0x1007, remoteConfigStatus: { lastRemoteConfigHash: hash, status: 1 } });
    await victim.waitForMessages(2);
    const before = await refusals('FB_OPAMP_UID_HELD');
    for (let i = 0; i < 5; i++) {
      const thief = await RawWsAgent.connect(bridge.opampWsUrl, victim.uid, bearerHeaders(OTHER));
      thief.send({ capabilities: 0x1007, remoteConfigStatus: { lastRemoteConfigHash: hash, status: 3, errorMessage: 'forged' } });
      const answer = await thief.waitForMessages(1);
      expect(answer.errorResponse?.errorMessage).toMatch(/held by another identity/);
      thief.close();
      const posted = await post(encodeAgent({ instanceUid: victim.uid, sequenceNum: 9, capabilities: 0x1007, remoteConfigStatus: { lastRemoteConfigHash: hash, status: 3, errorMessage: 'forged' } }), OTHER);
      expect(posted.message?.errorResponse?.errorMessage).toMatch(/held by another identity/);
    }
    expect(victim.closeInfo).toBeNull();
    const view = await bridge.getAgent(victim.uidString);
    expect(view?.remoteConfig).toMatchObject({ status: 'APPLIED', inSync: true });
    expect(view?.connected).toBe(true);
    expect((await refusals('FB_OPAMP_UID_HELD')) - before).toBe(10);
    victim.close();
    expectHealthy();
  }, 60_000);

  it('gives one of two cloned agents (same uid, same token, both connected) a new uid instead of closing them in turn forever', async () => {
    const uid = randomUid();
    const a = await RawWsAgent.connect(bridge.opampWsUrl, uid, bearerHeaders(TOKEN));
    const connections = [a];
    let reassigned: Uint8Array | null = null;
    // Each clone reconnects when closed, as agents do; bounded to 10 rounds.
    for (let round = 0; round < 10 && !reassigned; round++) {
      const b = await RawWsAgent.connect(bridge.opampWsUrl, uid, bearerHeaders(TOKEN));
      connections.push(b);
      b.send({ capabilities: 1, agentDescription: description({ 'service.name': 'clone' }) });
      const m = await b.waitForMessages(1);
      reassigned = m.agentIdentification?.newInstanceUid ?? null;
    }
    expect(reassigned).not.toBeNull();
    expect(Buffer.from(reassigned!).equals(uid)).toBe(false);
    for (const c of connections) c.terminate();
    expectHealthy();
  }, 60_000);
});

describe('agents that fill the registry', () => {
  it('refuses a flood of fresh uids from one address past its budget, still admits another address, and forgets what never completed a report', async () => {
    const before = await refusals('FB_OPAMP_OVERLOADED');
    let unavailable = 0;
    const total = 3000;
    let next = 0;
    const t0 = Date.now();
    // 3,000 posts with fresh uids (no description: they never complete a first report), 32 at a time,
    // at most 60 s, against a budget of 1,000 at once and 100 a second.
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < total && Date.now() - t0 < 60_000) {
          next++;
          const r = await post(encodeAgent({ instanceUid: randomUid(), sequenceNum: 3, capabilities: 1 }));
          if (r.message?.errorResponse?.type === ServerErrorResponseType.Unavailable) unavailable++;
        }
      }),
    );
    expect(next).toBe(total);
    expect(unavailable).toBeGreaterThan(0);
    expect((await refusals('FB_OPAMP_OVERLOADED')) - before).toBe(unavailable);
    // Another address is not held back by it.
    const other = await post(encodeAgent({ instanceUid: randomUid(), sequenceNum: 0, capabilities: 1, agentDescription: description({ 'service.name': 'newcomer' }) }), TOKEN, '127.0.0.2');
    expect(other.message?.errorResponse ?? null).toBeNull();
    // Records that never completed a first report are gone after 10 s.
    await waitUntil(async () => (await bridge.getAgents()).every((a) => a.description !== null), { timeoutMs: 20_000, what: 'unidentified records forgotten' });
    expectHealthy();
  }, 120_000);
});

async function post(body: Buffer, token = TOKEN, localAddress?: string) {
  return httpPost(bridge.opampHttpUrl, body, { headers: bearerHeaders(token), ...(localAddress ? { localAddress } : {}) });
}
