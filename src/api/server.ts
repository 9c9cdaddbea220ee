/**
 * The admin HTTP server: probes, Prometheus metrics, the read-only JSON API (docs/api.md) and the
 * OTLP/HTTP receiver of agents' own metrics.
 */
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { secureContextOptions, type TlsMaterial } from '../opamp/tls.js';
import type { AgentView, CollectorView } from './views.js';

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

  /**
   * With `tls` (cert and key; a client CA is not used here) it serves HTTPS, and `setTls` swaps the
   * certificate live. With `otlpMetrics`, `/v1/metrics` is an OTLP/HTTP metrics receiver (POST;
   * src/otlp/receiver.ts) where agents send their own metrics.
   */
  constructor(private readonly opts: { source: AdminApiSource; registry: Registry; logger: Logger; tls?: TlsMaterial; otlpMetrics?: (req: IncomingMessage, res: ServerResponse) => Promise<void> }) {
    const onRequest: RequestListener = (req, res) => {
      this.#route(req, res).catch((err: unknown) => {
        opts.logger.error({ err, url: req.url }, 'Admin API request failed');
        if (!res.headersSent) json(res, 500, { error: 'internal error' });
      });
    };
    this.#http = opts.tls ? createHttpsServer(adminTls(opts.tls), onRequest) : createServer(onRequest);
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
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { error: 'only GET is supported' });
    const src = this.opts.source;
    if (path === '/healthz') return text(res, 200, 'ok\n');
    if (path === '/readyz') return src.ready() ? text(res, 200, 'ok\n') : text(res, 503, 'not ready\n');
    if (path === '/metrics') {
      src.beforeScrape?.();
      const body = await this.opts.registry.metrics();
      res.writeHead(200, { 'Content-Type': this.opts.registry.contentType }).end(body);
      return;
    }
    if (path === '/api/v1/agents') return json(res, 200, { agents: src.agents() });
    if (path.startsWith('/api/v1/agents/')) {
      const uid = decodeURIComponent(path.slice('/api/v1/agents/'.length));
      const a = src.agent(uid);
      return a ? json(res, 200, a) : json(res, 404, { error: `no agent with instanceUid ${uid}` });
    }
    if (path === '/api/v1/collectors') return json(res, 200, src.collectors());
    return json(res, 404, { error: `no route for ${path}` });
  }
}

/** The admin endpoint never asks for client certificates: its client CA, if given, is ignored. */
function adminTls(m: TlsMaterial) {
  return secureContextOptions({ cert: m.cert, key: m.key });
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const s = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(s) }).end(s);
}

function text(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' }).end(body);
}
