import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parse } from 'yaml';
import { collectorYaml, startTestBridge, type TestBridge } from '../harness/standalone.js';
import { RawWsAgent, encodeAgent, randomUid } from '../harness/raw-agent.js';
import { AgentCapabilities as C, SERVER_CAPABILITIES } from '../../src/opamp/messages.js';

const CAPS = C.ReportsStatus | C.AcceptsRemoteConfig | C.ReportsRemoteConfig | C.ReportsHealth;
const desc = (attrs: Record<string, string>) => ({
  identifyingAttributes: [{ key: 'service.name', value: { stringValue: 'raw' } }],
  nonIdentifyingAttributes: Object.entries(attrs).map(([key, v]) => ({ key, value: { stringValue: v } })),
});

let bridge: TestBridge;

beforeAll(async () => {
  bridge = await startTestBridge({
    maxMessageBytes: 64 * 1024,
    pingIntervalMs: 300,
    manifests: { 'ws.yaml': collectorYaml('ws-edge', { role: 'ws-edge' }, { receivers: { otlp: { protocols: { grpc: {} } } }, exporters: { debug: {} }, service: { pipelines: { traces: { receivers: ['otlp'], exporters: ['debug'] } } } }) },
  });
});
afterAll(async () => {
  await bridge?.stop();
});

/** A healthy agent that must be unaffected by every bad peer in this file. */
async function healthyBystander(): Promise<RawWsAgent> {
  const a = await RawWsAgent.connect(bridge.opampWsUrl);
  a.send({ capabilities: CAPS, agentDescription: desc({ role: 'ws-edge' }), remoteConfigStatus: {} });
  await a.waitForMessages(1);
  return a;
}

async function expectStillServed(a: RawWsAgent): Promise<void> {
  const before = a.received.length;
  a.send({ capabilities: CAPS });
  const m = await a.waitForMessages(before + 1);
  expect(m.errorResponse).toBeNull();
}

