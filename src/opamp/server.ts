/**
 * The OpAMP endpoint: one HTTP server, one path, both transports (OpAMP §Transports).
 * `POST` with `Content-Type: application/x-protobuf` is the plain HTTP transport (http-transport.ts);
 * `GET` with `Upgrade: websocket` is the WebSocket transport (ws-transport.ts). Anything else on the
 * path is refused with a logged reason. Bad input fails only its own connection or request.
 * Limits: admission.ts; Host and path: request.ts; options and defaults: options.ts.
 */
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { LogBudget } from '../lib/log-budget.js';
import { Admission } from './admission.js';
import type { OpampErrorCode } from './errors.js';
import { HttpTransport } from './http-transport.js';
import { applyLiveSettings, resolveOptions, type LiveSettings, type OpampServerOptions, type ResolvedOptions, type ServerCore, type Transport } from './options.js';
import { EndpointUrls, pathOf } from './request.js';
import { secureContextOptions, type TlsMaterial } from './tls.js';
import { WsTransport, destroyOnError, rejectUpgrade, type WsState } from './ws-transport.js';

export { PROTOBUF_CONTENT_TYPE, type LiveSettings, type OpampHandler, type OpampServerOptions } from './options.js';
export { TokenBucket } from './admission.js';
export { parseHostHeader } from './request.js';
export { acceptsGzip } from './http-transport.js';

const LISTEN_BACKLOG = 16_384;

function monotonicNow(): number {
  return performance.now();
}

export class OpampServer {
  readonly #opts: ResolvedOptions;
  readonly #http: Server | HttpsServer;
  readonly #admission: Admission<WsState>;
  readonly #ws: WsTransport;
  readonly #httpTransport: HttpTransport;
  readonly #logBudget = new LogBudget(10, 10_000, monotonicNow);
  readonly #endpoints = new EndpointUrls();
  #nextId = 1;

