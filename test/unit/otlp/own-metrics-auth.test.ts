/**
 * Own metrics only from the agent itself: the credential minted per uid and holder, the sink's
 * verdicts (own figures kept; another agent's uid, a stranger, a taken-over uid refused whole),
 * the receiver's 401/403, and data points that are negative, not finite or out of time dropped
 * and counted.
 */
import { describe, expect, it } from 'vitest';
import { request } from 'node:http';
import { pino } from 'pino';
import { AdminServer } from '../../../src/api/server.js';
import { Fleet, holderOf } from '../../../src/fleet/fleet.js';
import type { AgentConnection } from '../../../src/opamp/connection.js';
import { AgentCapabilities as C, pb } from '../../../src/opamp/messages.js';
import { uidToString } from '../../../src/opamp/uid.js';
import { opentelemetry } from '../../../src/otlp/generated/otlp.js';
import { bridgeMetricsDestination, fleetSink, receiverCounters } from '../../../src/bridge/own-metrics.js';
import { OwnMetricsCredentials, ownMetricsToken } from '../../../src/otlp/credentials.js';
import { extractReports, type AgentReport } from '../../../src/otlp/metrics.js';
import { otlpMetricsHandler } from '../../../src/otlp/receiver.js';
import { createMetrics } from '../../../src/telemetry/metrics.js';

const Req = opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest;
const NOW = 1_764_000_000_000;
const nanos = (ms: number) => (BigInt(ms) * 1_000_000n).toString();

function request1(uid: string, points: { rss?: number; cpu?: number; at?: number }) {
  const at = nanos(points.at ?? NOW);
  return {
    resourceMetrics: [
      {
        resource: { attributes: [{ key: 'service.instance.id', value: { stringValue: uid } }] },
        scopeMetrics: [
          {
            metrics: [
              ...(points.rss !== undefined ? [{ name: 'otelcol_process_memory_rss', gauge: { dataPoints: [{ timeUnixNano: at, asInt: points.rss }] } }] : []),
              ...(points.cpu !== undefined ? [{ name: 'otelcol_process_cpu_seconds', sum: { dataPoints: [{ timeUnixNano: at, asDouble: points.cpu }] } }] : []),
            ],
          },
        ],
      },
    ],
  };
}

const uidBytes = (n: number) => {
  const b = new Uint8Array(16);
  b[0] = 1;
  b[6] = 0x70;
  b[15] = n;
  return b;
};

describe('own-metrics data points', () => {
  it('drops negative, non-finite and out-of-time points and counts them; good points are kept', () => {
    const dropped = { negative: 0, not_finite: 0, out_of_time: 0 };
    const check = { maxSkewMs: 5 * 60_000, dropped };
    const uid = uidToString(uidBytes(1));
    expect(extractReports(request1(uid, { rss: -5e15, cpu: 2 }), NOW, check)[0]!.figures).toEqual({ rssBytes: null, cpuSeconds: 2, at: NOW });
    const year2100 = Date.UTC(2100, 0, 1);
    expect(extractReports(request1(uid, { rss: 100, cpu: 1, at: year2100 }), NOW, check)[0]!.figures).toBeNull();
    expect(extractReports(request1(uid, { rss: 100, at: NOW - 6 * 60_000 }), NOW, check)[0]!.figures).toBeNull();
    expect(extractReports(request1(uid, { rss: 100, at: NOW + 4 * 60_000 }), NOW, check)[0]!.figures).toEqual({ rssBytes: 100, cpuSeconds: null, at: NOW + 4 * 60_000 });
    const json = { resourceMetrics: [{ resource: { attributes: [{ key: 'service.instance.id', value: { stringValue: uid } }] }, scopeMetrics: [{ metrics: [{ name: 'otelcol_process_cpu_seconds', sum: { dataPoints: [{ timeUnixNano: nanos(NOW), asDouble: 'Infinity' }] } }] }] }] };
    expect(extractReports(json as never, NOW, check)[0]!.figures).toBeNull();
    expect(dropped).toEqual({ negative: 1, not_finite: 1, out_of_time: 3 });
  });
});

