/**
 * What a hostile or broken agent can make the fleet keep or do: bounded reports, uids bound to
 * the identity that holds them, cloned agents, floods of fresh uids, records that never complete.
 */
import { describe, expect, it } from 'vitest';
import { ServerErrorResponseType } from '../../../src/opamp/messages.js';
import { uidToString } from '../../../src/opamp/uid.js';
import type { AgentConnection } from '../../../src/opamp/connection.js';
import { configState } from '../../../src/fleet/fleet.js';
import { CAPS, RCS, desc, httpConn, msg, setup, uid, wsConn } from './fixtures.js';

const attrs = (n: number, value = 'v') => Array.from({ length: n }, (_, i) => ({ key: `k${i}`, value: { stringValue: value } }));

describe('reports are bounded', () => {
  it('refuses a description with too many or too large attributes whole, and keeps nothing of it', () => {
    const f = setup();
    const many = f.handleMessage(httpConn(), msg({ instanceUid: uid(1), sequenceNum: 0, capabilities: CAPS, agentDescription: { identifyingAttributes: attrs(300) } }));
    expect(many.errorResponse?.type).toBe(ServerErrorResponseType.BadRequest);
    expect(many.errorResponse?.errorMessage).toMatch(/more than 256 attributes/);
    expect(f.size).toBe(0);
    const large = f.handleMessage(httpConn(), msg({ instanceUid: uid(2), sequenceNum: 0, capabilities: CAPS, agentDescription: { identifyingAttributes: attrs(1, 'x'.repeat(5000)) } }));
    expect(large.errorResponse?.errorMessage).toMatch(/value of 5000 bytes, more than 4096/);
    // Nested values count toward the same budget.
    const nested = f.handleMessage(httpConn(), msg({ instanceUid: uid(3), sequenceNum: 0, capabilities: CAPS, agentDescription: { identifyingAttributes: [{ key: 'a', value: { arrayValue: { values: Array.from({ length: 300 }, () => ({ stringValue: 'x' })) } } }] } }));
    expect(nested.errorResponse?.errorMessage).toMatch(/more than 256 attributes/);
    expect(f.size).toBe(0);
  });

  it('refuses an oversized health tree, effective config or component list from a known agent and keeps its last good state', () => {
    const f = setup({ bounds: { maxEffectiveConfigBytes: 1000, maxHealthNodes: 10, maxComponents: 20 } });
    const a = wsConn();
    f.handleMessage(a, msg({ instanceUid: uid(4), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({ role: 'edge' }), health: { healthy: true } }));
    const rec = f.get(uidToString(uid(4)))!;
    const health = f.handleMessage(a, msg({ instanceUid: uid(4), sequenceNum: 1, capabilities: CAPS, health: { healthy: false, componentHealthMap: Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`c${i}`, { healthy: false }])) } }));
    expect(health.errorResponse?.errorMessage).toMatch(/health: more than 10 components/);
    expect(rec.description.health?.healthy).toBe(true);
    const big = f.handleMessage(a, msg({ instanceUid: uid(4), sequenceNum: 2, capabilities: CAPS, effectiveConfig: { configMap: { configMap: { '': { body: Buffer.alloc(2000, 97), contentType: 'text/yaml' } } } } }));
    expect(big.errorResponse?.errorMessage).toMatch(/effective_config is \d+ bytes, more than 1000/);
    expect(rec.config.effective).toBeNull();
    const comps = f.handleMessage(a, msg({ instanceUid: uid(4), sequenceNum: 3, capabilities: CAPS, availableComponents: { hash: Buffer.from('h'), components: { receivers: { subComponentMap: Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`r${i}`, {}])) } } } }));
    expect(comps.errorResponse?.errorMessage).toMatch(/available_components: more than 20 entries/);
    // A heartbeat afterwards is answered as usual.
    expect(f.handleMessage(a, msg({ instanceUid: uid(4), sequenceNum: 4, capabilities: CAPS })).errorResponse ?? null).toBeNull();
  });

  it('cuts long free text (an error message) and marks it cut', () => {
    const f = setup();
    const a = wsConn();
    const r = f.handleMessage(a, msg({ instanceUid: uid(5), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {} }));
    f.handleMessage(a, msg({ instanceUid: uid(5), sequenceNum: 1, capabilities: CAPS, remoteConfigStatus: { lastRemoteConfigHash: r.remoteConfig!.configHash, status: RCS.FAILED, errorMessage: 'e'.repeat(10_000) } }));
    const m = f.get(uidToString(uid(5)))!.config.reported.errorMessage;
    expect(m.length).toBeLessThan(4200);
    expect(m).toMatch(/5904 more characters not kept/);
  });
});

function bearerConn(token: string, ws = true): AgentConnection & { closed?: [number, string][] } {
  const c = ws ? wsConn() : httpConn();
  return Object.assign(c, { authorization: `Bearer ${token}`, verified: { method: 'bearerToken' as const, username: 'bearer-token:token', credential: { key: 'token', current: true } } });
}

