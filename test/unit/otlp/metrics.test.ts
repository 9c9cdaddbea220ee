import { describe, expect, it } from 'vitest';
import { request } from 'node:http';
import { gzipSync } from 'node:zlib';
import { pino } from 'pino';
import { AdminServer } from '../../../src/api/server.js';
import { Fleet } from '../../../src/fleet/fleet.js';
import { AgentCapabilities as C, pb } from '../../../src/opamp/messages.js';
import { uidToString } from '../../../src/opamp/uid.js';
import { opentelemetry } from '../../../src/otlp/generated/otlp.js';
import { bridgeMetricsDestination, bridgeMetricsUrl, fleetSink, receiverCounters } from '../../../src/bridge/own-metrics.js';
import { decodeExportMetricsProtobuf, extractReports, mergeFigures } from '../../../src/otlp/metrics.js';
import { otlpMetricsHandler, type OwnMetricsSink } from '../../../src/otlp/receiver.js';
import type { AgentReport } from '../../../src/otlp/metrics.js';
import { DesiredState } from '../../../src/render/index.js';
import { createMetrics } from '../../../src/telemetry/metrics.js';

const Req = opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest;
const UID = '019a1b2c-3d4e-7f00-8123-456789abcdef';
const T1 = 1_764_000_000_000; // ms
const nanos = (ms: number) => (BigInt(ms) * 1_000_000n).toString();

/** A request shaped like the collector's own telemetry (service scope, otelcol_process_* metrics). */
function collectorRequest(opts: { uid?: string | null; rss?: number; cpu?: number; at?: number; extra?: object[] } = {}) {
  const at = nanos(opts.at ?? T1);
  const attrs = [
    { key: 'service.name', value: { stringValue: 'otelcol-contrib' } },
    ...(opts.uid === null ? [] : [{ key: 'service.instance.id', value: { stringValue: opts.uid ?? UID } }]),
  ];
  return {
    resourceMetrics: [
      {
        resource: { attributes: attrs },
        scopeMetrics: [
          {
            scope: { name: 'go.opentelemetry.io/collector/service' },
            metrics: [
              { name: 'otelcol_process_uptime', unit: 's', sum: { dataPoints: [{ timeUnixNano: at, asDouble: 12.5 }], aggregationTemporality: 2, isMonotonic: true } },
              ...(opts.rss !== undefined ? [{ name: 'otelcol_process_memory_rss', unit: 'By', gauge: { dataPoints: [{ timeUnixNano: at, asInt: opts.rss }] } }] : []),
              ...(opts.cpu !== undefined ? [{ name: 'otelcol_process_cpu_seconds', unit: 's', sum: { dataPoints: [{ timeUnixNano: at, asDouble: opts.cpu }], aggregationTemporality: 2, isMonotonic: true } }] : []),
              ...(opts.extra ?? []),
            ],
          },
        ],
      },
    ],
  };
}
const encode = (r: object) => Buffer.from(Req.encode(r as never).finish());

