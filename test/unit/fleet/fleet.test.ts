import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { Fleet } from '../../../src/fleet/fleet.js';
import { AgentCapabilities as C, SERVER_CAPABILITIES, type ServerToAgentProps } from '../../../src/opamp/messages.js';
import type { AgentConnection } from '../../../src/opamp/connection.js';
import { DesiredState } from '../../../src/render/index.js';
import { createMetrics } from '../../../src/telemetry/metrics.js';
import { uidToString } from '../../../src/opamp/uid.js';
import { CAPS, RCS, collector, desc, hashOf, httpConn, msg, setup, uid, wsConn } from './fixtures.js';

describe('Fleet#handleMessage', () => {
  it('answers a fresh agent with server capabilities and its config, without asking for full state', () => {
    const f = setup();
    const r = f.handleMessage(wsConn(), msg({ instanceUid: uid(1), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {} }));
    expect(Buffer.from(r.instanceUid!)).toEqual(Buffer.from(uid(1)));
    expect(r.capabilities).toBe(SERVER_CAPABILITIES);
    expect(r.flags ?? 0).toBe(0);
    expect(r.remoteConfig?.config?.configMap?.['']?.contentType).toBe('text/yaml');
    expect(Buffer.from(r.remoteConfig!.config!.configMap!['']!.body!).toString()).toContain('debug');
    expect(hashOf(r)).toBe(f.get(uidToString(uid(1)))!.config.desired!.hashHex);
  });

  it('asks an unknown agent that omits its state for full state, and offers config only after it reports', () => {
    const f = setup();
    const conn = wsConn();
    const r = f.handleMessage(conn, msg({ instanceUid: uid(2), sequenceNum: 41, capabilities: CAPS }));
    expect(r.flags).toBe(1);
    expect(r.remoteConfig).toBeUndefined();
    const r2 = f.handleMessage(conn, msg({ instanceUid: uid(2), sequenceNum: 42, capabilities: CAPS, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {} }));
    expect(r2.flags ?? 0).toBe(0);
    expect(r2.remoteConfig).toBeDefined();
  });

  it('does not ask an unknown agent for full state when its message already carries it (a reconnect after our restart)', () => {
    const f = setup();
    const conn = wsConn();
    const full = { capabilities: CAPS, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {}, effectiveConfig: { configMap: { configMap: {} } }, health: { healthy: true } };
    const r = f.handleMessage(conn, msg({ instanceUid: uid(4), sequenceNum: 77, ...full }));
    expect(r.flags ?? 0).toBe(0);
    expect(r.remoteConfig).toBeDefined();
    // Missing one field its capabilities promise (health): asked.
    const partial = f.handleMessage(wsConn(), msg({ instanceUid: uid(5), sequenceNum: 77, ...full, health: undefined }));
    expect(partial.flags).toBe(1);
  });

  it('asks for full state when sequence_num skips', () => {
    const f = setup();
    const conn = wsConn();
    f.handleMessage(conn, msg({ instanceUid: uid(3), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({}) }));
    expect(f.handleMessage(conn, msg({ instanceUid: uid(3), sequenceNum: 1, capabilities: CAPS })).flags ?? 0).toBe(0);
    expect(f.handleMessage(conn, msg({ instanceUid: uid(3), sequenceNum: 5, capabilities: CAPS })).flags).toBe(1);
    expect(f.handleMessage(conn, msg({ instanceUid: uid(3), sequenceNum: 6, capabilities: CAPS })).flags ?? 0).toBe(0);
  });

  it('refuses an instance_uid that is not 16 bytes with BAD_REQUEST and nothing else', () => {
    const f = setup();
    for (const bad of [new Uint8Array(0), new Uint8Array(15), Buffer.from('01ARZ3NDEKTSV4RRFFQ69G5FAV')]) {
      const r = f.handleMessage(wsConn(), msg({ instanceUid: bad, capabilities: CAPS }));
      expect(r.errorResponse?.type).toBe(1);
      expect(r.errorResponse?.errorMessage).toMatch(/16 bytes/);
      expect(r.remoteConfig).toBeUndefined();
      expect(r.capabilities).toBeUndefined();
    }
    expect(f.size).toBe(0);
  });

  it('never sends config to an agent without AcceptsRemoteConfig', () => {
    const f = setup();
    const r = f.handleMessage(wsConn(), msg({ instanceUid: uid(4), capabilities: C.ReportsStatus | C.ReportsEffectiveConfig, agentDescription: desc({ role: 'edge' }) }));
    expect(r.remoteConfig).toBeUndefined();
    expect(f.get(uidToString(uid(4)))!.config.desired).not.toBeNull();
  });

  it('does not offer a config the agent already reports', () => {
    const f = setup();
    const conn = wsConn();
    const first = f.handleMessage(conn, msg({ instanceUid: uid(5), capabilities: CAPS, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {} }));
    const r = f.handleMessage(conn, msg({ instanceUid: uid(5), sequenceNum: 1, capabilities: CAPS, remoteConfigStatus: { lastRemoteConfigHash: first.remoteConfig!.configHash, status: RCS.APPLIED } }));
    expect(r.remoteConfig).toBeUndefined();
    expect(f.view(f.get(uidToString(uid(5)))!).remoteConfig.inSync).toBe(true);
  });

  it('sends a config once per WebSocket connection, and again over HTTP only after offerRetryMs', () => {
    let now = 1_000_000;
    const f = setup({ now: () => now, offerRetryMs: 60_000 });
    const conn = wsConn();
    expect(f.handleMessage(conn, msg({ instanceUid: uid(6), capabilities: CAPS, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {} })).remoteConfig).toBeDefined();
    now += 1000;
    expect(f.handleMessage(conn, msg({ instanceUid: uid(6), sequenceNum: 1, capabilities: CAPS })).remoteConfig).toBeUndefined();
    // A slow apply on a connection that delivered it is no reason to send it twice.
    now += 60_000;
    expect(f.handleMessage(conn, msg({ instanceUid: uid(6), sequenceNum: 2, capabilities: CAPS })).remoteConfig).toBeUndefined();
    // An answer over HTTP can be lost: sent again after offerRetryMs, not before.
    const h = httpConn();
    expect(f.handleMessage(h, msg({ instanceUid: uid(7), capabilities: CAPS, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {} })).remoteConfig).toBeDefined();
    now += 1000;
    expect(f.handleMessage(httpConn(), msg({ instanceUid: uid(7), sequenceNum: 1, capabilities: CAPS })).remoteConfig).toBeUndefined();
    now += 60_000;
    expect(f.handleMessage(httpConn(), msg({ instanceUid: uid(7), sequenceNum: 2, capabilities: CAPS })).remoteConfig).toBeDefined();
  });

  it('never re-pushes a hash the agent reported FAILED, even after a rollback report, until desired changes', () => {
    let now = 1_000_000;
    const f = setup({ now: () => now, offerRetryMs: 10 });
    const conn = wsConn();
    const r = f.handleMessage(conn, msg({ instanceUid: uid(7), capabilities: CAPS, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {} }));
    const b = r.remoteConfig!.configHash!;
    now += 100;
    f.handleMessage(conn, msg({ instanceUid: uid(7), sequenceNum: 1, capabilities: CAPS, remoteConfigStatus: { lastRemoteConfigHash: b, status: RCS.FAILED, errorMessage: 'bad exporter' } }));
    // The Supervisor's rollback: APPLIED with the previous hash A.
    now += 100;
    const afterRollback = f.handleMessage(conn, msg({ instanceUid: uid(7), sequenceNum: 2, capabilities: CAPS, remoteConfigStatus: { lastRemoteConfigHash: Buffer.alloc(32, 7), status: RCS.APPLIED } }));
    expect(afterRollback.remoteConfig).toBeUndefined();
    for (let i = 3; i < 10; i++) {
      now += 1000;
      expect(f.handleMessage(conn, msg({ instanceUid: uid(7), sequenceNum: i, capabilities: CAPS })).remoteConfig).toBeUndefined();
    }
    const rec = f.get(uidToString(uid(7)))!;
    expect(f.view(rec).remoteConfig.status).toBe('APPLIED');
    // A new desired config is pushed at once.
    f.setDesiredState(new DesiredState([collector('edge', { role: 'edge' }, { exporters: { debug: { verbosity: 'detailed' } } })]));
    expect(conn.sent).toHaveLength(1);
    expect(hashOf(conn.sent[0]!)).not.toBe(Buffer.from(b).toString('hex'));
  });

  it('reports FAILED with the message and counts the agent as failed', () => {
    const f = setup();
    const conn = wsConn();
    const r = f.handleMessage(conn, msg({ instanceUid: uid(8), capabilities: CAPS, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {} }));
    f.handleMessage(conn, msg({ instanceUid: uid(8), sequenceNum: 1, capabilities: CAPS, remoteConfigStatus: { lastRemoteConfigHash: r.remoteConfig!.configHash, status: RCS.FAILED, errorMessage: 'cannot start pipelines' } }));
    const v = f.view(f.get(uidToString(uid(8)))!);
    expect(v.remoteConfig).toMatchObject({ status: 'FAILED', errorMessage: 'cannot start pipelines', inSync: false });
  });

  it('closes the older of two live connections that claim one instance_uid', () => {
    const f = setup();
    const a = wsConn();
    const b = wsConn();
    f.handleMessage(a, msg({ instanceUid: uid(9), capabilities: CAPS, agentDescription: desc({}) }));
    f.handleMessage(b, msg({ instanceUid: uid(9), sequenceNum: 1, capabilities: CAPS }));
    expect(a.closed).toEqual([[1008, 'replaced by a newer connection for this instance_uid']]);
    expect(b.closed).toEqual([]);
    // The old socket's close must not disconnect the agent that now lives on the new one.
    f.connectionClosed(a);
    expect(f.get(uidToString(uid(9)))!.session.connected).toBe(true);
    f.connectionClosed(b);
    expect(f.get(uidToString(uid(9)))!.session.connected).toBe(false);
  });

  it('assigns a new 16-byte uid when the agent sets RequestInstanceUid', () => {
    const f = setup();
    const conn = wsConn();
    const r = f.handleMessage(conn, msg({ instanceUid: uid(10), flags: 1, capabilities: CAPS, agentDescription: desc({}) }));
    const fresh = r.agentIdentification!.newInstanceUid!;
    expect(fresh).toHaveLength(16);
    expect((fresh[6]! >> 4)).toBe(7); // UUIDv7
    expect(f.get(uidToString(uid(10)))).toBeUndefined();
    const rec = f.get(uidToString(fresh))!;
    expect(rec.description).not.toBeNull();
    f.handleMessage(conn, msg({ instanceUid: fresh, sequenceNum: 1, capabilities: CAPS }));
    expect(f.size).toBe(1);
    f.connectionClosed(conn);
    expect(rec.session.connected).toBe(false);
  });

  it('honours agent_disconnect', () => {
    const f = setup();
    const conn = wsConn();
    f.handleMessage(conn, msg({ instanceUid: uid(11), capabilities: CAPS, agentDescription: desc({}) }));
    f.handleMessage(conn, msg({ instanceUid: uid(11), sequenceNum: 1, capabilities: CAPS, agentDisconnect: {} }));
    expect(f.get(uidToString(uid(11)))!.session.connected).toBe(false);
  });

  it('stores health, effective config and description, keeping them when later messages omit them', () => {
    const f = setup();
    const conn = wsConn();
    f.handleMessage(conn, msg({
      instanceUid: uid(12), capabilities: CAPS, agentDescription: desc({ role: 'edge' }),
      health: { healthy: false, status: 'StatusRecoverableError', lastError: 'exporter down', startTimeUnixNano: '1764000000123456789', componentHealthMap: { 'pipeline:traces': { healthy: false, status: 'StatusRecoverableError' } } },
      effectiveConfig: { configMap: { configMap: { '': { body: Buffer.from('receivers: {}\n'), contentType: 'text/yaml' } } } },
    }));
    f.handleMessage(conn, msg({ instanceUid: uid(12), sequenceNum: 1, capabilities: CAPS }));
    const v = f.view(f.get(uidToString(uid(12)))!);
    expect(v.health).toMatchObject({ healthy: false, lastError: 'exporter down', startTimeUnixNano: '1764000000123456789' });
    expect(v.health!.componentHealthMap['pipeline:traces']!.status).toBe('StatusRecoverableError');
    expect(v.effectiveConfig).toEqual({ '': { body: 'receivers: {}\n', contentType: 'text/yaml' } });
    expect(v.labels).toMatchObject({ role: 'edge', 'service.name': 'otelcol' });
  });

  it('offers a complete opamp connection-settings offer only to agents that accept it', () => {
    const f = setup();
    const plain = f.handleMessage(wsConn(), msg({ instanceUid: uid(13), capabilities: CAPS, agentDescription: desc({}) }));
    expect(plain.connectionSettings).toBeUndefined();
    const conn: AgentConnection = { ...wsConn(), authorization: 'Bearer t0k' };
    const r = f.handleMessage(conn, msg({ instanceUid: uid(14), capabilities: CAPS | C.AcceptsOpAMPConnectionSettings | C.ReportsHeartbeat, agentDescription: desc({}) }));
    const o = r.connectionSettings!;
    expect(o.hash).toHaveLength(32);
    expect(o.opamp).toMatchObject({ destinationEndpoint: 'ws://127.0.0.1:4320/v1/opamp', heartbeatIntervalSeconds: 7 });
    expect(o.opamp!.headers!.headers).toEqual([{ key: 'Authorization', value: 'Bearer t0k' }]);
    // Not repeated while unchanged.
    expect(f.handleMessage(conn, msg({ instanceUid: uid(14), sequenceNum: 1, capabilities: CAPS | C.AcceptsOpAMPConnectionSettings })).connectionSettings).toBeUndefined();
  });

  it('refuses to be built with a zero heartbeat, which turns heartbeats off in Go clients', () => {
    expect(() => new Fleet({ logger: pino({ level: 'silent' }), metrics: createMetrics({ defaultMetrics: false }), heartbeatIntervalSeconds: 0 })).toThrow(TypeError);
  });
});

