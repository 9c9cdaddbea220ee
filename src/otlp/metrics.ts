/**
 * Agents' own metrics (OTLP, ExportMetricsServiceRequest): decoding, and the process figures
 * Fleetbridge keeps per agent (resident memory and CPU time).
 *
 * What a collector run by the OpAMP Supervisor (v0.149) sends when offered `own_metrics`: its
 * telemetry resource carries the attributes of its AgentDescription (the Supervisor writes them
 * into `service.telemetry.resource`), so `service.instance.id` is the Supervisor's `instance_id`:
 * the agent's OpAMP instance_uid in canonical UUID text. Among the metrics (scope
 * `go.opentelemetry.io/collector/service`) are `otelcol_process_memory_rss` (bytes, gauge) and
 * `otelcol_process_cpu_seconds` (seconds, cumulative sum).
 *
 * Other agents use the OS-process names of the semantic conventions, under their current or
 * earlier spellings (the process.* conventions are not stable yet):
 *  - resident memory: `process.memory.usage` ("the amount of physical memory in use"),
 *    `process.memory.physical_usage` (its earlier name, which opamp-go's example agent,
 *    internal/examples/agent, still sends: RSS as an int gauge), and `process.memory.rss`.
 *    Never `process.memory.virtual`/`virtual_usage` (committed virtual memory) nor
 *    `process.runtime.*` (a runtime's heap figures, not the process's).
 *  - CPU: `process.cpu.time`, one point per mode (attribute `cpu.mode`, earlier `state`: user,
 *    system, and in the earlier conventions `wait`). User and system time are added up; waiting is
 *    not CPU time used. Points without a mode are the total.
 */
import { opentelemetry } from './generated/otlp.js';
import { parseUid, uidToString } from '../opamp/uid.js';

const v1 = opentelemetry.proto.collector.metrics.v1;

/** The figures kept for one agent; a figure the agent did not report is null. */
export interface ProcessFigures {
  /** Resident set size, bytes. */
  rssBytes: number | null;
  /** CPU time used since the process started (user + system), seconds. */
  cpuSeconds: number | null;
  /** When the newest of these was measured (the data point's time), ms since the epoch. */
  at: number;
}

/** What one resource of a request says about one agent. */
export interface AgentReport {
  /** service.instance.id in canonical UUID text, or null when absent or not a UUID. */
  instanceUid: string | null;
  /** service.instance.id as sent (for logs), or null. */
  serviceInstanceId: string | null;
  /** Null when the resource had none of the process metrics. */
  figures: ProcessFigures | null;
}

export const RSS_METRICS: readonly string[] = ['otelcol_process_memory_rss', 'process.memory.usage', 'process.memory.physical_usage', 'process.memory.rss'];
export const CPU_METRICS: readonly string[] = ['otelcol_process_cpu_seconds', 'process.cpu.time'];
/** Data points read per metric: the process metrics have one (or one per cpu.mode); more are ignored. */
export const MAX_POINTS_PER_METRIC = 16;

/** The shapes read here: protobuf.js-decoded messages and OTLP/JSON alike (int64 as Long, number or string). */
type Int64 = number | string | { toString(): string } | null | undefined;
interface AnyValueLike { stringValue?: string | null; intValue?: Int64; doubleValue?: number | null; boolValue?: boolean | null }
export interface KeyValueLike { key?: string | null; value?: AnyValueLike | null }
interface PointLike { timeUnixNano?: Int64; asDouble?: number | string | null; asInt?: Int64; attributes?: KeyValueLike[] | null }
interface MetricLike { name?: string | null; gauge?: { dataPoints?: PointLike[] | null } | null; sum?: { dataPoints?: PointLike[] | null } | null }
export interface ExportRequestLike {
  resourceMetrics?: Array<{
    resource?: { attributes?: KeyValueLike[] | null } | null;
    scopeMetrics?: Array<{ metrics?: MetricLike[] | null } | null> | null;
  } | null> | null;
}

/** Decodes an OTLP/HTTP protobuf body; throws on malformed bytes. */
export function decodeExportMetricsProtobuf(body: Uint8Array): ExportRequestLike {
  return v1.ExportMetricsServiceRequest.decode(body) as unknown as ExportRequestLike;
}

/** Parses an OTLP/HTTP JSON body; throws when it is not JSON or not shaped like a request. */
export function decodeExportMetricsJson(body: Uint8Array): ExportRequestLike {
  const v: unknown = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'));
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('an OTLP/JSON request is a JSON object');
  const rm = (v as { resourceMetrics?: unknown }).resourceMetrics;
  if (rm !== undefined && rm !== null && !Array.isArray(rm)) throw new Error('resourceMetrics must be an array');
  return v as ExportRequestLike;
}

/** The (empty) ExportMetricsServiceResponse, protobuf-encoded: full success. */
export function encodeExportMetricsResponse(): Uint8Array {
  return v1.ExportMetricsServiceResponse.encode({}).finish();
}

/** Why a data point of a process metric was not used. */
export type DroppedReason = 'negative' | 'not_finite' | 'out_of_time';

/**
 * What a process-metric data point must be to be used: its value finite and not negative (always),
 * and, with `maxSkewMs`, its time within that of the time received (a point in 2100 would otherwise
 * stay the newest forever). Dropped points are counted in `dropped`.
 */
export interface PointCheck {
  maxSkewMs?: number;
  dropped?: Record<DroppedReason, number>;
}

/**
 * One report per resource of the request, in order; resources naming the same agent are merged
 * (newer data points win). Never throws on odd shapes (JSON may be anything): what is not
 * understood is skipped.
 */