  constructor(opts: OpampServerOptions) {
    this.#opts = resolveOptions(opts);
    const core: ServerCore = {
      opts: this.#opts,
      refuse: (transport, code, reason, extra) => this.#refuse(transport, code, reason, extra),
      logError: (err, message, extra) => this.#logError(err, message, extra),
      nextConnectionId: () => this.#nextId++,
    };
    this.#admission = new Admission<WsState>(this.#opts, {
      evict: (state, cap) => this.#ws.evict(state, cap),
      expire: (state, timeoutMs) => this.#ws.expire(state, timeoutMs),
    });
    this.#ws = new WsTransport(core, this.#admission);
    this.#httpTransport = new HttpTransport(core, this.#admission);
    const onRequest: RequestListener = (req, res) => {
      this.#onRequest(req, res).catch((err: unknown) => {
        this.#logError(err, 'Unexpected error serving an OpAMP HTTP request');
        if (!res.headersSent) res.writeHead(500).end();
        else res.destroy();
      });
    };
    // Node checks these deadlines every connectionsCheckingInterval (30 s by default, which would
    // let a silent socket live for 40 s); a socket that has not sent a request head in time — even
    // one that sent nothing at all — gets 408 (clientError below) and is closed. Node requires
    // requestTimeout >= headersTimeout. handshakeTimeout bounds a TLS handshake that never ends.
    const headersTimeout = this.#opts.headersTimeoutMs;
    const timeouts = {
      headersTimeout,
      requestTimeout: Math.max(this.#opts.requestTimeoutMs, headersTimeout),
      keepAliveTimeout: 65_000,
      connectionsCheckingInterval: Math.min(1_000, headersTimeout),
    };
    const tls = this.#opts.tls;
    this.#http = tls
      ? createHttpsServer({ ...timeouts, handshakeTimeout: headersTimeout, ...secureContextOptions(tls), ...(tls.clientCa ? { requestCert: true, rejectUnauthorized: false } : {}) }, onRequest)
      : createServer(timeouts, onRequest);
    this.#http.on('upgrade', (req, socket: Duplex, head: Buffer) => {
      try {
        this.#onUpgrade(req, socket, head);
      } catch (err) {
        // A bug of ours must cost one upgrade, never the process.
        this.#logError(err, 'Unexpected error handling a WebSocket upgrade');
        socket.destroy();
      }
    });
    this.#http.on('clientError', (err: Error & { code?: string }, socket: Duplex) => {
      if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
        this.#refuse('http', 'FB_OPAMP_REQUEST_TIMEOUT', 'Closed a connection that sent no complete request in time', {
          source: (socket as { remoteAddress?: string }).remoteAddress,
          headersTimeoutMs: this.#opts.headersTimeoutMs,
          requestTimeoutMs: this.#opts.requestTimeoutMs,
        });
        if (socket.writable) socket.end('HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        else socket.destroy();
        return;
      }
      if (!err.code?.startsWith('HPE_')) {
        // Not an HTTP parse error: a TLS failure (the https server reports those here too, e.g. a
        // handshake timeout, counted in tlsClientError) or a reset. No HTTP answer can be read;
        // end() would leave a socket in a TLS handshake open for as long as the peer likes.
        this.#opts.logger.debug({ err: err.message, code: err.code }, 'Closed a connection after a transport error');
        socket.destroy();
        return;
      }
      this.#opts.logger.debug({ err: err.message }, 'Refused a malformed HTTP request');
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      else socket.destroy();
    });
    // A failed handshake (e.g. plain HTTP on the TLS port); Node closes the socket.
    this.#http.on('tlsClientError', (err: Error & { code?: string }, socket: { remoteAddress?: string }) => {
      if (err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT') {
        this.#refuse('http', 'FB_OPAMP_REQUEST_TIMEOUT', 'Closed a connection that did not complete its TLS handshake in time', { source: socket.remoteAddress, handshakeTimeoutMs: headersTimeout });
      } else this.#opts.logger.debug({ err: err.message }, 'Refused a failed TLS handshake');
    });
  }

  /** Open WebSocket connections, identified or not. */
  get connectionCount(): number {
    return this.#ws.count;
  }

  /** Open WebSocket connections that have not sent a valid first message yet. */
  get pendingConnectionCount(): number {
    return this.#admission.pendingCount;
  }

  /**
   * Changes settings of the running server; returns whether anything changed. A key given as
   * undefined goes back to its default (for `authenticate`: everyone is accepted); an absent key
   * is kept. Throws a TypeError, changing nothing, for a value the constructor would refuse.
   * New values apply to new connections and to the next message or request of open ones: rates
   * from the next message (a bucket keeps what it saved, up to the new burst, and refills at the
   * new rate), maxMessageBytes from the next frame or body (see WsTransport.maxMessageBytesChanged),
   * connection caps from the next upgrade or first message, the first-message deadline of pending
   * connections is re-armed from when each was accepted, path and transports from the next
   * request. `authenticate` is used for upgrades and requests that arrive from now on; open
   * connections stay (the caller closes those the new mode would refuse).
   */
  configure(changes: Partial<LiveSettings>): boolean {
    const { next, changed } = applyLiveSettings(this.#opts, changes);
    if (changed.length === 0) return false;
    Object.assign(this.#opts, next);
    if (changed.includes('path')) this.#endpoints.clear();
    if (changed.includes('maxMessageBytes')) this.#ws.maxMessageBytesChanged();
    this.#admission.limitsChanged();
    this.#opts.logger.info({ changed }, 'OpAMP server settings changed');
    return true;
  }

  /**
   * Replaces the certificate, key and client CA for new TLS handshakes; open connections (and
   * their agents) are kept. Throws, keeping the current material, when the PEMs are unusable, when
   * the server was started without TLS, or when `clientCa` is added or removed (both need a restart).
   */
  setTls(m: TlsMaterial): void {
    const current = this.#opts.tls;
    if (!current || !('setSecureContext' in this.#http)) {
      throw new Error('the OpAMP server was started without TLS; switching between plain and TLS needs a restart');
    }
    if (!current.clientCa !== !m.clientCa) {
      throw new Error(`the OpAMP server was started ${current.clientCa ? 'with' : 'without'} a client CA; turning client certificates on or off needs a restart`);
    }
    this.#http.setSecureContext(secureContextOptions(m));
    this.#opts.tls = m;
  }

  listen(port: number, host = '127.0.0.1'): Promise<{ port: number; host: string }> {
    return new Promise((resolve, reject) => {
      this.#http.once('error', reject);
      // A deep accept queue: after a restart a whole fleet reconnects at once, and Node's default of
      // 511 makes the kernel drop the rest (they retry seconds later). The kernel caps it at
      // net.core.somaxconn (4096 on most systems).
      this.#http.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
        this.#http.off('error', reject);
        const a = this.#http.address();
        if (a && typeof a === 'object') resolve({ port: a.port, host: a.address });
        else reject(new Error('no address'));
      });
      this.#ws.startPinging();
    });
  }

  async close(): Promise<void> {
    const closing = new Promise<void>((resolve) => this.#http.close(() => resolve()));
    this.#ws.terminateAll();
    this.#http.closeAllConnections();
    await closing;
  }

  /** Counts a refusal; logs it at warn level, at most 10 lines per code in 10 s (the next line says how many were left out). */
  #refuse(transport: Transport, code: OpampErrorCode, reason: string, extra: Record<string, unknown> = {}): void {
    try {
      this.#opts.onProtocolError?.(transport, code);
    } catch (err) {
      this.#logError(err, 'Unexpected error counting a refusal');
    }
    const suppressed = this.#logBudget.take(`${transport}/${code}`);
    if (suppressed === false) return;
    this.#opts.logger.warn({ transport, code, ...extra, ...(suppressed > 0 ? { alsoRefusedSinceLastLine: suppressed } : {}) }, reason);
  }

  /** Logs a bug of ours at error level, rate-limited like refusals. */
  #logError(err: unknown, message: string, extra: Record<string, unknown> = {}): void {
    const suppressed = this.#logBudget.take(`error/${message}`);
    if (suppressed === false) return;
    this.#opts.logger.error({ err, ...extra, ...(suppressed > 0 ? { alsoFailedSinceLastLine: suppressed } : {}) }, message);
  }

  #badHost(transport: Transport, req: IncomingMessage): void {
    const host = req.headers.host;
    this.#refuse(transport, 'FB_OPAMP_BAD_HOST', 'Refused a request with a missing, repeated or malformed Host header', {
      source: req.socket.remoteAddress,
      host: host === undefined ? null : host.slice(0, 100),
    });
  }

  #onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', destroyOnError);
    // Before anything else: the URL offered back to the agent is built from it.
    const endpoint = this.#endpoints.of(req, 'ws', this.#opts.path);
    if (endpoint === null) {
      this.#badHost('websocket', req);
      return rejectUpgrade(socket, 400, 'Bad Request');
    }
    if (pathOf(req) !== this.#opts.path) return rejectUpgrade(socket, 404, 'Not Found');
    this.#ws.upgrade(req, socket, head, endpoint);
  }

  async #onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const files = this.#opts.files;
    const path = pathOf(req);
    // Before anything else, on every path: the URLs offered to agents are built from it.
    const endpoint = this.#endpoints.of(req, 'http', this.#opts.path);
    if (endpoint === null) {
      this.#badHost('http', req);
      req.resume();
      res.writeHead(400, { 'Content-Type': 'text/plain', Connection: 'close' }).end('missing, repeated or malformed Host header\n');
      return;
    }
    if (files && path.startsWith(files.prefix)) return this.#httpTransport.handleFile(req, res, path, files);
    if (path !== this.#opts.path) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      return;
    }
    return this.#httpTransport.handle(req, res, endpoint);
  }
}