describe('Fleet: read-only agents and drift', () => {
  it('counts an agent without AcceptsRemoteConfig as read-only, never applying or failed', async () => {
    const { configState } = await import('../../../src/fleet/fleet.js');
    const f = setup();
    f.handleMessage(wsConn(), msg({ instanceUid: uid(40), capabilities: C.ReportsStatus | C.ReportsHealth | C.ReportsEffectiveConfig, agentDescription: desc({ role: 'edge' }), health: { healthy: true } }));
    expect(configState(f.get(uidToString(uid(40)))!)).toBe('readonly');
  });

  it('judges drift only after APPLIED, and names the difference', () => {
    const f = setup();
    const conn = wsConn();
    const eff = (body: string) => ({ configMap: { configMap: { '': { body: Buffer.from(body), contentType: 'text/yaml' } } } });
    const r = f.handleMessage(conn, msg({ instanceUid: uid(41), capabilities: CAPS, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {}, effectiveConfig: eff('exporters: {}\n') }));
    const rec = f.get(uidToString(uid(41)))!;
    expect(rec.config.drift.verdict).toBeNull();
    f.handleMessage(conn, msg({ instanceUid: uid(41), sequenceNum: 1, capabilities: CAPS, remoteConfigStatus: { lastRemoteConfigHash: r.remoteConfig!.configHash, status: RCS.APPLIED }, effectiveConfig: eff('exporters:\n  debug: { verbosity: basic }\nextensions: { opamp: {} }\n') }));
    expect(rec.config.drift.verdict).toEqual({ drifted: false, differences: [] });
    f.handleMessage(conn, msg({ instanceUid: uid(41), sequenceNum: 2, capabilities: CAPS, effectiveConfig: eff('receivers: { nop: {} }\nexporters: { nop: {} }\n') }));
    expect(rec.config.drift.verdict).toEqual({ drifted: true, differences: ['exporters.debug: missing'] });
  });
});

