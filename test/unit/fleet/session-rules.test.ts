/**
 * The session rules that real clients exercised and the fleet got wrong: full state that arrives
 * with agent_disconnect, restarted HTTP agents, counts of agents that are gone, drift judged on a
 * stale effective config, connection-settings offers that change nothing, and requests the server
 * does not serve.
 */
import { describe, expect, it } from 'vitest';
import { AgentCapabilities as C, ServerErrorResponseType } from '../../../src/opamp/messages.js';
import { uidToString } from '../../../src/opamp/uid.js';
import { aggregateCollectorStatus } from '../../../src/controller/collector-status.js';
import { configState } from '../../../src/fleet/fleet.js';
import { CAPS, RCS, desc, hashOf, httpConn, msg, setup, uid, wsConn } from './fixtures.js';

const eff = (body: string) => ({ configMap: { configMap: { '': { body: Buffer.from(body), contentType: 'text/yaml' } } } });

describe('every field of every message is processed', () => {
  it('matches an agent whose full state arrives together with agent_disconnect (a client restarting on an offer)', () => {
    const f = setup();
    const a = wsConn();
    // A bridge restart: the agent's first message lacks its state, so full state is asked for.
    const first = f.handleMessage(a, msg({ instanceUid: uid(1), sequenceNum: 41, capabilities: CAPS }));
    expect(first.flags).toBe(1);
    // It restarts its client: the last message of the old client carries the full state and agent_disconnect.
    f.handleMessage(a, msg({ instanceUid: uid(1), sequenceNum: 42, capabilities: CAPS, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {}, agentDisconnect: {} }));
    const rec = f.get(uidToString(uid(1)))!;
    expect(rec.identity.labels).toEqual({ role: 'edge', 'service.name': 'otelcol' });
    expect(rec.config.desired?.collectors).toEqual(['default/edge']);
    expect(rec.session.connected).toBe(false);
    // The new client reports the same description: the config goes with the first answer.
    const b = wsConn();
    const r = f.handleMessage(b, msg({ instanceUid: uid(1), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {} }));
    expect(r.remoteConfig).toBeDefined();
    expect(hashOf(r)).toBe(rec.config.desired!.hashHex);
  });
});

describe('restarted agents', () => {
  it('gives an HTTP agent that restarts (sequence 0, status UNSET, same uid) its config in its first answer', () => {
    let now = 1_000_000;
    const f = setup({ now: () => now, offerRetryMs: 60_000 });
    const first = f.handleMessage(httpConn(), msg({ instanceUid: uid(2), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {} }));
    expect(first.remoteConfig).toBeDefined();
    now += 500;
    // It restarts before reporting anything: a new sequence, no status.
    const again = f.handleMessage(httpConn(), msg({ instanceUid: uid(2), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({ role: 'edge' }) }));
    expect(again.remoteConfig).toBeDefined();
    expect(hashOf(again)).toBe(hashOf(first));
  });

  it('sends the config again to an agent that ran it, restarted, and reports no status (the Python client starts with none)', () => {
    const f = setup();
    const first = f.handleMessage(httpConn(), msg({ instanceUid: uid(13), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({ role: 'edge' }) }));
    f.handleMessage(httpConn(), msg({ instanceUid: uid(13), sequenceNum: 1, capabilities: CAPS, remoteConfigStatus: { lastRemoteConfigHash: first.remoteConfig!.configHash, status: RCS.APPLIED } }));
    expect(f.view(f.get(uidToString(uid(13)))!).remoteConfig.inSync).toBe(true);
    const again = f.handleMessage(httpConn(), msg({ instanceUid: uid(13), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({ role: 'edge' }) }));
    expect(again.remoteConfig).toBeDefined();
    expect(f.view(f.get(uidToString(uid(13)))!).remoteConfig.inSync).toBe(false);
  });
});