describe('an instance_uid is bound to the identity that holds it', () => {
  it('refuses another identity claiming a live uid, and leaves the holder connected and its state untouched', () => {
    const f = setup();
    const victim = bearerConn('alpha');
    const r = f.handleMessage(victim, msg({ instanceUid: uid(6), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {} }));
    f.handleMessage(victim, msg({ instanceUid: uid(6), sequenceNum: 1, capabilities: CAPS, remoteConfigStatus: { lastRemoteConfigHash: r.remoteConfig!.configHash, status: RCS.APPLIED } }));
    const thief = bearerConn('beta');
    const answer = f.handleMessage(thief, msg({ instanceUid: uid(6), sequenceNum: 2, capabilities: CAPS, remoteConfigStatus: { lastRemoteConfigHash: r.remoteConfig!.configHash, status: RCS.FAILED, errorMessage: 'forged' } }));
    expect(answer.errorResponse?.errorMessage).toMatch(/held by another identity/);
    expect((victim as ReturnType<typeof wsConn>).closed).toEqual([]);
    const rec = f.get(uidToString(uid(6)))!;
    expect(rec.session.connection).toBe(victim);
    expect(configState(rec)).toBe('applied');
  });

  it('lists an agent as applied again once it reports APPLIED after a FAILED report for the same hash', () => {
    const f = setup();
    const a = wsConn();
    const r = f.handleMessage(a, msg({ instanceUid: uid(7), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {} }));
    f.handleMessage(a, msg({ instanceUid: uid(7), sequenceNum: 1, capabilities: CAPS, remoteConfigStatus: { lastRemoteConfigHash: r.remoteConfig!.configHash, status: RCS.FAILED, errorMessage: 'boom' } }));
    expect(configState(f.get(uidToString(uid(7)))!)).toBe('failed');
    f.handleMessage(a, msg({ instanceUid: uid(7), sequenceNum: 2, capabilities: CAPS, remoteConfigStatus: { lastRemoteConfigHash: r.remoteConfig!.configHash, status: RCS.APPLIED } }));
    expect(configState(f.get(uidToString(uid(7)))!)).toBe('applied');
  });

  it('gives one of two cloned agents (same identity, both live, taking the uid from each other) a new uid', () => {
    let now = 1_000_000;
    const f = setup({ now: () => now });
    const a = wsConn();
    const b = wsConn();
    let seqA = 0;
    let seqB = 0;
    const from = (c: typeof a, seq: number) => f.handleMessage(c, msg({ instanceUid: uid(8), sequenceNum: seq, capabilities: CAPS, agentDescription: desc({ role: 'edge' }) }));
    let reassigned: Uint8Array | null = null;
    for (let i = 0; i < 10 && !reassigned; i++) {
      now += 100;
      reassigned = from(a, seqA++).agentIdentification?.newInstanceUid ?? null;
      if (reassigned) break;
      now += 100;
      reassigned = from(b, seqB++).agentIdentification?.newInstanceUid ?? null;
    }
    expect(reassigned).not.toBeNull();
    expect(a.closed.length + b.closed.length).toBeLessThanOrEqual(4);
    // Both are now known, each under its own uid.
    expect(f.get(uidToString(uid(8)))).toBeDefined();
    expect(f.get(uidToString(reassigned!))).toBeDefined();
  });
});

describe('the registry cannot be filled', () => {
  it('drops records that never completed a first report after a few seconds', () => {
    let now = 1_000_000;
    const f = setup({ now: () => now, unidentifiedTtlMs: 10_000 });
    for (let i = 0; i < 50; i++) f.handleMessage(httpConn(), msg({ instanceUid: uid(100 + i), sequenceNum: 5, capabilities: CAPS }));
    expect(f.size).toBe(50);
    now += 10_001;
    f.sweep();
    expect(f.size).toBe(0);
  });

  it('limits new uids per source address, not other sources', () => {
    let now = 1_000_000;
    const f = setup({ now: () => now, newAgentsPerSourceBurst: 20, newAgentsPerSourcePerSecond: 10 });
    const from = (addr: string) => Object.assign(httpConn(), { remoteAddress: addr });
    let refused = 0;
    for (let i = 0; i < 40; i++) {
      const r = f.handleMessage(from('10.0.0.1'), msg({ instanceUid: uid(i), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({}) }));
      if (r.errorResponse?.type === ServerErrorResponseType.Unavailable) refused++;
    }
    expect(refused).toBe(20);
    expect(f.handleMessage(from('10.0.0.2'), msg({ instanceUid: uid(200), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({}) })).errorResponse ?? null).toBeNull();
    now += 1000; // ten more
    const again = f.handleMessage(from('10.0.0.1'), msg({ instanceUid: uid(201), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({}) }));
    expect(again.errorResponse ?? null).toBeNull();
  });

  it('makes room for a new agent by forgetting the longest-disconnected one when full', () => {
    let now = 1_000_000;
    const f = setup({ now: () => now, maxAgents: 3 });
    const conns = [wsConn(), wsConn(), wsConn()];
    conns.forEach((c, i) => f.handleMessage(c, msg({ instanceUid: uid(30 + i), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({}) })));
    const refused = f.handleMessage(wsConn(), msg({ instanceUid: uid(40), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({}) }));
    expect(refused.errorResponse?.type).toBe(ServerErrorResponseType.Unavailable);
    now += 1000;
    f.connectionClosed(conns[1]!);
    const admitted = f.handleMessage(wsConn(), msg({ instanceUid: uid(40), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({}) }));
    expect(admitted.errorResponse ?? null).toBeNull();
    expect(f.get(uidToString(uid(31)))).toBeUndefined();
    expect(f.size).toBe(3);
  });
});
