/**
 * Configurable limits answered with clear errors: message rate per connection (WebSocket and HTTP)
 * and WebSocket agents per source address. Connections that never speak, bad Host headers and
 * half-sent requests: opamp-server-guards.test.ts and abuse-server.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestBridge, type TestBridge } from '../harness/standalone.js';
import { RawWsAgent, encodeAgent, httpPost, randomUid } from '../harness/raw-agent.js';
import { TokenBucket } from '../../src/opamp/server.js';

let bridge: TestBridge;
beforeAll(async () => {
  bridge = await startTestBridge({ maxMessagesPerSecond: 5, maxConnectionsPerSource: 3 });
});
afterAll(async () => {
  await bridge?.stop();
});

describe('TokenBucket', () => {
  it('allows a burst, then the rate', () => {
    let t = 0;
    const b = new TokenBucket(5, 10, () => t);
    expect(Array.from({ length: 12 }, () => b.take()).filter(Boolean)).toHaveLength(10);
    t += 1000;
    expect(Array.from({ length: 12 }, () => b.take()).filter(Boolean)).toHaveLength(5);
  });
});

describe('message rate per connection', () => {
  it('answers a WebSocket flood with UNAVAILABLE and a retry hint, then closes it; other agents are untouched', async () => {
    const ok = await RawWsAgent.connect(bridge.opampWsUrl);
    ok.send({ agentDescription: {} });
    await ok.waitForMessages(1);
    const flood = await RawWsAgent.connect(bridge.opampWsUrl);
    for (let i = 0; i < 30; i++) flood.send({ agentDescription: {} });
    const close = await flood.waitForClose();
    expect(close).toEqual({ code: 1008, reason: 'message rate limit exceeded' });
    const refused = flood.received.filter((m) => m.errorResponse);
    expect(refused.length).toBeGreaterThanOrEqual(9);
    expect(refused[0]!.errorResponse).toMatchObject({ type: 2, errorMessage: 'more than 5 messages per second on this connection' });
    expect(refused[0]!.errorResponse!.retryInfo!.retryAfterNanoseconds!.toString()).toBe('30000000000');
    expect(flood.received.filter((m) => !m.errorResponse).length).toBeGreaterThanOrEqual(10);
    ok.send({});
    expect((await ok.waitForMessages(2)).errorResponse).toBeNull();
    expect(await bridge.metricsText()).toMatch(/code="FB_OPAMP_RATE_LIMITED"\} [1-9]/);
    ok.close();
  });

  it('answers an HTTP flood on one keep-alive connection with 429 and Retry-After', async () => {
    const uid = randomUid();
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    for (let i = 0; i < 25; i++) {
      const r = await httpPost(bridge.opampHttpUrl, encodeAgent({ instanceUid: uid, sequenceNum: i, capabilities: 1 }));
      statuses.push(r.status);
      if (r.status === 429) retryAfter = r.headers.get('retry-after');
    }
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(10);
    expect(statuses).toContain(429);
    expect(retryAfter).toBe('30');
  });
});

describe('WebSocket connections per source address', () => {
  it('counts identified agents: past the limit the upgrade gets 429, and is accepted again when one closes; silent connections do not count', async () => {
    // Silent connections (no message yet) hold no agent slot: they are bounded by the first-message deadline.
    const silent = await Promise.all([1, 2, 3].map(() => RawWsAgent.connect(bridge.opampWsUrl)));
    const open: RawWsAgent[] = [];
    for (let i = 0; i < 3; i++) {
      const a = await RawWsAgent.connect(bridge.opampWsUrl);
      a.send({ agentDescription: {} });
      await a.waitForMessages(1);
      open.push(a);
    }
    await expect(RawWsAgent.connect(bridge.opampWsUrl)).rejects.toThrow(/HTTP 429/);
    open[0]!.close();
    await vi.waitFor(async () => {
      const again = await RawWsAgent.connect(bridge.opampWsUrl);
      again.close();
    }, { timeout: 3000, interval: 50 });
    for (const a of [...open, ...silent]) a.close();
  });
});