describe('counts are of connected agents', () => {
  it('stops counting a disconnected agent at once, counts it as disconnected within the grace, then nowhere', () => {
    let now = 1_000_000;
    const f = setup({ now: () => now, heartbeatIntervalSeconds: 10 });
    const a = wsConn();
    const r = f.handleMessage(a, msg({ instanceUid: uid(3), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {} }));
    f.handleMessage(a, msg({ instanceUid: uid(3), sequenceNum: 1, capabilities: CAPS, remoteConfigStatus: { lastRemoteConfigHash: r.remoteConfig!.configHash, status: RCS.APPLIED } }));
    const h = httpConn();
    const hr = f.handleMessage(h, msg({ instanceUid: uid(4), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {} }));
    f.handleMessage(httpConn(), msg({ instanceUid: uid(4), sequenceNum: 1, capabilities: CAPS, remoteConfigStatus: { lastRemoteConfigHash: hr.remoteConfig!.configHash, status: RCS.APPLIED } }));
    const counts = () => aggregateCollectorStatus(f.records()).get('default/edge')!;
    expect(counts()).toMatchObject({ matched: 2, connected: 2, applied: 2, disconnected: 0 });

    f.connectionClosed(a); // killed: the socket closes
    expect(counts()).toMatchObject({ matched: 1, connected: 1, applied: 1, disconnected: 1 });
    expect(f.view(f.get(uidToString(uid(3)))!).presence).toBe('recently-disconnected');

    // The HTTP agent polls on time: still connected after one heartbeat, not after two.
    now += 10_000;
    f.sweep();
    expect(counts()).toMatchObject({ matched: 1, applied: 1 });
    now += 10_001;
    f.sweep();
    expect(counts()).toMatchObject({ matched: 0, applied: 0, disconnected: 1 });
    // Past the grace: the killed WebSocket agent is counted nowhere (kept in the API for a while).
    f.sweep();
    expect(counts()).toMatchObject({ matched: 0, applied: 0, disconnected: 1 });
    expect(f.view(f.get(uidToString(uid(3)))!).presence).toBe('gone');
    now += 20_001;
    f.sweep();
    expect(aggregateCollectorStatus(f.records()).get('default/edge')).toBeUndefined();
    expect(f.view(f.get(uidToString(uid(4)))!).presence).toBe('gone');
  });
});

describe('drift is judged on an effective config that belongs to the applied config', () => {
  it('does not flag drift when APPLIED arrives before the new effective config', () => {
    let now = 1_000_000;
    const f = setup({ now: () => now });
    const a = wsConn();
    const r = f.handleMessage(a, msg({ instanceUid: uid(5), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {}, effectiveConfig: eff('receivers: { nop: {} }\n') }));
    const rec = f.get(uidToString(uid(5)))!;
    // APPLIED alone: the effective config known is the old one; nothing judged.
    f.handleMessage(a, msg({ instanceUid: uid(5), sequenceNum: 1, capabilities: CAPS, remoteConfigStatus: { lastRemoteConfigHash: r.remoteConfig!.configHash, status: RCS.APPLIED } }));
    expect(rec.config.drift.verdict).toBeNull();
    now += 100;
    f.handleMessage(a, msg({ instanceUid: uid(5), sequenceNum: 2, capabilities: CAPS, effectiveConfig: eff('exporters:\n  debug: {}\n') }));
    expect(rec.config.drift.verdict).toEqual({ drifted: false, differences: [] });
    expect(a.sent).toHaveLength(0);
  });

  it('pushes once more a config reported APPLIED that the agent does not run, then calls it drift if it persists', () => {
    let now = 1_000_000;
    const f = setup({ now: () => now, driftSettleMs: 5000 });
    const a = wsConn();
    const r = f.handleMessage(a, msg({ instanceUid: uid(6), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {} }));
    const rec = f.get(uidToString(uid(6)))!;
    const applied = { lastRemoteConfigHash: r.remoteConfig!.configHash, status: RCS.APPLIED };
    // APPLIED, with an effective config that lacks what was sent (the Supervisor's start-up race).
    const answer = f.handleMessage(a, msg({ instanceUid: uid(6), sequenceNum: 1, capabilities: CAPS, remoteConfigStatus: applied, effectiveConfig: eff('receivers: { nop: {} }\n') }));
    expect(answer.remoteConfig).toBeDefined();
    expect(hashOf(answer)).toBe(hashOf(r));
    expect(rec.config.drift.verdict).toBeNull();
    expect(configState(rec)).toBe('applied');
    // Still not running it after the push: drift, and no second push.
    now += 1000;
    const later = f.handleMessage(a, msg({ instanceUid: uid(6), sequenceNum: 2, capabilities: CAPS, remoteConfigStatus: applied, effectiveConfig: eff('receivers: { nop: {} }\n') }));
    expect(later.remoteConfig).toBeUndefined();
    expect(rec.config.drift.verdict).toEqual({ drifted: true, differences: ['exporters: missing'] });
  });

  it('judges a stale effective config once the settle has passed (the sweep does it)', () => {
    let now = 1_000_000;
    const f = setup({ now: () => now, driftSettleMs: 5000 });
    const a = wsConn();
    const r = f.handleMessage(a, msg({ instanceUid: uid(7), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {}, effectiveConfig: eff('exporters:\n  debug: {}\n') }));
    const rec = f.get(uidToString(uid(7)))!;
    f.handleMessage(a, msg({ instanceUid: uid(7), sequenceNum: 1, capabilities: CAPS, remoteConfigStatus: { lastRemoteConfigHash: r.remoteConfig!.configHash, status: RCS.APPLIED } }));
    f.sweep();
    expect(rec.config.drift.verdict).toBeNull();
    now += 5000;
    f.sweep();
    expect(rec.config.drift.verdict).toEqual({ drifted: false, differences: [] });
  });
});