describe('Fleet#setDesiredState', () => {
  it('pushes changed configs to connected WebSocket agents only, and nothing to agents that no longer match', () => {
    const f = setup();
    const ws = wsConn();
    f.handleMessage(ws, msg({ instanceUid: uid(20), capabilities: CAPS, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {} }));
    const http = httpConn();
    const first = f.handleMessage(http, msg({ instanceUid: uid(21), capabilities: CAPS, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {} }));
    expect(first.remoteConfig).toBeDefined();
    f.setDesiredState(new DesiredState([collector('edge', { role: 'edge' }, { exporters: { debug: { verbosity: 'basic' } } })]));
    expect(ws.sent).toHaveLength(1);
    // The HTTP agent gets it with its next poll.
    const poll = f.handleMessage(http, msg({ instanceUid: uid(21), sequenceNum: 1, capabilities: CAPS }));
    expect(hashOf(poll)).toBe(hashOf(ws.sent[0]!));
    // Re-installing the same state pushes nothing.
    f.setDesiredState(new DesiredState([collector('edge', { role: 'edge' }, { exporters: { debug: { verbosity: 'basic' } } })]));
    expect(ws.sent).toHaveLength(1);
    // No Collector matches any more: nothing is sent (an empty config map would stop the collector).
    f.setDesiredState(new DesiredState([]));
    expect(ws.sent).toHaveLength(1);
    expect(f.get(uidToString(uid(20)))!.config.desired).toBeNull();
  });
});

