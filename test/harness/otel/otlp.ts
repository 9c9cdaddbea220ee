/**
 * Small OTLP helpers for end-to-end tests: a free loopback port, one log record sent over
 * OTLP/HTTP JSON (to a TCP port or a Unix socket), and the file exporter's output read back.
 */
import { existsSync, readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';

/** A port that was free on 127.0.0.1 a moment ago (the kernel may hand it out again later: use it soon). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      const port = a && typeof a === 'object' ? a.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Where an OTLP/HTTP receiver listens: a TCP port on 127.0.0.1, or a Unix socket (a receiver with
 * `transport: unix`, e.g. several collectors on one host that were all pushed the same config with
 * a relative socket path, each in its own working directory).
 */
export type OtlpTarget = number | { socketPath: string };

/**
 * POSTs one log record (JSON OTLP) to /v1/logs of `target` (http://127.0.0.1:<port>, or the Unix
 * socket). Resolves with the HTTP status; rejects on a connection error or after timeoutMs (default 5 s).
 */
export async function sendOtlpLog(
  target: OtlpTarget,
  record: { body: string; attributes?: Record<string, string>; serviceName?: string },
  timeoutMs = 5000,
): Promise<number> {
  const kv = (o: Record<string, string>) => Object.entries(o).map(([key, v]) => ({ key, value: { stringValue: v } }));
  const now = `${BigInt(Date.now()) * 1_000_000n}`;
  const payload = {
    resourceLogs: [
      {
        resource: { attributes: kv({ 'service.name': record.serviceName ?? 'fleetbridge-e2e' }) },
        scopeLogs: [
          {
            scope: { name: 'fleetbridge.test' },
            logRecords: [
              {
                timeUnixNano: now,
                observedTimeUnixNano: now,
                severityNumber: 9,
                severityText: 'INFO',
                body: { stringValue: record.body },
                attributes: kv(record.attributes ?? {}),
              },
            ],
          },
        ],
      },
    ],
  };
  if (typeof target === 'number') {
    const res = await fetch(`http://127.0.0.1:${target}/v1/logs`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(payload),
      signal: AbortSignal.timeout(timeoutMs),
    });
    await res.arrayBuffer();
    return res.status;
  }
  return postOverUnixSocket(target.socketPath, '/v1/logs', JSON.stringify(payload), timeoutMs);
}

function postOverUnixSocket(socketPath: string, path: string, body: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { socketPath, path, method: 'POST', agent: false, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), Host: 'localhost' } },
      (res) => {
        res.resume();
        res.once('end', () => resolve(res.statusCode ?? 0));
        res.once('error', reject);
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`POST ${path} over ${socketPath}: no response within ${timeoutMs} ms`)));
    req.once('error', reject);
    req.end(body);
  });
}

export interface ExportedLogRecord {
  body: string;
  attributes: Record<string, unknown>;
  resource: Record<string, unknown>;
}

function anyValue(v: Record<string, unknown> | undefined): unknown {
  if (!v) return undefined;
  for (const k of ['stringValue', 'boolValue', 'intValue', 'doubleValue']) if (k in v) return v[k];
  return v;
}

function attrs(list: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (Array.isArray(list)) for (const a of list as { key: string; value?: Record<string, unknown> }[]) out[a.key] = anyValue(a.value);
  return out;
}

/**
 * Log records in a file exporter's output (`format: json`, the default: one ExportLogsServiceRequest
 * JSON object per line). Missing file → []. Lines that are not complete JSON (a write in progress) are skipped.
 */
export function readFileExporterLogs(path: string): ExportedLogRecord[] {
  if (!existsSync(path)) return [];
  const out: ExportedLogRecord[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    let doc: { resourceLogs?: { resource?: { attributes?: unknown }; scopeLogs?: { logRecords?: { body?: Record<string, unknown>; attributes?: unknown }[] }[] }[] };
    try {
      doc = JSON.parse(line);
    } catch {
      continue;
    }
    for (const rl of doc.resourceLogs ?? []) {
      const resource = attrs(rl.resource?.attributes);
      for (const sl of rl.scopeLogs ?? []) {
        for (const lr of sl.logRecords ?? []) out.push({ body: String(anyValue(lr.body) ?? ''), attributes: attrs(lr.attributes), resource });
      }
    }
  }
  return out;
}