describe('own-metrics credentials', () => {
  it('are bound to the uid and the identity holding it, compared in constant time', () => {
    const c = new OwnMetricsCredentials();
    const t = c.tokenFor('u1', 'bearer|abc');
    expect(c.matches(t, 'u1', 'bearer|abc')).toBe(true);
    expect(c.matches(t, 'u2', 'bearer|abc')).toBe(false);
    expect(c.matches(t, 'u1', 'bearer|other')).toBe(false);
    expect(c.matches(t, 'u1', null)).toBe(false);
    expect(c.matches(t.slice(0, -2), 'u1', 'bearer|abc')).toBe(false);
    expect(c.matches('Bearer x', 'u1', 'bearer|abc')).toBe(false);
    // Another process (another key) mints other credentials: a restart re-offers.
    expect(new OwnMetricsCredentials().matches(t, 'u1', 'bearer|abc')).toBe(false);
    expect(ownMetricsToken({ headers: { authorization: `Bearer ${t}` } } as never)).toBe(t);
    expect(ownMetricsToken({ headers: { authorization: 'Bearer the-opamp-token' } } as never)).toBeNull();
    expect(ownMetricsToken({ headers: {} } as never)).toBeNull();
  });

  it('the fleet offers each agent its own credential, and keeps figures only with it', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    const creds = new OwnMetricsCredentials();
    const admin = { port: 8080, tls: false };
    const f = new Fleet({ logger: pino({ level: 'silent' }), metrics, ownTelemetry: (conn) => { const d = bridgeMetricsDestination(undefined, conn, admin, creds); return d ? { metrics: d } : {}; } });
    const conns: AgentConnection[] = [1, 2].map((n) => ({ id: n, transport: 'http', endpoint: 'http://bridge.example:4320/v1/opamp', authorization: `Bearer token-${n}`, verified: { method: 'bearerToken', username: `bearer-token:k${n}` } }));
    const uids = [uidBytes(1), uidBytes(2)];
    const offered: string[] = [];
    for (const [i, u] of uids.entries()) {
      const r = f.handleMessage(conns[i]!, pb.AgentToServer.decode(pb.AgentToServer.encode({ instanceUid: u, sequenceNum: 0, capabilities: C.ReportsStatus | C.ReportsOwnMetrics, agentDescription: {} }).finish()));
      const h = r.connectionSettings?.ownMetrics?.headers?.headers ?? [];
      expect(h.map((x) => x.key)).toEqual(['Authorization']);
      offered.push(h[0]!.value!.replace(/^Bearer /, ''));
    }
    const [a, b] = uids.map(uidToString) as [string, string];
    expect(creds.matches(offered[0]!, a, holderOf(conns[0]!))).toBe(true);
    const sink = fleetSink(f, creds);
    const report = (uid: string, rss: number): AgentReport => ({ instanceUid: uid, serviceInstanceId: uid, figures: { rssBytes: rss, cpuSeconds: 1, at: NOW } });
    expect(sink.accept([report(a, 100)], offered[0]!)).toEqual({ matched: 1, unknown: 0, unidentified: 0, forbidden: 0 });
    // Agent 1's credential cannot carry agent 2's figures, even beside its own: nothing is kept.
    expect(sink.accept([report(a, 1), report(b, 999)], offered[0]!)).toMatchObject({ matched: 0, forbidden: 1 });
    expect(sink.accept([report(b, 999)], null)).toMatchObject({ matched: 0, forbidden: 1 });
    expect(sink.accept([report(b, 999)], creds.tokenFor(b, 'bearer|someone-else'))).toMatchObject({ matched: 0, forbidden: 1 });
    expect(f.viewOf(a)!.resources?.rssBytes).toBe(100);
    expect(f.viewOf(b)!.resources).toBeNull();
    expect(sink.accept([report(b, 300)], offered[1]!)).toMatchObject({ matched: 1, forbidden: 0 });
    expect(f.viewOf(b)!.resources?.rssBytes).toBe(300);
    // Unknown uids are dropped (not refused): the agent may have gone.
    expect(sink.accept([report(uidToString(uidBytes(9)), 1)], offered[0]!)).toMatchObject({ unknown: 1, forbidden: 0 });
  });

  it('POST /v1/metrics: 401 without a credential, 403 with another agent\'s, counted; 200 with its own', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    const creds = new OwnMetricsCredentials();
    const f = new Fleet({ logger: pino({ level: 'silent' }), metrics });
    const conn: AgentConnection = { id: 1, transport: 'http', endpoint: 'http://127.0.0.1:1/v1/opamp' };
    f.handleMessage(conn, pb.AgentToServer.decode(pb.AgentToServer.encode({ instanceUid: uidBytes(1), sequenceNum: 0, capabilities: C.ReportsStatus, agentDescription: {} }).finish()));
    const uid = uidToString(uidBytes(1));
    const server = new AdminServer({
      registry: metrics.registry,
      logger: pino({ level: 'silent' }),
      otlpMetrics: otlpMetricsHandler({ sink: fleetSink(f, creds), credential: ownMetricsToken, counters: receiverCounters(metrics), now: () => NOW }),
      source: { ready: () => true, agents: () => [], agent: () => undefined, collectors: () => ({ collectors: [], invalidFiles: [] }) },
    });
    const { port } = await server.listen(0);
    const post = (body: object, token?: string) =>
      new Promise<number>((resolve, reject) => {
        const buf = Buffer.from(Req.encode(body as never).finish());
        const req = request({ host: '127.0.0.1', port, path: '/v1/metrics', method: 'POST', headers: { 'Content-Type': 'application/x-protobuf', ...(token ? { Authorization: `Bearer ${token}` } : {}) } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode!));
        });
        req.on('error', reject);
        req.end(buf);
      });
    try {
      expect(await post(request1(uid, { rss: 5 }))).toBe(401);
      expect(await post(request1(uid, { rss: 5 }), creds.tokenFor(uidToString(uidBytes(2)), null))).toBe(403);
      expect(await post(request1(uid, { rss: -1, cpu: 3, at: NOW }), creds.tokenFor(uid, null))).toBe(200);
      expect(f.viewOf(uid)!.resources).toMatchObject({ rssBytes: null, cpuSeconds: 3 });
      const text = await metrics.registry.metrics();
      expect(text).toContain('fleetbridge_own_metrics_requests_total{outcome="unauthenticated"} 1');
      expect(text).toContain('fleetbridge_own_metrics_requests_total{outcome="forbidden"} 1');
      expect(text).toContain('fleetbridge_own_metrics_resources_total{result="forbidden"} 1');
      expect(text).toContain('fleetbridge_own_metrics_points_dropped_total{reason="negative"} 1');
    } finally {
      await server.close();
    }
  });
});