describe('Fleet fan-out', () => {
  it('encodes each distinct config once, sends in batches with the event loop free between them, and skips replaced connections', async () => {
    const f = setup();
    const conns: ReturnType<typeof wsConn>[] = [];
    const bigUid = (i: number) => {
      const b = new Uint8Array(16);
      b[0] = 0x02;
      b[14] = i >> 8;
      b[15] = i & 0xff;
      return b;
    };
    for (let i = 0; i < 2500; i++) {
      const c = wsConn();
      conns.push(c);
      const first = f.handleMessage(c, msg({ instanceUid: bigUid(i), capabilities: CAPS, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {} }));
      f.handleMessage(c, msg({ instanceUid: bigUid(i), sequenceNum: 1, capabilities: CAPS, remoteConfigStatus: { lastRemoteConfigHash: first.remoteConfig!.configHash, status: RCS.APPLIED } }));
    }
    // Agent 2400 reconnects on a new connection before its batch goes out.
    const tails = new Set<Uint8Array>();
    for (const c of conns) {
      const send = c.send!.bind(c);
      c.send = (m, tail) => {
        if (tail) tails.add(tail);
        send(m, tail);
      };
    }
    f.setDesiredState(new DesiredState([collector('edge', { role: 'edge' }, { exporters: { debug: { verbosity: 'detailed' } } })]));
    expect(conns.filter((c) => c.sent.length === 1)).toHaveLength(1000);
    const replacement = wsConn();
    f.handleMessage(replacement, msg({ instanceUid: bigUid(2400), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({ role: 'edge' }) }));
    await new Promise((r) => setImmediate(r));
    expect(conns.filter((c) => c.sent.length === 1)).toHaveLength(2000);
    await new Promise((r) => setImmediate(r));
    expect(conns[2400]!.sent).toHaveLength(0);
    expect(conns.filter((c) => c.sent.length === 1)).toHaveLength(2499);
    expect(tails.size).toBe(1);
    const hashes = new Set(conns.flatMap((c) => c.sent.map(hashOf)));
    expect(hashes.size).toBe(1);
    // Every message is the agent's own: its uid, and the shared config after it.
    expect(Buffer.from(conns[7]!.sent[0]!.instanceUid!).equals(Buffer.from(bigUid(7)))).toBe(true);
    expect(Buffer.from(conns[7]!.sent[0]!.remoteConfig!.config!.configMap!['']!.body!).toString()).toContain('detailed');
  });
});

describe('Fleet#sweep', () => {
  it('marks a silent HTTP agent disconnected and forgets it later', () => {
    let now = 0;
    const f = new Fleet({ logger: pino({ level: 'silent' }), metrics: createMetrics({ defaultMetrics: false }), offlineAfterMs: 1000, retainDisconnectedMs: 5000, now: () => now });
    f.handleMessage(httpConn(), msg({ instanceUid: uid(30), capabilities: CAPS, agentDescription: desc({}) }));
    now = 999;
    f.sweep();
    expect(f.get(uidToString(uid(30)))!.session.connected).toBe(true);
    now = 1001;
    f.sweep();
    expect(f.get(uidToString(uid(30)))!.session.connected).toBe(false);
    now = 7000;
    f.sweep();
    expect(f.get(uidToString(uid(30)))).toBeUndefined();
  });
});

describe('Fleet#handleMessage with arbitrary messages (property)', () => {
  it('never throws, always answers with the sender\'s uid, and never mixes error_response with other fields', async () => {
    const fc = (await import('fast-check')).default;
    const f = setup();
    const conns = [wsConn(), wsConn(), httpConn()];
    const kv = fc.record({ key: fc.string({ maxLength: 12 }), value: fc.oneof(fc.record({ stringValue: fc.string({ maxLength: 12 }) }), fc.record({ boolValue: fc.boolean() }), fc.record({ intValue: fc.integer() }), fc.record({ doubleValue: fc.double() })) });
    const uids = [uid(100), uid(101), uid(102), new Uint8Array(3)];
    const message = fc.record(
      {
        instanceUid: fc.constantFrom(...uids),
        sequenceNum: fc.nat(20),
        capabilities: fc.nat(0xffff),
        flags: fc.nat(3),
        agentDescription: fc.record({ identifyingAttributes: fc.array(kv, { maxLength: 3 }), nonIdentifyingAttributes: fc.array(kv, { maxLength: 3 }) }),
        health: fc.record({ healthy: fc.boolean(), status: fc.string({ maxLength: 8 }), lastError: fc.string({ maxLength: 8 }) }),
        remoteConfigStatus: fc.record({ lastRemoteConfigHash: fc.uint8Array({ maxLength: 32 }), status: fc.nat(5), errorMessage: fc.string({ maxLength: 8 }) }),
        agentDisconnect: fc.constant({}),
        connectionSettingsRequest: fc.constant({ opamp: { certificateRequest: { csr: Buffer.from('-----BEGIN CERTIFICATE REQUEST-----') } } }),
        customMessage: fc.record({ capability: fc.string({ maxLength: 8 }), type: fc.string({ maxLength: 4 }), data: fc.uint8Array({ maxLength: 4 }) }),
        effectiveConfig: fc.record({ configMap: fc.record({ configMap: fc.dictionary(fc.string({ maxLength: 4 }), fc.record({ body: fc.uint8Array({ maxLength: 16 }), contentType: fc.string({ maxLength: 4 }) }), { maxKeys: 2 }) }) }),
      },
      { requiredKeys: ['instanceUid'] },
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(2), message), { minLength: 1, maxLength: 30 }), fc.nat(3), (steps, desiredPick) => {
        if (desiredPick === 0) f.setDesiredState(new DesiredState([collector('any', {}, { exporters: { debug: { n: steps.length } } })]));
        for (const [ci, m] of steps) {
          const decoded = msg(m);
          const r = f.handleMessage(conns[ci]!, decoded);
          expect(Buffer.from(r.instanceUid!)).toEqual(Buffer.from(decoded.instanceUid));
          if (r.errorResponse) {
            expect(r.remoteConfig ?? null).toBeNull();
            expect(r.flags ?? 0).toBe(0);
          }
          // Config only ever goes to agents that accept it.
          if (r.remoteConfig) expect(Number(decoded.capabilities) & C.AcceptsRemoteConfig).toBeTruthy();
        }
        if (desiredPick === 1) f.connectionClosed(conns[0]!);
        f.sweep();
      }),
      { numRuns: 300 },
    );
  });
});