export function extractReports(req: ExportRequestLike, receivedAt: number, check: PointCheck = {}): AgentReport[] {
  const byId = new Map<string, AgentReport>();
  const out: AgentReport[] = [];
  for (const rm of arr(req.resourceMetrics)) {
    if (!rm || typeof rm !== 'object') continue;
    const raw = stringAttr(arr(rm.resource?.attributes), 'service.instance.id');
    const bytes = raw === null ? null : parseUid(raw);
    const instanceUid = bytes ? uidToString(bytes) : null;
    const figures = processFigures(arr(rm.scopeMetrics).flatMap((sm) => (sm && typeof sm === 'object' ? arr(sm.metrics) : [])), receivedAt, check);
    const key = instanceUid ?? `raw:${raw ?? ''}`;
    const prev = byId.get(key);
    if (prev) {
      prev.figures = mergeFigures(prev.figures, figures);
      continue;
    }
    const r: AgentReport = { instanceUid, serviceInstanceId: raw, figures };
    byId.set(key, r);
    out.push(r);
  }
  return out;
}

/** The newer figures over the older ones, keeping what only the older one has. */
export function mergeFigures(older: ProcessFigures | null, newer: ProcessFigures | null): ProcessFigures | null {
  if (!older) return newer;
  if (!newer) return older;
  if (newer.at < older.at) return mergeFigures(newer, older);
  return { rssBytes: newer.rssBytes ?? older.rssBytes, cpuSeconds: newer.cpuSeconds ?? older.cpuSeconds, at: newer.at };
}

function processFigures(metrics: MetricLike[], receivedAt: number, check: PointCheck): ProcessFigures | null {
  const drop = (reason: DroppedReason) => {
    if (check.dropped) check.dropped[reason]++;
  };
  let rss: { v: number; t: number } | null = null;
  let cpu: { v: number; t: number } | null = null;
  for (const m of metrics) {
    if (!m || typeof m !== 'object' || typeof m.name !== 'string') continue;
    const isRss = RSS_METRICS.includes(m.name);
    const isCpu = CPU_METRICS.includes(m.name);
    if (!isRss && !isCpu) continue;
    const points = arr(m.gauge?.dataPoints ?? m.sum?.dataPoints).slice(0, MAX_POINTS_PER_METRIC);
    // Points of one metric at its newest time are added up (process.cpu.time has one per cpu.mode).
    let t = -1;
    let total = 0;
    let n = 0;
    for (const p of points) {
      if (!p || typeof p !== 'object') continue;
      if (isCpu && !countsAsCpuUsed(p)) continue;
      const v = pointValue(p);
      if (v === null) continue;
      if (!Number.isFinite(v)) {
        drop('not_finite');
        continue;
      }
      if (v < 0) {
        drop('negative');
        continue;
      }
      const pt = nanosToMs(p.timeUnixNano) ?? receivedAt;
      if (check.maxSkewMs !== undefined && Math.abs(pt - receivedAt) > check.maxSkewMs) {
        drop('out_of_time');
        continue;
      }
      if (pt > t) {
        t = pt;
        total = 0;
        n = 0;
      }
      if (pt === t) {
        total += v;
        n++;
      }
    }
    if (n === 0) continue;
    const cur = isRss ? rss : cpu;
    // Two names for one figure (a collector reporting both): the first seen at the newest time wins.
    if (cur && cur.t >= t) continue;
    if (isRss) rss = { v: total, t };
    else cpu = { v: total, t };
  }
  if (!rss && !cpu) return null;
  return { rssBytes: rss?.v ?? null, cpuSeconds: cpu?.v ?? null, at: Math.max(rss?.t ?? -1, cpu?.t ?? -1) };
}

/** CPU modes that are time the process used; a point without a mode is the total. */
const CPU_USED_MODES = new Set(['user', 'system']);

function countsAsCpuUsed(p: PointLike): boolean {
  const kvs = arr(p.attributes);
  const mode = stringAttr(kvs, 'cpu.mode') ?? stringAttr(kvs, 'state') ?? stringAttr(kvs, 'process.cpu.state');
  return mode === null || CPU_USED_MODES.has(mode);
}

/** The point's number (NaN or ±Infinity included: the caller drops and counts those), or null when it has none. */
function pointValue(p: PointLike): number | null {
  if (p.asDouble != null) return typeof p.asDouble === 'number' ? p.asDouble : Number(p.asDouble);
  if (p.asInt != null) return Number(typeof p.asInt === 'number' ? p.asInt : p.asInt.toString());
  return null;
}

/** fixed64 nanoseconds (Long, number or decimal string) to ms; null for 0 or unreadable. */
function nanosToMs(v: Int64): number | null {
  if (v == null) return null;
  const s = typeof v === 'number' ? (Number.isSafeInteger(v) ? String(v) : null) : v.toString();
  if (s === null || !/^\d+$/.test(s)) return null;
  const ms = Number(BigInt(s) / 1_000_000n);
  return ms > 0 ? ms : null;
}

function stringAttr(kvs: readonly KeyValueLike[], key: string): string | null {
  for (const kv of kvs) {
    if (kv && typeof kv === 'object' && kv.key === key) {
      const s = kv.value?.stringValue;
      return typeof s === 'string' && s.length > 0 ? s : null;
    }
  }
  return null;
}

function arr<T>(v: readonly T[] | null | undefined): readonly T[] {
  return Array.isArray(v) ? v : [];
}
