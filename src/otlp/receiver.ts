/**
 * The OTLP/HTTP metrics receiver of the admin endpoint (`POST /v1/metrics`): where agents offered
 * the bridge as their own_metrics destination send their own metrics. Bodies are protobuf
 * (application/x-protobuf) or OTLP/JSON (application/json), optionally gzip-compressed.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { BodyTooLargeError, gunzipBody, readBody } from '../lib/http-body.js';
import {
  decodeExportMetricsJson,
  decodeExportMetricsProtobuf,
  encodeExportMetricsResponse,
  extractReports,
  type AgentReport,
  type DroppedReason,
  type ExportRequestLike,
} from './metrics.js';

export const OTLP_METRICS_PATH = '/v1/metrics';
/** Largest body accepted, compressed or not (after gzip decompression too). */
export const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024;
/** How far a data point's time may be from the time it is received, ms (either way). */
export const DEFAULT_MAX_SKEW_MS = 5 * 60_000;

export interface SinkResult {
  matched: number;
  unknown: number;
  unidentified: number;
  /** Resources of a known agent whose credential the request does not carry: when > 0, nothing of the request was kept. */
  forbidden?: number;
}

/**
 * Where reports go: returns, per report, whether its agent is known (unknown ones are dropped).
 * `token` is the request's own-metrics credential (null without one): a sink that checks it keeps
 * nothing of a request that carries a resource of a known agent without that agent's credential.
 */
export interface OwnMetricsSink {
  accept(reports: AgentReport[], token: string | null): SinkResult;
}

export interface OtlpReceiverCounters {
  /** Requests by outcome: accepted, unauthenticated, forbidden, bad_request, too_large, unsupported_media_type, method_not_allowed. */
  request(outcome: string): void;
  /** Resources by result: matched, unknown (an instance id of no known agent), unidentified (no service.instance.id UUID), forbidden (another agent's). */
  resources(result: 'matched' | 'unknown' | 'unidentified' | 'forbidden', n: number): void;
  /** Data points of process metrics dropped, by reason. */
  points?(reason: DroppedReason, n: number): void;
}

export interface OtlpReceiverOptions {
  sink: OwnMetricsSink;
  /**
   * The request's own-metrics credential; when given, a request without one (null) is refused with
   * 401 before its body is read. Without this option nothing is asked (tests of decoding only).
   */
  credential?: (req: IncomingMessage) => string | null;
  maxBodyBytes?: number;
  /** How far a data point's time may be from now, ms; farther points are dropped and counted. Default 5 minutes. */
  maxSkewMs?: number;
  counters?: OtlpReceiverCounters;
  /** Debug: each request's resources (service.instance.id, whether matched) and metric names; warn (rate-limited): refused requests. */
  logger?: Logger;
  now?: () => number;
}

class HttpError extends Error {
  constructor(readonly status: number, readonly outcome: string, message: string) {
    super(message);
  }
}