describe('Fleet: secrets and credentials', () => {
  const SECRET = 'sk-live-0123456789';
  const secrets = { get: (ns: string, name: string) => (ns === 'default' && name === 'creds' ? { data: { key: SECRET }, version: 'v1' } : undefined) };

  it('pushes substituted values but stores what agents report back redacted (effective config, errors, health)', () => {
    const f = new Fleet({ logger: pino({ level: 'silent' }), metrics: createMetrics({ defaultMetrics: false }) });
    const c = { ...collector('secure', {}, { exporters: { otlphttp: { endpoint: 'https://x.example', headers: { k: '${secret:creds/key}' } } } }), secretNames: ['creds'] };
    f.setDesiredState(new DesiredState([c], secrets));
    const conn = wsConn();
    const r = f.handleMessage(conn, msg({ instanceUid: uid(40), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({}), remoteConfigStatus: {} }));
    const body = Buffer.from(r.remoteConfig!.config!.configMap!['']!.body!).toString();
    expect(body).toContain(`k: ${SECRET}`);
    f.handleMessage(conn, msg({
      instanceUid: uid(40),
      sequenceNum: 1,
      capabilities: CAPS,
      remoteConfigStatus: { lastRemoteConfigHash: r.remoteConfig!.configHash, status: RCS.APPLIED },
      effectiveConfig: { configMap: { configMap: { '': { body: Buffer.from(body), contentType: 'text/yaml' } } } },
      health: { healthy: false, lastError: `auth failed for ${SECRET}`, componentHealthMap: { 'exporter:otlphttp': { healthy: false, status: `key ${SECRET} refused` } } },
    }));
    const v = JSON.stringify(f.viewOf(uidToString(uid(40))));
    expect(v).not.toContain(SECRET);
    expect(v).toContain('auth failed for [REDACTED]');
    expect(v).toContain('key [REDACTED] refused');
    // Both sides of the drift check are redacted alike: no false drift, and no difference quoting the value.
    expect(f.viewOf(uidToString(uid(40)))!.drift).toMatchObject({ drifted: false });
    f.handleMessage(conn, msg({ instanceUid: uid(40), sequenceNum: 2, capabilities: CAPS, remoteConfigStatus: { lastRemoteConfigHash: r.remoteConfig!.configHash, status: RCS.FAILED, errorMessage: `bad key ${SECRET}` } }));
    expect(f.viewOf(uidToString(uid(40)))!.remoteConfig.errorMessage).toBe('bad key [REDACTED]');
  });

  it('offers the current credential to an agent on an old one, once per change, and can close revoked ones', () => {
    let current = 'Bearer new';
    const accepted = new Set(['Bearer new', 'Bearer old']);
    const f = new Fleet({
      logger: pino({ level: 'silent' }),
      metrics: createMetrics({ defaultMetrics: false }),
      credentials: { replacementFor: (a) => (a === undefined || a === current ? undefined : current) },
    });
    const conn = { ...wsConn(), authorization: 'Bearer old' };
    const caps = CAPS | C.AcceptsOpAMPConnectionSettings;
    const r = f.handleMessage(conn, msg({ instanceUid: uid(41), sequenceNum: 0, capabilities: caps, agentDescription: desc({}) }));
    expect(r.connectionSettings?.opamp?.headers?.headers).toEqual([{ key: 'Authorization', value: 'Bearer new' }]);
    const rec = f.get(uidToString(uid(41)))!;
    expect(f.credentialStale(rec)).toBe(true);
    // Nothing new to offer: nothing sent.
    expect(f.reofferConnectionSettings()).toBe(0);
    current = 'Bearer newer';
    expect(f.reofferConnectionSettings()).toBe(1);
    expect(conn.sent.at(-1)!.connectionSettings?.opamp?.headers?.headers).toEqual([{ key: 'Authorization', value: 'Bearer newer' }]);
    // The agent reconnects with the current credential: no longer stale, and not offered the same
    // settings again right away (the Supervisor restarts its client on every offer: that would loop).
    const conn2 = { ...wsConn(), authorization: 'Bearer newer' };
    const r2 = f.handleMessage(conn2, msg({ instanceUid: uid(41), sequenceNum: 0, capabilities: caps, agentDescription: desc({}) }));
    expect(r2.connectionSettings).toBeUndefined();
    expect(f.credentialStale(f.get(uidToString(uid(41)))!)).toBe(false);
    accepted.delete('Bearer newer');
    expect(f.closeConnections((c) => !accepted.has(c.authorization ?? ''), 'credential revoked')).toBe(1);
    expect(conn2.closed).toEqual([[1008, 'credential revoked']]);
  });
});

