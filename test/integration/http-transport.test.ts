import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parse } from 'yaml';
import { collectorYaml, startTestBridge, type TestBridge } from '../harness/standalone.js';
import { encodeAgent, httpPost, randomUid } from '../harness/raw-agent.js';
import { AgentCapabilities as C, SERVER_CAPABILITIES } from '../../src/opamp/messages.js';
import { uidToString } from '../../src/opamp/uid.js';

const CAPS = C.ReportsStatus | C.AcceptsRemoteConfig | C.ReportsRemoteConfig;
const desc = (attrs: Record<string, string>) => ({
  nonIdentifyingAttributes: Object.entries(attrs).map(([key, v]) => ({ key, value: { stringValue: v } })),
});

let bridge: TestBridge;
beforeAll(async () => {
  bridge = await startTestBridge({
    maxMessageBytes: 32 * 1024,
    manifests: {
      'h.yaml': collectorYaml('http-edge', { role: 'http-edge' }, { exporters: { debug: {} } }),
      'big.yaml': collectorYaml('http-big', { role: 'http-big' }, { processors: { attributes: { actions: Array.from({ length: 40 }, (_, i) => ({ key: `team.attribute.${i}`, value: `value-${i}`, action: 'upsert' })) } }, exporters: { debug: {} } }),
    },
  });
});
afterAll(async () => {
  await bridge?.stop();
});

describe('HTTP transport', () => {
  it('answers a poll with the uid, capabilities and the selected config, gzipped when asked', async () => {
    const uid = randomUid();
    const r = await httpPost(bridge.opampHttpUrl, encodeAgent({ instanceUid: uid, capabilities: CAPS, agentDescription: desc({ role: 'http-edge' }), remoteConfigStatus: {} }), { gzip: true, acceptGzip: true });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('application/x-protobuf');
    // A small answer is not worth compressing, asked or not.
    expect(r.headers.get('content-encoding')).toBeNull();
    expect(Buffer.from(r.message!.instanceUid!)).toEqual(uid);
    expect(Number(r.message!.capabilities)).toBe(SERVER_CAPABILITIES);
    expect(parse(Buffer.from(r.message!.remoteConfig!.config!.configMap!['']!.body!).toString())).toEqual({ exporters: { debug: {} } });
    expect(await bridge.getAgent(uidToString(uid))).toMatchObject({ transport: 'http', connected: true });
  });

  it('gzips an answer of 1 KiB or more when the agent accepts gzip', async () => {
    const uid = randomUid();
    const r = await httpPost(bridge.opampHttpUrl, encodeAgent({ instanceUid: uid, capabilities: CAPS, agentDescription: desc({ role: 'http-big' }), remoteConfigStatus: {} }), { acceptGzip: true });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-encoding')).toBe('gzip');
    expect(Number(r.headers.get('content-length'))).toBeLessThan(1024);
    expect(Buffer.from(r.message!.remoteConfig!.config!.configMap!['']!.body!).toString()).toContain('team.attribute.39');
  });

  it('answers plainly when gzip is not accepted, and carries pending config on the next poll', async () => {
    const uid = randomUid();
    const first = await httpPost(bridge.opampHttpUrl, encodeAgent({ instanceUid: uid, capabilities: CAPS, agentDescription: desc({ role: 'nobody' }), remoteConfigStatus: {} }));
    expect(first.headers.get('content-encoding')).toBeNull();
    expect(first.message!.remoteConfig).toBeNull();
    // Its attributes change so that a Collector now selects it: the next poll carries the config.
    const next = await httpPost(bridge.opampHttpUrl, encodeAgent({ instanceUid: uid, sequenceNum: 1, capabilities: CAPS, agentDescription: desc({ role: 'http-edge' }) }));
    expect(next.message!.remoteConfig).not.toBeNull();
  });

  it('refuses a body over the limit with 413, also when it only grows past it after gunzip', async () => {
    const big = encodeAgent({ instanceUid: randomUid(), capabilities: 1, effectiveConfig: { configMap: { configMap: { '': { body: Buffer.alloc(64 * 1024, 0x61) } } } } });
    expect((await httpPost(bridge.opampHttpUrl, big)).status).toBe(413);
    const zipped = await httpPost(bridge.opampHttpUrl, big, { gzip: true });
    expect(zipped.status).toBe(413);
    expect(zipped.text).toMatch(/decompressed body exceeds/);
  });

  it('refuses garbage, bad gzip, wrong content types and methods with a clear status', async () => {
    const garbage = await httpPost(bridge.opampHttpUrl, Buffer.from([0x0a, 0xff, 0xff, 0xff]));
    expect(garbage.status).toBe(400);
    expect(garbage.text).toMatch(/invalid AgentToServer protobuf/);
    const badGzip = await fetch(bridge.opampHttpUrl, { method: 'POST', headers: { 'Content-Type': 'application/x-protobuf', 'Content-Encoding': 'gzip' }, body: Buffer.from('not gzip') });
    expect(badGzip.status).toBe(400);
    expect(await badGzip.text()).toMatch(/not valid gzip/);
    expect((await httpPost(bridge.opampHttpUrl, Buffer.from('{}'), { contentType: 'application/json' })).status).toBe(415);
    const get = await fetch(bridge.opampHttpUrl);
    expect(get.status).toBe(405);
    const br = await fetch(bridge.opampHttpUrl, { method: 'POST', headers: { 'Content-Type': 'application/x-protobuf', 'Content-Encoding': 'br' }, body: Buffer.from([1]) });
    expect(br.status).toBe(415);
    expect((await fetch(bridge.opampHttpUrl.replace('/v1/opamp', '/elsewhere'), { method: 'POST' })).status).toBe(404);
    const metrics = await bridge.metricsText();
    expect(metrics).toMatch(/code="FB_OPAMP_BAD_PROTOBUF"\} [1-9]/);
    expect(metrics).toMatch(/code="FB_OPAMP_BAD_CONTENT_TYPE"\} [1-9]/);
    // Still serving.
    expect((await httpPost(bridge.opampHttpUrl, encodeAgent({ instanceUid: randomUid(), capabilities: 1 }))).status).toBe(200);
  });

  it('answers a uid that is not 16 bytes with a BAD_REQUEST ServerErrorResponse', async () => {
    const r = await httpPost(bridge.opampHttpUrl, encodeAgent({ instanceUid: Buffer.alloc(8, 1), capabilities: 1 }));
    expect(r.status).toBe(200);
    expect(r.message!.errorResponse?.type).toBe(1);
  });

  it('marks an agent disconnected on agent_disconnect', async () => {
    const uid = randomUid();
    await httpPost(bridge.opampHttpUrl, encodeAgent({ instanceUid: uid, capabilities: 1, agentDescription: desc({}) }));
    await httpPost(bridge.opampHttpUrl, encodeAgent({ instanceUid: uid, sequenceNum: 1, capabilities: 1, agentDisconnect: {} }));
    expect((await bridge.getAgent(uidToString(uid)))?.connected).toBe(false);
  });

  it('marks an agent that stops polling disconnected', async () => {
    const uid = randomUid();
    await httpPost(bridge.opampHttpUrl, encodeAgent({ instanceUid: uid, capabilities: 1, agentDescription: desc({}) }));
    expect((await bridge.getAgent(uidToString(uid)))?.connected).toBe(true);
    // heartbeat 1 s in tests: offline after 3 heartbeats + 10 s.
    await vi.waitFor(async () => expect((await bridge.getAgent(uidToString(uid)))?.connected).toBe(false), { timeout: 20_000, interval: 500 });
  }, 30_000);
});