describe('OTLP metrics decoding and process figures', () => {
  it('keeps the field numbers of opentelemetry-proto (hand-encoded bytes)', () => {
    const varint = (n: number) => { const out: number[] = []; while (n > 127) { out.push((n & 127) | 128); n >>>= 7; } out.push(n); return Buffer.from(out); };
    const len = (tag: number, ...parts: Buffer[]) => { const b = Buffer.concat(parts); return Buffer.concat([Buffer.from([tag]), varint(b.length), b]); };
    const str = (tag: number, s: string) => len(tag, Buffer.from(s));
    const fixed64 = (tag: number, v: bigint) => { const b = Buffer.alloc(9); b[0] = tag; b.writeBigUInt64LE(v, 1); return b; };
    // NumberDataPoint: time_unix_nano = 3 (fixed64), as_int = 6 (sfixed64)
    const point = Buffer.concat([fixed64(0x19, BigInt(nanos(T1))), fixed64(0x31, 123456789n)]);
    const metric = Buffer.concat([str(0x0a, 'otelcol_process_memory_rss'), len(0x2a, len(0x0a, point))]); // name = 1, gauge = 5 { data_points = 1 }
    const cpuPoint = Buffer.concat([fixed64(0x19, BigInt(nanos(T1))), Buffer.from([0x21]), Buffer.alloc(8)]); // as_double = 4
    cpuPoint.writeDoubleLE(1.5, 10);
    const cpuMetric = Buffer.concat([str(0x0a, 'otelcol_process_cpu_seconds'), len(0x3a, len(0x0a, cpuPoint))]); // sum = 7
    const kv = Buffer.concat([str(0x0a, 'service.instance.id'), len(0x12, str(0x0a, UID))]); // KeyValue{key=1, value=2{string_value=1}}
    const rm = Buffer.concat([len(0x0a, len(0x0a, kv)), len(0x12, len(0x12, metric), len(0x12, cpuMetric))]); // resource = 1, scope_metrics = 2 { metrics = 2 }
    const body = len(0x0a, rm); // resource_metrics = 1
    const reports = extractReports(decodeExportMetricsProtobuf(body), 0);
    expect(reports).toEqual([{ instanceUid: UID, serviceInstanceId: UID, figures: { rssBytes: 123456789, cpuSeconds: 1.5, at: T1 } }]);
  });

  it('reads what the collector sends, through protobuf and JSON alike', () => {
    const r = collectorRequest({ rss: 50_000_000, cpu: 0.75 });
    const fromPb = extractReports(decodeExportMetricsProtobuf(encode(r)), 0);
    expect(fromPb).toEqual([{ instanceUid: UID, serviceInstanceId: UID, figures: { rssBytes: 50_000_000, cpuSeconds: 0.75, at: T1 } }]);
    // OTLP/JSON: int64 as strings.
    const json = JSON.parse(JSON.stringify(r).replace('"asInt":50000000', '"asInt":"50000000"'));
    expect(extractReports(json, 0)).toEqual(fromPb);
  });

  it('adds up process.cpu.time points (one per cpu.mode) and reads semantic-convention names', () => {
    const at = nanos(T1);
    const r = collectorRequest({
      extra: [
        { name: 'process.cpu.time', sum: { dataPoints: [{ timeUnixNano: at, asDouble: 1, attributes: [{ key: 'cpu.mode', value: { stringValue: 'user' } }] }, { timeUnixNano: at, asDouble: 0.5, attributes: [{ key: 'cpu.mode', value: { stringValue: 'system' } }] }] } },
        { name: 'process.memory.usage', sum: { dataPoints: [{ timeUnixNano: at, asInt: 4096 }] } },
      ],
    });
    expect(extractReports(decodeExportMetricsProtobuf(encode(r)), 0)[0]!.figures).toEqual({ rssBytes: 4096, cpuSeconds: 1.5, at: T1 });
  });

  describe('resident memory under the names agents send', () => {
    const at = nanos(T1);
    const only = (metric: object) => {
      const r = collectorRequest({ extra: [metric] });
      return extractReports(decodeExportMetricsProtobuf(encode(r)), 0)[0]!.figures;
    };
    it('otelcol_process_memory_rss: the collector\'s own telemetry (gauge, bytes)', () => {
      expect(only({ name: 'otelcol_process_memory_rss', unit: 'By', gauge: { dataPoints: [{ timeUnixNano: at, asInt: 31_305_728 }] } })).toEqual({ rssBytes: 31_305_728, cpuSeconds: null, at: T1 });
    });
    it('process.memory.usage: the semantic conventions (UpDownCounter, bytes)', () => {
      expect(only({ name: 'process.memory.usage', unit: 'By', sum: { dataPoints: [{ timeUnixNano: at, asInt: 52_000_000 }], aggregationTemporality: 2, isMonotonic: false } })).toEqual({ rssBytes: 52_000_000, cpuSeconds: null, at: T1 });
    });
    it('process.memory.physical_usage: opamp-go\'s example agent and the earlier conventions (int gauge, bytes)', () => {
      expect(only({ name: 'process.memory.physical_usage', gauge: { dataPoints: [{ timeUnixNano: at, asInt: 24_117_248 }] } })).toEqual({ rssBytes: 24_117_248, cpuSeconds: null, at: T1 });
    });
    it('process.memory.rss', () => {
      expect(only({ name: 'process.memory.rss', unit: 'By', gauge: { dataPoints: [{ timeUnixNano: at, asDouble: 1_048_576 }] } })).toEqual({ rssBytes: 1_048_576, cpuSeconds: null, at: T1 });
    });
    it('not virtual memory, nor a runtime\'s heap', () => {
      for (const name of ['process.memory.virtual', 'process.memory.virtual_usage', 'process.runtime.go.mem.heap_alloc', 'otelcol_process_runtime_heap_alloc_bytes', 'otelcol_process_runtime_total_sys_memory_bytes']) {
        expect(only({ name, gauge: { dataPoints: [{ timeUnixNano: at, asInt: 9_999_999 }] } }), name).toBeNull();
      }
    });
  });

  it('process.cpu.time: user and system time are added up, waiting is not (cpu.mode, or the earlier state attribute)', () => {
    const at = nanos(T1);
    const point = (key: string, mode: string, v: number) => ({ timeUnixNano: at, asDouble: v, attributes: [{ key, value: { stringValue: mode } }] });
    // opamp-go's example agent: state = user, system, wait.
    const earlier = collectorRequest({ extra: [{ name: 'process.cpu.time', sum: { dataPoints: [point('state', 'user', 0.5), point('state', 'system', 0.25), point('state', 'wait', 0.75)], isMonotonic: true } }] });
    expect(extractReports(decodeExportMetricsProtobuf(encode(earlier)), 0)[0]!.figures).toEqual({ rssBytes: null, cpuSeconds: 0.75, at: T1 });
    const current = collectorRequest({ extra: [{ name: 'process.cpu.time', sum: { dataPoints: [point('cpu.mode', 'user', 2), point('cpu.mode', 'system', 1), point('cpu.mode', 'iowait', 4)], isMonotonic: true } }] });
    expect(extractReports(decodeExportMetricsProtobuf(encode(current)), 0)[0]!.figures).toEqual({ rssBytes: null, cpuSeconds: 3, at: T1 });
    // No mode: the point is the total.
    const total = collectorRequest({ extra: [{ name: 'process.cpu.time', sum: { dataPoints: [{ timeUnixNano: at, asDouble: 1.25 }], isMonotonic: true } }] });
    expect(extractReports(decodeExportMetricsProtobuf(encode(total)), 0)[0]!.figures).toEqual({ rssBytes: null, cpuSeconds: 1.25, at: T1 });
  });

  it('reports resources without a UUID service.instance.id as unidentified, and without process metrics as figure-less', () => {
    expect(extractReports(collectorRequest({ uid: null, rss: 1 }), 0)[0]).toMatchObject({ instanceUid: null, serviceInstanceId: null });
    expect(extractReports(collectorRequest({ uid: 'not-a-uuid', rss: 1 }), 0)[0]).toMatchObject({ instanceUid: null, serviceInstanceId: 'not-a-uuid' });
    // 32 hex digits and upper case are the same uid, canonicalised.
    expect(extractReports(collectorRequest({ uid: UID.replace(/-/g, '').toUpperCase(), rss: 1 }), 0)[0]!.instanceUid).toBe(UID);
    expect(extractReports(collectorRequest({}), 0)[0]!.figures).toBeNull();
    expect(extractReports({ resourceMetrics: [null, 5, { scopeMetrics: 'x' }] } as never, 0)).toEqual([{ instanceUid: null, serviceInstanceId: null, figures: null }]);
  });

  it('merges figures: newer wins, a missing figure keeps the older one', () => {
    expect(mergeFigures({ rssBytes: 1, cpuSeconds: 2, at: 10 }, { rssBytes: 3, cpuSeconds: null, at: 20 })).toEqual({ rssBytes: 3, cpuSeconds: 2, at: 20 });
    expect(mergeFigures({ rssBytes: 1, cpuSeconds: 2, at: 30 }, { rssBytes: 3, cpuSeconds: 4, at: 20 })).toEqual({ rssBytes: 1, cpuSeconds: 2, at: 30 });
  });

  it('derives the bridge URL from the OpAMP URL the agent used', () => {
    expect(bridgeMetricsUrl('ws://fleetbridge.obs.svc:4320/v1/opamp', 8080, false)).toBe('http://fleetbridge.obs.svc:8080/v1/metrics');
    expect(bridgeMetricsUrl('wss://[::1]:4320/v1/opamp', 9443, true)).toBe('https://[::1]:9443/v1/metrics');
    expect(bridgeMetricsUrl('nonsense', 1, false)).toBeNull();
    const conn = { endpoint: 'http://10.0.0.5:4320/v1/opamp' };
    expect(bridgeMetricsDestination(undefined, conn, { port: 8080, tls: false })).toEqual({ endpoint: 'http://10.0.0.5:8080/v1/metrics', headers: {} });
    expect(bridgeMetricsDestination({ bridgeReceivesMetrics: false }, conn, { port: 8080, tls: false })).toBeNull();
    expect(bridgeMetricsDestination({ metrics: { endpoint: 'https://x/v1/metrics' }, bridgeReceivesMetrics: true }, conn, { port: 8080, tls: false })).toBeNull();
    expect(bridgeMetricsDestination(undefined, conn, null)).toBeNull();
  });
});