describe('Fleet: own-telemetry offers', () => {
  it('offers each signal only to agents that report it, with its headers, and again when they change', () => {
    let apiKey = 'k1';
    const f = new Fleet({
      logger: pino({ level: 'silent' }),
      metrics: createMetrics({ defaultMetrics: false }),
      ownTelemetry: () => ({ metrics: { endpoint: 'https://otlp.example/v1/metrics', headers: { 'x-api-key': apiKey } }, logs: { endpoint: 'https://otlp.example/v1/logs', headers: {} } }),
    });
    const conn = wsConn();
    const r = f.handleMessage(conn, msg({ instanceUid: uid(50), sequenceNum: 0, capabilities: CAPS | C.ReportsOwnMetrics, agentDescription: desc({}), health: { healthy: true } }));
    const cs = r.connectionSettings!;
    expect(cs.opamp).toBeUndefined(); // it does not accept OpAMP connection settings
    expect(cs.ownMetrics).toEqual({ destinationEndpoint: 'https://otlp.example/v1/metrics', headers: { headers: [{ key: 'x-api-key', value: 'k1' }] } });
    expect(cs.ownLogs).toBeUndefined(); // it does not report its logs
    expect(f.handleMessage(conn, msg({ instanceUid: uid(50), sequenceNum: 1, capabilities: CAPS | C.ReportsOwnMetrics })).connectionSettings).toBeUndefined();
    apiKey = 'k2';
    expect(f.reofferConnectionSettings()).toBe(1);
    const again = conn.sent.at(-1)!.connectionSettings!;
    expect(again.ownMetrics?.headers?.headers).toEqual([{ key: 'x-api-key', value: 'k2' }]);
    expect(Buffer.from(again.hash!).toString('hex')).not.toBe(Buffer.from(cs.hash!).toString('hex'));
    // The agent's report about the offer is kept and shown.
    f.handleMessage(conn, msg({ instanceUid: uid(50), sequenceNum: 2, capabilities: CAPS | C.ReportsOwnMetrics, connectionSettingsStatus: { lastConnectionSettingsHash: again.hash, status: 1 } }));
    expect(f.viewOf(uidToString(uid(50)))!.connectionSettings).toEqual({ offeredHash: Buffer.from(again.hash!).toString('hex'), reported: { hash: Buffer.from(again.hash!).toString('hex'), status: 'APPLIED', errorMessage: '' } });
    // An agent without any of these capabilities gets no offer at all.
    expect(f.handleMessage(wsConn(), msg({ instanceUid: uid(51), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({}) })).connectionSettings).toBeUndefined();
  });
});

describe('Fleet: connection-settings offers on reconnect', () => {
  it('does not re-offer the same settings on the reconnect an offer causes, but does once offerRetryMs has passed', () => {
    let t = 1_000_000;
    const f = new Fleet({ logger: pino({ level: 'silent' }), metrics: createMetrics({ defaultMetrics: false }), heartbeatIntervalSeconds: 5, now: () => t });
    const caps = CAPS | C.AcceptsOpAMPConnectionSettings;
    const first = f.handleMessage(wsConn(), msg({ instanceUid: uid(60), sequenceNum: 0, capabilities: caps, agentDescription: desc({}) }));
    expect(first.connectionSettings?.opamp?.heartbeatIntervalSeconds).toBe(5);
    t += 200; // the Supervisor applied it and reconnected
    expect(f.handleMessage(wsConn(), msg({ instanceUid: uid(60), sequenceNum: 0, capabilities: caps, agentDescription: desc({}) })).connectionSettings).toBeUndefined();
    t += 61_000; // much later, a reconnect (maybe a restarted agent that forgot): offered again
    expect(f.handleMessage(wsConn(), msg({ instanceUid: uid(60), sequenceNum: 0, capabilities: caps, agentDescription: desc({}) })).connectionSettings?.opamp?.heartbeatIntervalSeconds).toBe(5);
  });
});