describe('WebSocket transport', () => {
  it('answers with header 0, the uid, server capabilities and the selected config', async () => {
    const a = await RawWsAgent.connect(bridge.opampWsUrl);
    a.send({ capabilities: CAPS, agentDescription: desc({ role: 'ws-edge' }), remoteConfigStatus: {} });
    const m = await a.waitForMessages(1);
    expect(Buffer.from(m.instanceUid!)).toEqual(a.uid);
    expect(Number(m.capabilities)).toBe(SERVER_CAPABILITIES);
    const body = Buffer.from(m.remoteConfig!.config!.configMap!['']!.body!).toString();
    expect(parse(body)).toMatchObject({ exporters: { debug: {} } });
    const agent = await bridge.getAgent(a.uidString);
    expect(agent).toMatchObject({ transport: 'websocket', connected: true, labels: { role: 'ws-edge', 'service.name': 'raw' } });
    expect(agent!.remoteConfig.desiredHash).toBe(Buffer.from(m.remoteConfig!.configHash!).toString('hex'));
    a.close();
  });

  it('accepts messages without the header', async () => {
    const a = await RawWsAgent.connect(bridge.opampWsUrl);
    a.sendRaw(encodeAgent({ instanceUid: a.uid, capabilities: 1, agentDescription: desc({}) }));
    const m = await a.waitForMessages(1);
    expect(Buffer.from(m.instanceUid!)).toEqual(a.uid);
    a.close();
  });

  it('closes a connection that sends a text frame, with 1003, and serves others on', async () => {
    const ok = await healthyBystander();
    const bad = await RawWsAgent.connect(bridge.opampWsUrl);
    bad.sendRaw('hello', false);
    expect(await bad.waitForClose()).toEqual({ code: 1003, reason: 'OpAMP uses binary frames only' });
    await expectStillServed(ok);
    ok.close();
  });

  it('closes a connection whose header is not zero, with 1002', async () => {
    const bad = await RawWsAgent.connect(bridge.opampWsUrl);
    bad.sendRaw(Buffer.concat([Buffer.from([0x01]), encodeAgent({ instanceUid: bad.uid, capabilities: 1 })]));
    const c = await bad.waitForClose();
    expect(c.code).toBe(1002);
    expect(c.reason).toMatch(/varint-0 header/);
  });

  it('closes a connection that sends malformed protobuf, with 1002', async () => {
    const ok = await healthyBystander();
    const bad = await RawWsAgent.connect(bridge.opampWsUrl);
    bad.sendRaw(Buffer.from([0x00, 0x0a, 0x7f, 0x01, 0x02]));
    const c = await bad.waitForClose();
    expect(c.code).toBe(1002);
    expect(c.reason).toMatch(/invalid AgentToServer/);
    await expectStillServed(ok);
    ok.close();
  });

  it('closes a connection that sends a message over the size limit, with 1009', async () => {
    const ok = await healthyBystander();
    const bad = await RawWsAgent.connect(bridge.opampWsUrl);
    bad.send({ capabilities: 1, effectiveConfig: { configMap: { configMap: { '': { body: Buffer.alloc(70 * 1024, 0x61) } } } } });
    expect((await bad.waitForClose()).code).toBe(1009);
    await expectStillServed(ok);
    await vi.waitFor(async () => expect(await bridge.metricsText()).toMatch(/fleetbridge_opamp_protocol_errors_total\{transport="websocket",code="FB_OPAMP_TOO_LARGE"\} [1-9]/), { timeout: 3000 });
    ok.close();
  });

  it('answers a uid that is not 16 bytes with BAD_REQUEST and keeps the connection', async () => {
    const a = await RawWsAgent.connect(bridge.opampWsUrl);
    a.sendRaw(Buffer.concat([Buffer.from([0]), encodeAgent({ instanceUid: Buffer.from('01ARZ3NDEKTSV4RRFFQ69G5FAV'), capabilities: 1 })]));
    const m = await a.waitForMessages(1);
    expect(m.errorResponse?.type).toBe(1);
    expect(m.remoteConfig).toBeNull();
    a.send({ capabilities: 1, agentDescription: desc({}) });
    expect((await a.waitForMessages(2)).errorResponse).toBeNull();
    a.close();
  });

  it('marks the agent disconnected when its socket closes', async () => {
    const a = await RawWsAgent.connect(bridge.opampWsUrl);
    a.send({ capabilities: 1, agentDescription: desc({}) });
    await a.waitForMessages(1);
    a.terminate();
    await vi.waitFor(async () => expect((await bridge.getAgent(a.uidString))?.connected).toBe(false), { timeout: 3000 });
  });

  it('terminates a peer that stops answering pings', async () => {
    const a = await RawWsAgent.connect(bridge.opampWsUrl);
    a.send({ capabilities: 1, agentDescription: desc({}) });
    await a.waitForMessages(1);
    // Simulate a half-open peer: stop the socket from answering pings (ws answers automatically).
    (a.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    await vi.waitFor(async () => expect((await bridge.getAgent(a.uidString))?.connected).toBe(false), { timeout: 5000, interval: 100 });
    a.terminate();
  });

  it('closes the older connection when a second one claims the same uid', async () => {
    const uid = randomUid();
    const first = await RawWsAgent.connect(bridge.opampWsUrl, uid);
    first.send({ capabilities: 1, agentDescription: desc({}) });
    await first.waitForMessages(1);
    const second = await RawWsAgent.connect(bridge.opampWsUrl, uid);
    second.seq = first.seq;
    second.send({ capabilities: 1 });
    await second.waitForMessages(1);
    expect(await first.waitForClose()).toEqual({ code: 1008, reason: 'replaced by a newer connection for this instance_uid' });
    expect((await bridge.getAgent(second.uidString))?.connected).toBe(true);
    second.close();
  });

  it('survives a burst of random and mutated frames from many connections', async () => {
    const ok = await healthyBystander();
    const valid = Buffer.concat([Buffer.from([0]), encodeAgent({ instanceUid: randomUid(), sequenceNum: 1, capabilities: CAPS, agentDescription: desc({ a: 'b' }), health: { healthy: true } })]);
    let seed = 12345;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let round = 0; round < 40; round++) {
      const bad = await RawWsAgent.connect(bridge.opampWsUrl);
      for (let i = 0; i < 5 && !bad.closeInfo; i++) {
        const frame = Buffer.from(valid);
        if (rnd(2) === 0) for (let k = 0; k < 1 + rnd(6); k++) frame[rnd(frame.length)] = rnd(256);
        else for (let k = 0; k < frame.length; k++) frame[k] = rnd(256);
        bad.sendRaw(frame.subarray(0, rnd(frame.length + 1)));
      }
      bad.terminate();
    }
    await expectStillServed(ok);
    expect(await (await fetch(bridge.apiUrl + '/healthz')).text()).toBe('ok\n');
    ok.close();
  });

  it('refuses an upgrade on another path with 404', async () => {
    await expect(RawWsAgent.connect(bridge.opampWsUrl.replace('/v1/opamp', '/nope'))).rejects.toThrow(/HTTP 404/);
  });
});