describe('Fleet: process figures per agent', () => {
  it('stores figures on known agents, shows them, offers the bridge by default, and exports per-Collector gauges', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    const admin = { port: 8080, tls: false };
    const f = new Fleet({ logger: pino({ level: 'silent' }), metrics, ownTelemetry: (conn) => { const d = bridgeMetricsDestination(undefined, conn, admin); return d ? { metrics: d } : {}; } });
    f.setDesiredState(new DesiredState([{ namespace: 'default', name: 'edge', generation: 1, revision: 'r', priority: 0, selector: { matchLabels: { role: 'edge' } }, config: { exporters: { debug: {} } } }]));
    const uids = [1, 2].map((n) => { const b = new Uint8Array(16); b[0] = 1; b[15] = n; return b; });
    for (const [i, u] of uids.entries()) {
      const r = f.handleMessage(
        { id: 100 + i, transport: 'http', endpoint: 'http://bridge.example:4320/v1/opamp' },
        pb.AgentToServer.decode(pb.AgentToServer.encode({ instanceUid: u, sequenceNum: 0, capabilities: C.ReportsStatus | C.ReportsOwnMetrics, agentDescription: { nonIdentifyingAttributes: [{ key: 'role', value: { stringValue: 'edge' } }] } }).finish()),
      );
      expect(r.connectionSettings?.ownMetrics).toEqual({ destinationEndpoint: 'http://bridge.example:8080/v1/metrics', headers: { headers: [] } });
    }
    const [a, b] = uids.map((u) => uidToString(u)) as [string, string];
    const sink = fleetSink(f);
    const report = (instanceUid: string | null, rss: number, cpu: number): AgentReport => ({ instanceUid, serviceInstanceId: instanceUid, figures: { rssBytes: rss, cpuSeconds: cpu, at: T1 } });
    expect(sink.accept([report(a, 100, 1), report(b, 300, 2), report(UID, 5, 5), report(null, 5, 5)], null)).toEqual({ matched: 2, unknown: 1, unidentified: 1, forbidden: 0 });
    expect(f.viewOf(a)!.resources).toEqual({ rssBytes: 100, cpuSeconds: 1, at: new Date(T1).toISOString() });
    expect(f.viewOf(uidToString(new Uint8Array(16).fill(9)))).toBeUndefined();
    f.updateGauges();
    const text = await metrics.registry.metrics();
    expect(text).toContain('fleetbridge_collector_agents_rss_bytes{namespace="default",collector="edge",stat="sum"} 400');
    expect(text).toContain('fleetbridge_collector_agents_rss_bytes{namespace="default",collector="edge",stat="max"} 300');
    expect(text).toContain('fleetbridge_collector_agents_cpu_seconds{namespace="default",collector="edge",stat="sum"} 3');
    expect(text).toContain('fleetbridge_collector_agents_cpu_seconds{namespace="default",collector="edge",stat="max"} 2');
  });
});