describe('connection-settings offers only when they change what the agent has', () => {
  const caps = CAPS | C.AcceptsOpAMPConnectionSettings;

  it('offers nothing to an agent when the heartbeat is the default and no credential is newer', () => {
    const f = setup({ heartbeatIntervalSeconds: 30 });
    const r = f.handleMessage(wsConn(), msg({ instanceUid: uid(8), sequenceNum: 0, capabilities: caps, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {} }));
    expect(r.connectionSettings).toBeUndefined();
    expect(r.remoteConfig).toBeDefined();
  });

  it('offers a non-default heartbeat once per agent, not on each new connection, and not while a config is on its way', () => {
    let now = 1_000_000;
    const f = setup({ now: () => now, heartbeatIntervalSeconds: 5 });
    const a = wsConn();
    const first = f.handleMessage(a, msg({ instanceUid: uid(9), sequenceNum: 0, capabilities: caps, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {} }));
    expect(first.remoteConfig).toBeDefined();
    expect(first.connectionSettings).toBeUndefined();
    now += 100;
    // Still applying: nothing yet (the Supervisor would restart its collector twice).
    const applying = f.handleMessage(a, msg({ instanceUid: uid(9), sequenceNum: 1, capabilities: caps, remoteConfigStatus: { lastRemoteConfigHash: first.remoteConfig!.configHash, status: RCS.APPLYING } }));
    expect(applying.connectionSettings).toBeUndefined();
    const applied = { lastRemoteConfigHash: first.remoteConfig!.configHash, status: RCS.APPLIED };
    const second = f.handleMessage(a, msg({ instanceUid: uid(9), sequenceNum: 2, capabilities: caps, remoteConfigStatus: applied }));
    expect(second.connectionSettings?.opamp?.heartbeatIntervalSeconds).toBe(5);
    // The agent restarts its client on the offer: the new connection gets neither the offer nor the config again.
    now += 100;
    const b = wsConn();
    const third = f.handleMessage(b, msg({ instanceUid: uid(9), sequenceNum: 0, capabilities: caps, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: applied }));
    expect(third.connectionSettings).toBeUndefined();
    expect(third.remoteConfig).toBeUndefined();
    // Much later, another reconnect of the same process: still nothing.
    now += 120_000;
    const fourth = f.handleMessage(wsConn(), msg({ instanceUid: uid(9), sequenceNum: 0, capabilities: caps, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: applied }));
    expect(fourth.connectionSettings).toBeUndefined();
  });

  it('does not offer again what an agent reports it has (after a bridge restart), and re-offers when it reports another hash', () => {
    const caps2 = caps | C.ReportsConnectionSettingsStatus;
    const before = setup({ heartbeatIntervalSeconds: 5 });
    const offer = before.handleMessage(wsConn(), msg({ instanceUid: uid(10), sequenceNum: 0, capabilities: caps2, agentDescription: desc({}) })).connectionSettings!;
    expect(offer.opamp).toBeDefined();
    // A new bridge (no records): the agent reports the hash of the offer it runs.
    const after = setup({ heartbeatIntervalSeconds: 5 });
    const a = wsConn();
    const r = after.handleMessage(a, msg({ instanceUid: uid(10), sequenceNum: 0, capabilities: caps2, agentDescription: desc({}), connectionSettingsStatus: { lastConnectionSettingsHash: offer.hash, status: 1 } }));
    expect(r.connectionSettings).toBeUndefined();
    const other = after.handleMessage(a, msg({ instanceUid: uid(10), sequenceNum: 1, capabilities: caps2, connectionSettingsStatus: { lastConnectionSettingsHash: Buffer.alloc(32, 7), status: 1 } }));
    expect(other.connectionSettings?.hash).toEqual(offer.hash);
  });
});

