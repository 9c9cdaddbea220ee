/**
 * The admin HTTP server: probes, Prometheus metrics, the read-only JSON API (docs/api.md) and the
 * OTLP/HTTP receiver of agents' own metrics.
 */
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { secureContextOptions, type TlsMaterial } from '../opamp/tls.js';
import { DenialRecorder, OPEN_ACCESS, type AdminAccess, type AdminResource } from './access.js';
import type { AgentView, CollectorView } from '../fleet/view-types.js';

export interface AdminApiSource {
  ready(): boolean;
  agents(): AgentView[];
  agent(uid: string): AgentView | undefined;
  collectors(): { collectors: CollectorView[]; invalidFiles: { path: string; issues: string[] }[] };
  /** Refresh derived gauges before a scrape. */
  beforeScrape?(): void;
}

export class AdminServer {
  readonly #http: Server | HttpsServer;
  readonly #access: AdminAccess;
  readonly #denials: DenialRecorder;

  /**
   * With `tls` it serves HTTPS, and `setTls` swaps the certificate live; with a client CA in it,
   * clients are asked for a certificate, verified against it without failing the handshake (the
   * verdict is `access`'s). With `otlpMetrics`, `/v1/metrics` is an OTLP/HTTP metrics receiver
   * (POST; src/otlp/receiver.ts) where agents send their own metrics with their own credential.
   * `access` decides `/api/*` and (unless `metricsAuth` is false) `/metrics`; `/healthz` and
   * `/readyz` are always open. Default: open (the caller then listens on loopback only).
   */
  constructor(
    private readonly opts: {
      source: AdminApiSource;
      registry: Registry;
      logger: Logger;
      tls?: TlsMaterial;
      otlpMetrics?: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
      access?: AdminAccess;
      metricsAuth?: boolean;
      /** A connection must send its request head within this (default 10 s) and the whole request within requestTimeoutMs (default 30 s); else 408. */
      headersTimeoutMs?: number;
      requestTimeoutMs?: number;
    },
  ) {
    this.#access = opts.access ?? OPEN_ACCESS;
    this.#denials = new DenialRecorder(opts.logger, opts.registry);
    const onRequest: RequestListener = (req, res) => {
      this.#route(req, res).catch((err: unknown) => {
        opts.logger.error({ err, url: req.url }, 'Admin API request failed');
        if (!res.headersSent) json(res, 500, { error: 'internal error' });
      });
    };
    this.#http = opts.tls
      ? createHttpsServer({ ...adminTls(opts.tls), ...(opts.tls.clientCa ? { requestCert: true, rejectUnauthorized: false } : {}), connectionsCheckingInterval: 1000 }, onRequest)
      : createServer({ connectionsCheckingInterval: 1000 }, onRequest);
    // A slow or silent client cannot hold a connection for long (Node's defaults: 60 s and 300 s).
    this.#http.headersTimeout = opts.headersTimeoutMs ?? 10_000;
    this.#http.requestTimeout = opts.requestTimeoutMs ?? 30_000;
    this.#http.keepAliveTimeout = 5_000;
    this.#http.maxHeadersCount = 100;
  }

  /** Replaces the certificate and key for new connections. Throws, keeping the current ones, when they are unusable or the server was started without TLS. */
  setTls(m: TlsMaterial): void {
    if (!('setSecureContext' in this.#http)) throw new Error('the admin server was started without TLS; switching between plain and TLS needs a restart');
    this.#http.setSecureContext(adminTls(m));
  }

  listen(port: number, host = '127.0.0.1'): Promise<{ port: number; host: string }> {
    return new Promise((resolve, reject) => {
      this.#http.once('error', reject);
      this.#http.listen(port, host, () => {
        this.#http.off('error', reject);
        const a = this.#http.address();
        if (a && typeof a === 'object') resolve({ port: a.port, host: a.address });
        else reject(new Error('no address'));
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#http.close(() => resolve());
      this.#http.closeAllConnections();
    });
  }

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    if (path === '/v1/metrics' && this.opts.otlpMetrics) return this.opts.otlpMetrics(req, res);
    const src = this.opts.source;
    if ((path === '/healthz' || path === '/readyz') && (req.method === 'GET' || req.method === 'HEAD')) {
      if (path === '/healthz') return text(res, 200, 'ok\n');
      return src.ready() ? text(res, 200, 'ok\n') : text(res, 503, 'not ready\n');
    }
    // Everything else is checked before anything about it is said (a 404 or 405 included).
    const resource: AdminResource = path === '/metrics' ? 'metrics' : 'api';
    if (resource === 'api' || this.opts.metricsAuth !== false) {
      const v = await this.#access.check(req, resource, path);
      if (!v.ok) {
        this.#denials.record(req, resource, v.status, v.reason);
        const headers: Record<string, string> = v.status === 401 ? { 'WWW-Authenticate': 'Bearer realm="fleetbridge"' } : {};
        return json(res, v.status, { error: v.reason }, headers);
      }
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { error: 'only GET is supported' });
    if (path === '/metrics') {
      src.beforeScrape?.();
      const body = await this.opts.registry.metrics();
      res.writeHead(200, { 'Content-Type': this.opts.registry.contentType }).end(body);
      return;
    }
    if (path === '/api/v1/agents') return json(res, 200, { agents: src.agents() });
    if (path.startsWith('/api/v1/agents/')) {
      let uid: string;
      try {
        uid = decodeURIComponent(path.slice('/api/v1/agents/'.length));
      } catch {
        return json(res, 400, { error: 'the instance uid in the path is not valid percent-encoding' });
      }
      const a = src.agent(uid);
      return a ? json(res, 200, a) : json(res, 404, { error: `no agent with instanceUid ${uid}` });
    }
    if (path === '/api/v1/collectors') return json(res, 200, src.collectors());
    return json(res, 404, { error: `no route for ${path}` });
  }
}

/** The serving certificate, and the CA(s) client certificates are verified against (admin clients, agents' own metrics). */
function adminTls(m: TlsMaterial) {
  return secureContextOptions(m);
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const s = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(s) }).end(s);
}

function text(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' }).end(body);
}