/** A request handler for `POST /v1/metrics` (the caller routes that path here). */
export function otlpMetricsHandler(opts: OtlpReceiverOptions): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const max = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const now = opts.now ?? Date.now;
  const maxSkewMs = opts.maxSkewMs ?? DEFAULT_MAX_SKEW_MS;
  let lastWarn = 0;
  let notLogged = 0;
  /** Refusals of forged or credential-less figures: logged at most every 10 s (with how many were not). */
  const warnRefused = (req: IncomingMessage, outcome: string, reason: string) => {
    const t = now();
    if (t - lastWarn < 10_000) {
      notLogged++;
      return;
    }
    lastWarn = t;
    opts.logger?.warn({ outcome, reason, remoteAddress: req.socket.remoteAddress, notLogged }, 'Own metrics refused');
    notLogged = 0;
  };
  return async (req, res) => {
    try {
      if (req.method !== 'POST') throw new HttpError(405, 'method_not_allowed', 'only POST is supported');
      const token = opts.credential ? opts.credential(req) : null;
      if (opts.credential && token === null) {
        warnRefused(req, 'unauthenticated', 'no own-metrics credential');
        throw new HttpError(401, 'unauthenticated', "own metrics need the credential the bridge offered the agent (Authorization header of its own_metrics destination)");
      }
      const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      const json = type === 'application/json';
      if (!json && type !== 'application/x-protobuf') throw new HttpError(415, 'unsupported_media_type', 'Content-Type must be application/x-protobuf or application/json');
      const encoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
      if (encoding !== 'identity' && encoding !== 'gzip') throw new HttpError(415, 'unsupported_media_type', 'Content-Encoding must be gzip or none');
      // The whole body, or 413 as soon as it exceeds `max` bytes (Content-Length tells before reading).
      let body = await readBody(req, max, { tooLarge: (n) => new HttpError(413, 'too_large', `the body exceeds ${n} bytes`) });
      if (encoding === 'gzip') {
        try {
          body = await gunzipBody(body, max);
        } catch (err) {
          if (err instanceof BodyTooLargeError) throw new HttpError(413, 'too_large', `the decompressed body exceeds ${max} bytes`);
          throw new HttpError(400, 'bad_request', 'the body is not valid gzip');
        }
      }
      let decoded: ExportRequestLike;
      try {
        decoded = json ? decodeExportMetricsJson(body) : decodeExportMetricsProtobuf(body);
      } catch (err) {
        throw new HttpError(400, 'bad_request', `cannot decode an ExportMetricsServiceRequest: ${(err as Error).message}`);
      }
      const dropped = { negative: 0, not_finite: 0, out_of_time: 0 };
      const reports = extractReports(decoded, now(), { maxSkewMs, dropped });
      for (const [reason, n] of Object.entries(dropped) as [DroppedReason, number][]) if (n > 0) opts.counters?.points?.(reason, n);
      const result = opts.sink.accept(reports, token);
      if (result.forbidden) {
        opts.counters?.resources('forbidden', result.forbidden);
        warnRefused(req, 'forbidden', `figures for ${result.forbidden} agent(s) whose credential the request does not carry`);
        throw new HttpError(403, 'forbidden', "the request carries figures of an agent whose own-metrics credential it does not present; nothing was kept");
      }
      if (opts.logger?.isLevelEnabled('debug')) opts.logger.debug({ ...result, droppedPoints: dropped, serviceInstanceIds: reports.slice(0, 10).map((r) => r.serviceInstanceId), figures: reports.slice(0, 10).map((r) => r.figures), metricNames: metricNames(decoded), firstResource: firstResource(decoded) }, 'Received own metrics');
      opts.counters?.request('accepted');
      opts.counters?.resources('matched', result.matched);
      opts.counters?.resources('unknown', result.unknown);
      opts.counters?.resources('unidentified', result.unidentified);
      // Full success: data of unknown agents is dropped on purpose, not rejected (a retry would not help).
      if (json) {
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': 2 }).end('{}');
      } else {
        const out = encodeExportMetricsResponse();
        res.writeHead(200, { 'Content-Type': 'application/x-protobuf', 'Content-Length': out.byteLength }).end(out);
      }
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      opts.counters?.request(err.outcome);
      const s = JSON.stringify({ error: err.message });
      const headers: Record<string, string | number> = { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(s) };
      if (err.status === 405) headers['Allow'] = 'POST';
      if (err.status === 401) headers['WWW-Authenticate'] = 'Bearer realm="fleetbridge-own-metrics"';
      // A body left unread (too large, or never read) ends the connection rather than being drained.
      if (!req.complete) headers['Connection'] = 'close';
      res.writeHead(err.status, headers).end(s);
      if (!req.complete) res.once('finish', () => req.destroy());
    }
  };
}

/** Up to 100 distinct metric names of a request, and its resources' attribute keys (debug logs). */
function metricNames(req: ExportRequestLike): string[] {
  const names = new Set<string>();
  for (const rm of Array.isArray(req.resourceMetrics) ? req.resourceMetrics : []) {
    for (const sm of Array.isArray(rm?.scopeMetrics) ? rm.scopeMetrics : []) {
      for (const m of Array.isArray(sm?.metrics) ? sm.metrics : []) {
        if (typeof m?.name === 'string' && names.size < 100) names.add(m.name);
      }
    }
  }
  return [...names];
}

/** The first resource's attributes with string values (debug logs). */
function firstResource(req: ExportRequestLike): Record<string, string> {
  const out: Record<string, string> = {};
  const rm = Array.isArray(req.resourceMetrics) ? req.resourceMetrics[0] : undefined;
  for (const kv of Array.isArray(rm?.resource?.attributes) ? rm.resource.attributes.slice(0, 50) : []) {
    if (typeof kv?.key === 'string') out[kv.key] = typeof kv.value?.stringValue === 'string' ? kv.value.stringValue : '(not a string)';
  }
  return out;
}
