/** Fleet.configure: settings changed while agents are connected take effect without a restart. */
import { describe, expect, it } from 'vitest';
import { AgentCapabilities as C, ServerErrorResponseType } from '../../../src/opamp/messages.js';
import { uidToString } from '../../../src/opamp/uid.js';
import { CAPS, desc, httpConn, msg, setup, uid, wsConn } from './fixtures.js';

const attrs = (n: number) => Array.from({ length: n }, (_, i) => ({ key: `k${i}`, value: { stringValue: 'v' } }));

describe('Fleet#configure', () => {
  it('offers a new heartbeat to a connected agent that accepts connection settings', () => {
    const f = setup();
    const conn = wsConn();
    const caps = CAPS | C.AcceptsOpAMPConnectionSettings;
    const first = f.handleMessage(conn, msg({ instanceUid: uid(1), sequenceNum: 0, capabilities: caps, agentDescription: desc({ role: 'none' }) }));
    expect(first.connectionSettings?.opamp?.heartbeatIntervalSeconds).toBe(7);
    // An agent that does not accept connection settings is sent nothing.
    const plain = wsConn();
    f.handleMessage(plain, msg({ instanceUid: uid(2), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({ role: 'none' }) }));

    expect(f.configure({ heartbeatIntervalSeconds: 15 })).toBe(true);
    expect(conn.sent).toHaveLength(1);
    const offer = conn.sent[0]!.connectionSettings!;
    expect(offer.opamp).toMatchObject({ destinationEndpoint: 'ws://127.0.0.1:4320/v1/opamp', heartbeatIntervalSeconds: 15 });
    expect(Buffer.from(offer.hash!).equals(Buffer.from(first.connectionSettings!.hash!))).toBe(false);
    expect(plain.sent).toHaveLength(0);
    // The same settings again change nothing and send nothing.
    expect(f.configure({ heartbeatIntervalSeconds: 15 })).toBe(false);
    expect(conn.sent).toHaveLength(1);
    expect(() => f.configure({ heartbeatIntervalSeconds: 0 })).toThrow(TypeError);
  });

  it('re-derives the timings derived from the heartbeat: an HTTP agent is offline after two new intervals', () => {
    let now = 1_000_000;
    const f = setup({ now: () => now });
    f.handleMessage(httpConn(), msg({ instanceUid: uid(3), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({ role: 'edge' }) }));
    f.configure({ heartbeatIntervalSeconds: 2 });
    now += 5000; // past two intervals of 2 s, within two of 7 s
    f.sweep();
    expect(f.get(uidToString(uid(3)))!.session.connected).toBe(false);
  });

  it('refuses the next new agent when maxAgents is lowered', () => {
    const f = setup();
    for (const n of [4, 5]) f.handleMessage(wsConn(), msg({ instanceUid: uid(n), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({ role: 'edge' }) }));
    expect(f.configure({ maxAgents: 2 })).toBe(true);
    const r = f.handleMessage(wsConn(), msg({ instanceUid: uid(6), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({ role: 'edge' }) }));
    expect(r.errorResponse?.type).toBe(ServerErrorResponseType.Unavailable);
    expect(r.errorResponse?.errorMessage).toMatch(/at most 2 agents/);
    expect(f.get(uidToString(uid(6)))).toBeUndefined();
    // Agents already known are still served.
    expect(f.handleMessage(wsConn(), msg({ instanceUid: uid(4), sequenceNum: 1, capabilities: CAPS })).errorResponse).toBeUndefined();
  });

  it('refuses the next oversized report when a bound is lowered', () => {
    const f = setup();
    const conn = wsConn();
    expect(f.handleMessage(conn, msg({ instanceUid: uid(7), sequenceNum: 0, capabilities: CAPS, agentDescription: { identifyingAttributes: attrs(20) } })).errorResponse).toBeUndefined();
    expect(f.configure({ bounds: { maxAttributes: 10 } })).toBe(true);
    const r = f.handleMessage(conn, msg({ instanceUid: uid(7), sequenceNum: 1, capabilities: CAPS, agentDescription: { identifyingAttributes: attrs(20) } }));
    expect(r.errorResponse?.type).toBe(ServerErrorResponseType.BadRequest);
    expect(r.errorResponse?.errorMessage).toMatch(/more than 10 attributes/);
  });

  it('clears the credential policy with null', () => {
    const f = setup({ credentials: { replacementFor: () => 'Bearer newer' } });
    const conn = { ...wsConn(), authorization: 'Bearer old' };
    f.handleMessage(conn, msg({ instanceUid: uid(8), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({ role: 'none' }) }));
    expect(f.credentialStale(f.get(uidToString(uid(8)))!)).toBe(true);
    expect(f.configure({ credentials: null })).toBe(true);
    expect(f.credentialStale(f.get(uidToString(uid(8)))!)).toBe(false);
    expect(f.configure({ credentials: null })).toBe(false);
  });
});