describe('own-telemetry offers wait while the agent starts', () => {
  it('offers own-metrics destinations once an agent that reports health is healthy, not before', () => {
    let now = 1_000_000;
    const f = setup({ now: () => now, ownTelemetry: () => ({ metrics: { endpoint: 'http://127.0.0.1:8080/v1/metrics', headers: {} } }) });
    const caps = CAPS | C.ReportsOwnMetrics;
    const a = wsConn();
    const first = f.handleMessage(a, msg({ instanceUid: uid(14), sequenceNum: 0, capabilities: caps, agentDescription: desc({}), health: { healthy: false, status: 'starting' } }));
    expect(first.connectionSettings).toBeUndefined();
    now += 500;
    expect(f.handleMessage(a, msg({ instanceUid: uid(14), sequenceNum: 1, capabilities: caps })).connectionSettings).toBeUndefined();
    now += 500;
    const healthy = f.handleMessage(a, msg({ instanceUid: uid(14), sequenceNum: 2, capabilities: caps, health: { healthy: true } }));
    expect(healthy.connectionSettings?.ownMetrics?.destinationEndpoint).toBe('http://127.0.0.1:8080/v1/metrics');
    // An agent that never becomes healthy gets them after offerRetryMs.
    const b = wsConn();
    f.handleMessage(b, msg({ instanceUid: uid(15), sequenceNum: 0, capabilities: caps, agentDescription: desc({}), health: { healthy: false } }));
    now += 60_000;
    expect(f.handleMessage(b, msg({ instanceUid: uid(15), sequenceNum: 1, capabilities: caps })).connectionSettings?.ownMetrics).toBeDefined();
  });
});

describe('requests the server does not serve are refused explicitly', () => {
  it('answers a ConnectionSettingsRequest with BAD_REQUEST alone, counts it, and asks for full state on the next message', async () => {
    const f = setup();
    const a = wsConn();
    const r = f.handleMessage(a, msg({ instanceUid: uid(11), sequenceNum: 3, capabilities: CAPS, connectionSettingsRequest: { opamp: { certificateRequest: { csr: Buffer.from('csr') } } } }));
    expect(r.errorResponse?.type).toBe(ServerErrorResponseType.BadRequest);
    expect(r.errorResponse?.errorMessage).toMatch(/does not issue client certificates/);
    expect(r.flags ?? 0).toBe(0);
    const next = f.handleMessage(a, msg({ instanceUid: uid(11), sequenceNum: 4, capabilities: CAPS }));
    expect(next.flags).toBe(1);
    const v = f.view(f.get(uidToString(uid(11)))!);
    expect(v.refusedRequests).toMatchObject([{ kind: 'connection_settings_request', count: 1 }]);
  });

  it('answers a custom message with the server\'s custom capabilities (none), and counts it', async () => {
    const f = setup();
    const r = f.handleMessage(wsConn(), msg({ instanceUid: uid(12), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({}), customCapabilities: { capabilities: ['com.example.pause'] }, customMessage: { capability: 'com.example.pause', type: 'pause', data: Buffer.from('x') } }));
    expect(r.customCapabilities).toEqual({ capabilities: [] });
    expect(r.errorResponse ?? null).toBeNull();
    const v = f.view(f.get(uidToString(uid(12)))!);
    expect(v.refusedRequests).toMatchObject([{ kind: 'custom_message', count: 1 }]);
    expect(v.refusedRequests[0]!.message).toMatch(/com\.example\.pause/);
  });
});