describe('Fleet: available components and config compatibility', () => {
  const CC = CAPS | C.ReportsAvailableComponents;
  const REPORT_AC = 0x2;
  const FULL_STATE = 0x1;
  const pipelineCfg = (exporter: string) => ({
    receivers: { otlp: { protocols: { http: {} } } },
    processors: { batch: {} },
    exporters: { [exporter]: {} },
    service: { pipelines: { logs: { receivers: ['otlp'], processors: ['batch'], exporters: [exporter] } } },
  });
  /** Like the collector's opamp extension: every kind, with the types it was built with. */
  const components = (kinds: Record<string, string[]>) =>
    Object.fromEntries(
      Object.entries(kinds).map(([kind, types]) => [
        kind,
        { subComponentMap: Object.fromEntries(types.map((t) => [t, { metadata: [{ key: 'code.namespace', value: { stringValue: `example.com/${t} v0.145.0` } }] }])) },
      ]),
    );
  const OURS = { receivers: ['otlp', 'nop'], processors: ['batch', 'attributes'], exporters: ['debug', 'file', 'nop'], extensions: ['opamp'], connectors: [] };
  const WITH_OTLPHTTP = { ...OURS, exporters: [...OURS.exporters, 'otlphttp'] };
  const H1 = Buffer.alloc(32, 1);
  const H2 = Buffer.alloc(32, 2);
  const flagsOf = (r: ServerToAgentProps) => Number(r.flags ?? 0);

  function fleetWith(exporter: string, opts: { now?: () => number; offerRetryMs?: number } = {}) {
    const f = new Fleet({ logger: pino({ level: 'silent' }), metrics: createMetrics({ defaultMetrics: false }), ...opts });
    f.setDesiredState(new DesiredState([collector('edge', { role: 'edge' }, pipelineCfg(exporter))]));
    return f;
  }

  it('asks an agent that sent only the hash for its components once, holds the config until they come, then pushes', () => {
    const f = fleetWith('debug');
    const conn = wsConn();
    const r0 = f.handleMessage(conn, msg({ instanceUid: uid(70), sequenceNum: 0, capabilities: CC, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {}, availableComponents: { hash: H1 } }));
    expect(flagsOf(r0)).toBe(REPORT_AC);
    expect(r0.remoteConfig).toBeUndefined();
    // Not asked again on every message for the same hash.
    const r1 = f.handleMessage(conn, msg({ instanceUid: uid(70), sequenceNum: 1, capabilities: CC }));
    expect(flagsOf(r1)).toBe(0);
    expect(r1.remoteConfig).toBeUndefined();
    const rec = f.get(uidToString(uid(70)))!;
    expect(f.view(rec).remoteConfig.missingComponents).toEqual([]);
    const r2 = f.handleMessage(conn, msg({ instanceUid: uid(70), sequenceNum: 2, capabilities: CC, availableComponents: { hash: H1, components: components(OURS) } }));
    expect(flagsOf(r2)).toBe(0);
    expect(r2.remoteConfig).toBeDefined();
    const v = f.view(rec);
    expect(v.availableComponents?.hash).toBe(H1.toString('hex'));
    expect(Object.keys(v.availableComponents!.components).sort()).toEqual(['connectors', 'exporters', 'extensions', 'processors', 'receivers']);
    expect(v.availableComponents!.components['exporters']!.components['debug']!.metadata).toEqual({ 'code.namespace': 'example.com/debug v0.145.0' });
    expect(v.remoteConfig.missingComponents).toEqual([]);
  });

  it('keeps the list when later messages carry only the same hash, and asks again when the hash changes', () => {
    const f = fleetWith('debug');
    const conn = wsConn();
    f.handleMessage(conn, msg({ instanceUid: uid(71), sequenceNum: 0, capabilities: CC, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {}, availableComponents: { hash: H1, components: components(OURS) } }));
    const rec = f.get(uidToString(uid(71)))!;
    expect(flagsOf(f.handleMessage(conn, msg({ instanceUid: uid(71), sequenceNum: 1, capabilities: CC, availableComponents: { hash: H1 } })))).toBe(0);
    expect(rec.components.available?.components['receivers']?.components['otlp']).toBeDefined();
    // A new binary: new hash, list not sent.
    expect(flagsOf(f.handleMessage(conn, msg({ instanceUid: uid(71), sequenceNum: 2, capabilities: CC, availableComponents: { hash: H2 } })))).toBe(REPORT_AC);
    expect(flagsOf(f.handleMessage(conn, msg({ instanceUid: uid(71), sequenceNum: 3, capabilities: CC })))).toBe(0);
    // On a new connection (the request may have been lost with the old one) it is asked again.
    expect(flagsOf(f.handleMessage(wsConn(), msg({ instanceUid: uid(71), sequenceNum: 4, capabilities: CC })))).toBe(REPORT_AC);
    f.handleMessage(conn, msg({ instanceUid: uid(71), sequenceNum: 5, capabilities: CC, availableComponents: { hash: H2, components: components(WITH_OTLPHTTP) } }));
    expect(rec.components.available?.hash).toBe(H2.toString('hex'));
    expect(rec.components.requested).toBeNull();
  });

  it('does not push a config naming types the agent lacks, reports it failed with MissingComponents, and pushes once the desired config fits', async () => {
    const { configFailure, configState } = await import('../../../src/fleet/fleet.js');
    const { aggregateCollectorStatus } = await import('../../../src/controller/collector-status.js');
    const f = fleetWith('otlphttp');
    const conn = wsConn();
    f.handleMessage(conn, msg({ instanceUid: uid(72), sequenceNum: 0, capabilities: CC, agentDescription: desc({ role: 'edge', 'host.name': 'edge-72' }), remoteConfigStatus: {}, availableComponents: { hash: H1 } }));
    const r = f.handleMessage(conn, msg({ instanceUid: uid(72), sequenceNum: 1, capabilities: CC, availableComponents: { hash: H1, components: components({ ...OURS, processors: ['attributes'] }) } }));
    expect(r.remoteConfig).toBeUndefined();
    const rec = f.get(uidToString(uid(72)))!;
    expect(configState(rec)).toBe('failed');
    expect(configFailure(rec)).toEqual({ reason: 'MissingComponents', message: 'the agent lacks exporters/otlphttp, processors/batch' });
    const v = f.view(rec);
    expect(v.remoteConfig.missingComponents).toEqual(['exporters/otlphttp', 'processors/batch']);
    expect(v.remoteConfig.desiredHash).not.toBeNull();
    expect(v.remoteConfig.inSync).toBe(false);
    const st = aggregateCollectorStatus(f.records()).get('default/edge')!;
    expect(st).toMatchObject({ matched: 1, failed: 1, applying: 0 });
    expect(st.failing).toEqual([{ instanceUid: rec.uid, name: 'edge-72', reason: 'MissingComponents', message: 'the agent lacks exporters/otlphttp, processors/batch' }]);
    // Heartbeats do not push it either.
    expect(f.handleMessage(conn, msg({ instanceUid: uid(72), sequenceNum: 2, capabilities: CC })).remoteConfig).toBeUndefined();
    // The desired config changes to types it has: pushed at once over the WebSocket.
    f.setDesiredState(new DesiredState([collector('edge', { role: 'edge' }, { ...pipelineCfg('debug'), processors: { attributes: { actions: [] } }, service: { pipelines: { logs: { receivers: ['otlp'], processors: ['attributes'], exporters: ['debug'] } } } })]));
    expect(conn.sent).toHaveLength(1);
    expect(conn.sent[0]!.remoteConfig).toBeDefined();
    expect(rec.components.missing).toEqual([]);
    expect(configState(rec)).toBe('applying');
  });

  it('pushes when the agent later reports components that include every type (a new build)', () => {
    const f = fleetWith('otlphttp');
    const conn = wsConn();
    f.handleMessage(conn, msg({ instanceUid: uid(73), sequenceNum: 0, capabilities: CC, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {}, availableComponents: { hash: H1, components: components(OURS) } }));
    expect(f.get(uidToString(uid(73)))!.components.missing).toEqual(['exporters/otlphttp']);
    // The agent restarts with another binary: hash only at first, then the list when asked.
    const c2 = wsConn();
    const a = f.handleMessage(c2, msg({ instanceUid: uid(73), sequenceNum: 0, capabilities: CC, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {}, availableComponents: { hash: H2 } }));
    // (sequence_num restarted at 0 on a known uid: full state is asked for too.)
    expect(flagsOf(a)).toBe(FULL_STATE | REPORT_AC);
    expect(a.remoteConfig).toBeUndefined();
    const b = f.handleMessage(c2, msg({ instanceUid: uid(73), sequenceNum: 1, capabilities: CC, remoteConfigStatus: {}, availableComponents: { hash: H2, components: components(WITH_OTLPHTTP) } }));
    expect(b.remoteConfig).toBeDefined();
    expect(f.view(f.get(uidToString(uid(73)))!).remoteConfig.missingComponents).toEqual([]);
  });

  it('gives agents that do not report components the config as before, without asking', () => {
    const f = fleetWith('otlphttp');
    const r = f.handleMessage(wsConn(), msg({ instanceUid: uid(74), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {} }));
    expect(flagsOf(r)).toBe(0);
    expect(r.remoteConfig).toBeDefined();
    expect(f.view(f.get(uidToString(uid(74)))!).remoteConfig.missingComponents).toEqual([]);
  });

  it('does not judge a report without any collector kind, and waits for an unanswered request only offerRetryMs', () => {
    let now = 1_000_000;
    const f = fleetWith('otlphttp', { now: () => now, offerRetryMs: 60_000 });
    const conn = wsConn();
    const r = f.handleMessage(conn, msg({ instanceUid: uid(75), sequenceNum: 0, capabilities: CC, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {}, availableComponents: { hash: H1, components: components({ plugins: ['x'] }) } }));
    expect(r.remoteConfig).toBeDefined();

    const conn2 = wsConn();
    expect(flagsOf(f.handleMessage(conn2, msg({ instanceUid: uid(76), sequenceNum: 0, capabilities: CC, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {}, availableComponents: { hash: H1 } })))).toBe(REPORT_AC);
    now += 30_000;
    const held = f.handleMessage(conn2, msg({ instanceUid: uid(76), sequenceNum: 1, capabilities: CC }));
    expect(held.remoteConfig).toBeUndefined();
    expect(flagsOf(held)).toBe(0);
    now += 31_000;
    // The agent never answered: asked again, and no longer held (treated like one that does not report).
    const late = f.handleMessage(conn2, msg({ instanceUid: uid(76), sequenceNum: 2, capabilities: CC }));
    expect(flagsOf(late)).toBe(REPORT_AC);
    expect(late.remoteConfig).toBeDefined();
  });

  it('asks an HTTP agent once per hash, not on every poll', () => {
    const f = fleetWith('debug');
    expect(flagsOf(f.handleMessage(httpConn(), msg({ instanceUid: uid(77), sequenceNum: 0, capabilities: CC, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {}, availableComponents: { hash: H1 } })))).toBe(REPORT_AC);
    expect(flagsOf(f.handleMessage(httpConn(), msg({ instanceUid: uid(77), sequenceNum: 1, capabilities: CC })))).toBe(0);
    const r = f.handleMessage(httpConn(), msg({ instanceUid: uid(77), sequenceNum: 2, capabilities: CC, availableComponents: { hash: H1, components: components(OURS) } }));
    expect(r.remoteConfig).toBeDefined();
  });

  it('asks for components with full state after a server restart, and does not push before both arrive', () => {
    const f = fleetWith('debug');
    const conn = wsConn();
    const r = f.handleMessage(conn, msg({ instanceUid: uid(78), sequenceNum: 17, capabilities: CC }));
    expect(flagsOf(r)).toBe(FULL_STATE | REPORT_AC);
    expect(r.remoteConfig).toBeUndefined();
    const full = f.handleMessage(conn, msg({ instanceUid: uid(78), sequenceNum: 18, capabilities: CC, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {}, availableComponents: { hash: H1, components: components(OURS) } }));
    expect(flagsOf(full)).toBe(0);
    expect(full.remoteConfig).toBeDefined();
  });

  it('keeps the FAILED rule: a failed hash is not re-pushed when the agent reports matching components', () => {
    const f = fleetWith('debug');
    const conn = wsConn();
    // Pushed to an agent that does not report components, then it fails...
    const r = f.handleMessage(conn, msg({ instanceUid: uid(79), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {} }));
    f.handleMessage(conn, msg({ instanceUid: uid(79), sequenceNum: 1, capabilities: CAPS, remoteConfigStatus: { lastRemoteConfigHash: r.remoteConfig!.configHash, status: RCS.FAILED, errorMessage: 'boom' } }));
    // ...and then reports components, all present.
    const again = f.handleMessage(conn, msg({ instanceUid: uid(79), sequenceNum: 2, capabilities: CC, availableComponents: { hash: H1, components: components(OURS) } }));
    expect(again.remoteConfig).toBeUndefined();
    expect(f.view(f.get(uidToString(uid(79)))!).remoteConfig.status).toBe('FAILED');
  });

  it('does not count an agent that runs the desired config as lacking components', async () => {
    const { configState } = await import('../../../src/fleet/fleet.js');
    const f = fleetWith('otlphttp');
    const conn = wsConn();
    const desired = f.handleMessage(conn, msg({ instanceUid: uid(80), sequenceNum: 0, capabilities: CAPS, agentDescription: desc({ role: 'edge' }), remoteConfigStatus: {} }));
    f.handleMessage(conn, msg({ instanceUid: uid(80), sequenceNum: 1, capabilities: CC, remoteConfigStatus: { lastRemoteConfigHash: desired.remoteConfig!.configHash, status: RCS.APPLIED }, availableComponents: { hash: H1, components: components(OURS) } }));
    const rec = f.get(uidToString(uid(80)))!;
    expect(rec.components.missing).toEqual([]);
    expect(configState(rec)).toBe('applied');
  });
});