describe('POST /v1/metrics on the admin endpoint', () => {
  async function start(maxBodyBytes = 4096) {
    const got: AgentReport[][] = [];
    const sink: OwnMetricsSink = { accept: (r) => { got.push(r); return { matched: r.length, unknown: 0, unidentified: 0 }; } };
    const metrics = createMetrics({ defaultMetrics: false });
    const server = new AdminServer({
      registry: metrics.registry,
      logger: pino({ level: 'silent' }),
      otlpMetrics: otlpMetricsHandler({ sink, maxBodyBytes, counters: receiverCounters(metrics), now: () => T1 }),
      source: { ready: () => true, agents: () => [], agent: () => undefined, collectors: () => ({ collectors: [], invalidFiles: [] }) },
    });
    const { port } = await server.listen(0);
    const send = (body: Buffer | string, headers: Record<string, string>, method = 'POST', path = '/v1/metrics') =>
      new Promise<{ status: number; body: Buffer; headers: Record<string, unknown> }>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path, method, headers }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks), headers: res.headers }));
        });
        req.on('error', reject);
        req.end(body);
      });
    return { server, send, got, metrics };
  }

  it('accepts protobuf (plain and gzip) and JSON, and answers with an ExportMetricsServiceResponse', async () => {
    const s = await start();
    try {
      const body = encode(collectorRequest({ rss: 7, cpu: 1 }));
      const r1 = await s.send(body, { 'Content-Type': 'application/x-protobuf' });
      expect(r1.status).toBe(200);
      expect(r1.headers['content-type']).toBe('application/x-protobuf');
      expect(opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceResponse.decode(r1.body).partialSuccess).toBeFalsy();
      expect((await s.send(gzipSync(body), { 'Content-Type': 'application/x-protobuf', 'Content-Encoding': 'gzip' })).status).toBe(200);
      const rj = await s.send(JSON.stringify(collectorRequest({ rss: 8 })), { 'Content-Type': 'application/json' });
      expect([rj.status, rj.body.toString()]).toEqual([200, '{}']);
      expect(s.got.map((r) => r[0]!.figures?.rssBytes)).toEqual([7, 7, 8]);
      expect(await s.metrics.registry.metrics()).toContain('fleetbridge_own_metrics_requests_total{outcome="accepted"} 3');
    } finally {
      await s.server.close();
    }
  });

  it('answers 400 to garbage, 413 to a body over the limit (declared, streamed or decompressed), 415 and 405, and keeps serving', async () => {
    const s = await start(4096);
    try {
      expect((await s.send(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]), { 'Content-Type': 'application/x-protobuf' })).status).toBe(400);
      expect((await s.send('{not json', { 'Content-Type': 'application/json' })).status).toBe(400);
      expect((await s.send('[1]', { 'Content-Type': 'application/json' })).status).toBe(400);
      expect((await s.send(Buffer.from('not gzip'), { 'Content-Type': 'application/x-protobuf', 'Content-Encoding': 'gzip' })).status).toBe(400);
      expect((await s.send(Buffer.alloc(5000), { 'Content-Type': 'application/x-protobuf' })).status).toBe(413);
      expect((await s.send(Buffer.alloc(5000), { 'Content-Type': 'application/x-protobuf', 'Transfer-Encoding': 'chunked' })).status).toBe(413);
      expect((await s.send(gzipSync(Buffer.alloc(100_000)), { 'Content-Type': 'application/x-protobuf', 'Content-Encoding': 'gzip' })).status).toBe(413);
      expect((await s.send('x', { 'Content-Type': 'text/plain' })).status).toBe(415);
      expect((await s.send('x', { 'Content-Type': 'application/x-protobuf', 'Content-Encoding': 'br' })).status).toBe(415);
      expect((await s.send('', {}, 'GET')).status).toBe(405);
      expect(s.got).toEqual([]);
      expect((await s.send('', {}, 'GET', '/healthz')).status).toBe(200);
      expect((await s.send(encode(collectorRequest({ rss: 1 })), { 'Content-Type': 'application/x-protobuf' })).status).toBe(200);
      const text = await s.metrics.registry.metrics();
      expect(text).toContain('fleetbridge_own_metrics_requests_total{outcome="bad_request"} 4');
      expect(text).toContain('fleetbridge_own_metrics_requests_total{outcome="too_large"} 3');
    } finally {
      await s.server.close();
    }
  });
});
