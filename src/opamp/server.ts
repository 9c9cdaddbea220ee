/**
 * The OpAMP endpoint: one HTTP server, one path, both transports (OpAMP §Transports).
 * `POST` with `Content-Type: application/x-protobuf` is the plain HTTP transport; `GET` with
 * `Upgrade: websocket` is the WebSocket transport. Anything else on the path is refused with a
 * logged reason. Bad input fails only its own connection or request.
 */
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { gunzip, gzip } from 'node:zlib';
import { promisify } from 'node:util';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Logger } from 'pino';
import { decodeAgentToServer, decodeWsMessage, encodeServerToAgent, encodeWsMessage } from './codec.js';
import type { AgentConnection, AuthResult, VerifiedIdentity } from './connection.js';
import { OpampProtocolError, type OpampErrorCode } from './errors.js';
import { SERVER_CAPABILITIES, ServerErrorResponseType, type AgentToServer, type ServerToAgentProps } from './messages.js';
import { secureContextOptions, type TlsMaterial } from './tls.js';
import { sameBytes } from './uid.js';

const gunzipAsync = promisify(gunzip);
const gzipAsync = promisify(gzip);
export const PROTOBUF_CONTENT_TYPE = 'application/x-protobuf';

export interface OpampHandler {
  /** Returns the answer to the message. Never throws for bad peer input. */
  handleMessage(conn: AgentConnection, msg: AgentToServer): ServerToAgentProps;
  /** A WebSocket connection closed. */
  connectionClosed(conn: AgentConnection): void;
}

export interface OpampServerOptions {
  handler: OpampHandler;
  logger: Logger;
  /** Called for every refused frame or request, with its stable error code. */
  onProtocolError?: (transport: 'websocket' | 'http', code: OpampErrorCode) => void;
  /** URL path of the endpoint. Default "/v1/opamp". */
  path?: string;
  /** Which transports are served. Default both. */
  transports?: ReadonlyArray<'websocket' | 'http'>;
  /** Largest AgentToServer accepted, in bytes, after decompression. Default 16 MiB. WebSocket closes with 1009; HTTP answers 413. */
  maxMessageBytes?: number;
  /** WebSocket ping period in ms; a peer that has not answered the previous ping is terminated. Default 30,000. */
  pingIntervalMs?: number;
  /** Concurrent WebSocket connections beyond which upgrades get 503 + Retry-After. Default 19,000 (the fd limit here is 20,000). */
  maxConnections?: number;
  /** Seconds sent in Retry-After when refusing for load. Default 30. */
  retryAfterSeconds?: number;
  /** Messages per second one connection (a WebSocket, or an HTTP keep-alive socket) may send; burst twice that. 0 = no limit. Default 50. */
  maxMessagesPerSecond?: number;
  /** Open WebSocket connections per source address; more get 429 + Retry-After. 0 = no limit (default). */
  maxConnectionsPerSource?: number;
  /**
   * Authenticates a WebSocket upgrade or an HTTP request before anything is read from it
   * (OpAMP: a server MUST answer 401 before the upgrade). Default: everyone is accepted.
   */
  authenticate?: (req: IncomingMessage) => Promise<AuthResult>;
  /** permessage-deflate; off by default (it costs 100+ KiB per connection). */
  perMessageDeflate?: boolean;
  /**
   * Serve TLS (wss://, https://) with this material; `setTls` swaps it live. With `clientCa`,
   * client certificates are requested and verified, but a missing or untrusted one does not fail
   * the handshake: `authenticate` (e.g. mtlsAuth) refuses it with a 401/403 the client can read.
   */
  tls?: TlsMaterial;
  /**
   * Other GET/HEAD resources served on the same port under `prefix` (package files), authenticated
   * like an OpAMP request first: `handle` gets the verified identity.
   */
  files?: { prefix: string; handle: (req: IncomingMessage, res: ServerResponse, path: string, identity: VerifiedIdentity | undefined) => Promise<void> };
}

interface WsState {
  conn: AgentConnection;
  alive: boolean;
  source: string;
  bucket: TokenBucket | null;
  /** Consecutive messages refused for rate; the connection is closed when this reaches 10. */
  refused: number;
  /** The last plain answer (instance_uid and capabilities only), encoded, and its uid. */
  plainReply?: Buffer;
  plainUid?: Uint8Array;
}

function destroyOnError(this: Duplex): void {
  this.destroy();
}

function monotonicNow(): number {
  return performance.now();
}

/** An answer that carries nothing but the agent's uid and our capabilities (a heartbeat's). */
function isPlainReply(r: ServerToAgentProps): boolean {
  return (
    r.instanceUid != null &&
    r.capabilities === SERVER_CAPABILITIES &&
    r.remoteConfig == null &&
    r.connectionSettings == null &&
    r.packagesAvailable == null &&
    r.errorResponse == null &&
    r.agentIdentification == null &&
    r.command == null &&
    r.customCapabilities == null &&
    r.customMessage == null &&
    !r.flags
  );
}


/** A token bucket: `rate` tokens a second, at most `burst` saved up. */
export class TokenBucket {
  #tokens: number;
  #last: number;
  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly now: () => number = monotonicNow,
  ) {
    this.#tokens = burst;
    this.#last = now();
  }

  take(): boolean {
    const t = this.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((t - this.#last) / 1000) * this.rate);
    this.#last = t;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

export class OpampServer {
  readonly #opts: Required<Omit<OpampServerOptions, 'onProtocolError' | 'authenticate' | 'tls' | 'files'>> & Pick<OpampServerOptions, 'onProtocolError' | 'authenticate' | 'tls' | 'files'>;
  readonly #http: Server | HttpsServer;
  readonly #wss: WebSocketServer;
  readonly #sockets = new Map<WebSocket, WsState>();
  readonly #perSource = new Map<string, number>();
  readonly #httpBuckets = new WeakMap<object, TokenBucket>();
  readonly #endpoints = new Map<string, string>();
  #nextId = 1;
  #pingTimer: NodeJS.Timeout | null = null;

  constructor(opts: OpampServerOptions) {
    this.#opts = {
      path: '/v1/opamp',
      transports: ['websocket', 'http'],
      maxMessageBytes: 16 * 1024 * 1024,
      pingIntervalMs: 30_000,
      maxConnections: 19_000,
      retryAfterSeconds: 30,
      maxMessagesPerSecond: 50,
      maxConnectionsPerSource: 0,
      perMessageDeflate: false,
      ...opts,
    };
    if (this.#opts.maxMessageBytes < 1) throw new TypeError('maxMessageBytes must be positive');
    this.#wss = new WebSocketServer({
      noServer: true,
      // +1: the varint header byte is not part of the AgentToServer.
      maxPayload: this.#opts.maxMessageBytes + 1,
      perMessageDeflate: this.#opts.perMessageDeflate,
      clientTracking: false,
    });
    const onRequest: RequestListener = (req, res) => {
      this.#onRequest(req, res).catch((err: unknown) => {
        this.#opts.logger.error({ err }, 'Unexpected error serving an OpAMP HTTP request');
        if (!res.headersSent) res.writeHead(500).end();
        else res.destroy();
      });
    };
    const timeouts = { requestTimeout: 60_000, headersTimeout: 30_000, keepAliveTimeout: 65_000 };
    const tls = this.#opts.tls;
    this.#http = tls
      ? createHttpsServer({ ...timeouts, ...secureContextOptions(tls), ...(tls.clientCa ? { requestCert: true, rejectUnauthorized: false } : {}) }, onRequest)
      : createServer(timeouts, onRequest);
    this.#http.on('upgrade', (req, socket, head) => this.#onUpgrade(req, socket, head));
    this.#http.on('clientError', (err, socket) => {
      this.#opts.logger.debug({ err: err.message }, 'Refused a malformed HTTP request');
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
    // A failed handshake (e.g. plain HTTP on the TLS port); Node closes the socket.
    this.#http.on('tlsClientError', (err: Error) => this.#opts.logger.debug({ err: err.message }, 'Refused a failed TLS handshake'));
  }

  get connectionCount(): number {
    return this.#sockets.size;
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
      this.#pingTimer = setInterval(() => this.#pingAll(), this.#opts.pingIntervalMs);
      this.#pingTimer.unref();
    });
  }

  async close(): Promise<void> {
    if (this.#pingTimer) clearInterval(this.#pingTimer);
    for (const ws of this.#sockets.keys()) ws.close(1001, 'server shutting down');
    const closing = new Promise<void>((resolve) => this.#http.close(() => resolve()));
    // Give peers a moment to complete the close handshake, then cut the rest.
    await new Promise((r) => setTimeout(r, 200).unref());
    for (const ws of this.#sockets.keys()) ws.terminate();
    this.#http.closeAllConnections();
    await closing;
  }

  #refuse(transport: 'websocket' | 'http', code: OpampErrorCode, reason: string, extra: Record<string, unknown> = {}): void {
    this.#opts.onProtocolError?.(transport, code);
    this.#opts.logger.warn({ transport, code, ...extra }, reason);
  }

  #pathOf(req: IncomingMessage): string {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    return q === -1 ? url : url.slice(0, q);
  }

  #endpoint(req: IncomingMessage, scheme: 'ws' | 'http'): string {
    const tls = (req.socket as { encrypted?: boolean }).encrypted === true;
    const host = req.headers.host ?? `${req.socket.localAddress}:${req.socket.localPort}`;
    // Every agent that reached us by one name shares one copy of the URL (kept per connection).
    const url = `${scheme}${tls ? 's' : ''}://${host}${this.#opts.path}`;
    let known = this.#endpoints.get(url);
    if (known === undefined) {
      if (this.#endpoints.size >= 1000) this.#endpoints.clear();
      this.#endpoints.set(url, (known = url));
    }
    return known;
  }

  #onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const reject = (status: number, text: string, headers: Record<string, string> = {}) => {
      const lines = [`HTTP/1.1 ${status} ${text}`, 'Connection: close', 'Content-Length: 0', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
      socket.end(lines.join('\r\n') + '\r\n\r\n');
    };
    // Not a closure of this scope: it stays on the socket for the connection's life, and would keep
    // everything this function's closures capture (the request and its headers) alive with it.
    socket.on('error', destroyOnError);
    if (this.#pathOf(req) !== this.#opts.path) return reject(404, 'Not Found');
    if (!this.#opts.transports.includes('websocket')) {
      this.#refuse('websocket', 'FB_OPAMP_BAD_METHOD', 'Refused WebSocket upgrade: the WebSocket transport is disabled');
      return reject(405, 'Method Not Allowed');
    }
    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket' || req.method !== 'GET') {
      this.#refuse('websocket', 'FB_OPAMP_BAD_METHOD', 'Refused an upgrade that is not a WebSocket GET');
      return reject(400, 'Bad Request');
    }
    if (this.#sockets.size >= this.#opts.maxConnections) {
      // opamp-go clients ignore ServerErrorResponse{UNAVAILABLE}; 503 + Retry-After on the upgrade slows them.
      this.#refuse('websocket', 'FB_OPAMP_OVERLOADED', 'Refused WebSocket upgrade: connection limit reached', { limit: this.#opts.maxConnections });
      return reject(503, 'Service Unavailable', { 'Retry-After': String(this.#opts.retryAfterSeconds) });
    }
    const source = req.socket.remoteAddress ?? '';
    const perSource = this.#opts.maxConnectionsPerSource;
    if (perSource > 0 && (this.#perSource.get(source) ?? 0) >= perSource) {
      this.#refuse('websocket', 'FB_OPAMP_OVERLOADED', 'Refused WebSocket upgrade: connection limit per source address reached', { source, limit: perSource });
      return reject(429, 'Too Many Requests', { 'Retry-After': String(this.#opts.retryAfterSeconds) });
    }
    const endpoint = this.#endpoint(req, 'ws');
    const authorization = req.headers.authorization;
    if (!this.#opts.authenticate) {
      this.#wss.handleUpgrade(req, socket, head, (ws) => this.#onWebSocket(ws, endpoint, authorization, source, undefined));
      return;
    }
    this.#opts.authenticate(req).then(
      (r) => {
        if (!r.ok) {
          this.#refuse('websocket', 'FB_OPAMP_UNAUTHENTICATED', 'Refused WebSocket upgrade', { source, status: r.status, reason: r.reason });
          return reject(r.status, STATUS_TEXT[r.status], r.status === 401 ? { 'WWW-Authenticate': 'Bearer' } : r.status === 503 ? { 'Retry-After': String(this.#opts.retryAfterSeconds) } : {});
        }
        if (socket.destroyed) return;
        this.#wss.handleUpgrade(req, socket, head, (ws) => this.#onWebSocket(ws, endpoint, authorization, source, r.identity));
      },
      (err: unknown) => {
        this.#opts.logger.error({ err }, 'Authentication failed unexpectedly');
        reject(500, 'Internal Server Error');
      },
    );
  }

  #newBucket(): TokenBucket | null {
    const rate = this.#opts.maxMessagesPerSecond;
    return rate > 0 ? new TokenBucket(rate, Math.max(2 * rate, 1)) : null;
  }

  #onWebSocket(ws: WebSocket, endpoint: string, authorization: string | undefined, source: string, verified: VerifiedIdentity | undefined): void {
    const log = this.#opts.logger;
    const id = this.#nextId++;
    const conn: AgentConnection = {
      id,
      transport: 'websocket',
      endpoint,
      authorization,
      verified,
      send: (msg, tail) => {
        if (ws.readyState !== ws.OPEN) return;
        ws.send(encodeWsMessage(msg, tail), { binary: true });
      },
      close: (code, reason) => ws.close(code, reason),
    };
    const state: WsState = { conn, alive: true, source, bucket: this.#newBucket(), refused: 0 };
    this.#sockets.set(ws, state);
    this.#perSource.set(source, (this.#perSource.get(source) ?? 0) + 1);
    ws.on('pong', () => {
      state.alive = true;
    });
    ws.on('message', (data, isBinary) => {
      state.alive = true;
      if (!isBinary) {
        this.#refuse('websocket', 'FB_OPAMP_TEXT_FRAME', 'Closed connection that sent a text frame', { connection: id });
        ws.close(1003, 'OpAMP uses binary frames only');
        return;
      }
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      let msg: AgentToServer;
      try {
        msg = decodeWsMessage(buf);
      } catch (err) {
        if (err instanceof OpampProtocolError) {
          this.#refuse('websocket', err.code as OpampErrorCode, 'Closed connection that sent a malformed message', { connection: id, error: err.message });
          ws.close(err.wsCloseCode, err.message.slice(0, 120));
          return;
        }
        log.error({ err, connection: id }, 'Unexpected error decoding an OpAMP message');
        ws.close(1011, 'internal error');
        return;
      }
      if (state.bucket && !state.bucket.take()) {
        // OpAMP §Throttling: UNAVAILABLE with a retry hint; the message is not processed.
        state.refused++;
        this.#refuse('websocket', 'FB_OPAMP_RATE_LIMITED', 'Refused a message over the rate limit', { connection: id, limit: this.#opts.maxMessagesPerSecond });
        conn.send!({
          instanceUid: msg.instanceUid,
          errorResponse: {
            type: ServerErrorResponseType.Unavailable,
            errorMessage: `more than ${this.#opts.maxMessagesPerSecond} messages per second on this connection`,
            retryInfo: { retryAfterNanoseconds: this.#opts.retryAfterSeconds * 1e9 },
          },
        });
        if (state.refused >= 10) ws.close(1008, 'message rate limit exceeded');
        return;
      }
      state.refused = 0;
      try {
        const reply = this.#opts.handler.handleMessage(conn, msg);
        if (isPlainReply(reply)) {
          // The answer to a heartbeat is the same bytes every time: encoded once per connection and uid.
          const uid = reply.instanceUid!;
          if (!state.plainReply || !sameBytes(state.plainUid, uid)) {
            state.plainReply = encodeWsMessage(reply);
            state.plainUid = Uint8Array.from(uid); // a copy: the decoded uid is a view of the received frame
          }
          if (ws.readyState === ws.OPEN) ws.send(state.plainReply, { binary: true });
        } else conn.send!(reply);
      } catch (err) {
        // A bug of ours must cost one connection, never the process.
        log.error({ err, connection: id }, 'Unexpected error handling an OpAMP message');
        ws.close(1011, 'internal error');
      }
    });
    ws.on('error', (err: Error & { code?: string }) => {
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
        this.#refuse('websocket', 'FB_OPAMP_TOO_LARGE', 'Closed connection that sent a message over the size limit', { connection: id, limit: this.#opts.maxMessageBytes });
      } else {
        this.#refuse('websocket', 'FB_OPAMP_BAD_PROTOBUF', 'WebSocket protocol error', { connection: id, error: err.message, wsCode: err.code });
      }
    });
    ws.on('close', (code) => {
      this.#sockets.delete(ws);
      const n = (this.#perSource.get(source) ?? 1) - 1;
      if (n <= 0) this.#perSource.delete(source);
      else this.#perSource.set(source, n);
      log.debug({ connection: id, code }, 'WebSocket closed');
      this.#opts.handler.connectionClosed(conn);
    });
  }

  #pingAll(): void {
    for (const [ws, state] of this.#sockets) {
      if (!state.alive) {
        // No pong and no message for a whole interval: a half-open socket. OpAMP clients rely on
        // heartbeats, and a dead peer must not hold its agent's record as connected.
        this.#opts.logger.info({ connection: state.conn.id }, 'Terminated unresponsive WebSocket');
        ws.terminate();
        continue;
      }
      state.alive = false;
      ws.ping();
    }
  }

  async #onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const files = this.#opts.files;
    const path = this.#pathOf(req);
    if (files && path.startsWith(files.prefix)) return this.#onFileRequest(req, res, path, files);
    if (path !== this.#opts.path) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      return;
    }
    const fail = (status: number, code: OpampErrorCode, message: string, headers: Record<string, string> = {}) => {
      this.#refuse('http', code, 'Refused OpAMP HTTP request', { error: message, status });
      req.resume();
      res.writeHead(status, { 'Content-Type': 'text/plain', Connection: 'close', ...headers }).end(message + '\n');
    };
    if (!this.#opts.transports.includes('http')) return fail(405, 'FB_OPAMP_BAD_METHOD', 'the HTTP transport is disabled');
    if (this.#opts.maxMessagesPerSecond > 0) {
      // Per keep-alive socket: one agent's poll loop, never another agent's.
      let bucket = this.#httpBuckets.get(req.socket);
      if (!bucket) this.#httpBuckets.set(req.socket, (bucket = this.#newBucket()!));
      if (!bucket.take()) {
        // opamp-go clients honour 429 + Retry-After on HTTP (they ignore UNAVAILABLE).
        return fail(429, 'FB_OPAMP_RATE_LIMITED', `more than ${this.#opts.maxMessagesPerSecond} requests per second on this connection`, { 'Retry-After': String(this.#opts.retryAfterSeconds) });
      }
    }
    if (req.method !== 'POST') return fail(405, 'FB_OPAMP_BAD_METHOD', `method ${req.method ?? ''} not allowed: POST an AgentToServer, or GET with Upgrade: websocket`, { Allow: 'POST, GET' });
    let verified: VerifiedIdentity | undefined;
    if (this.#opts.authenticate) {
      const r = await this.#opts.authenticate(req);
      if (!r.ok) {
        return fail(r.status, 'FB_OPAMP_UNAUTHENTICATED', r.reason, r.status === 401 ? { 'WWW-Authenticate': 'Bearer' } : r.status === 503 ? { 'Retry-After': String(this.#opts.retryAfterSeconds) } : {});
      }
      verified = r.identity;
    }
    const ctype = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (ctype !== PROTOBUF_CONTENT_TYPE) return fail(415, 'FB_OPAMP_BAD_CONTENT_TYPE', `Content-Type must be ${PROTOBUF_CONTENT_TYPE}`);
    const encoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
    if (encoding !== 'identity' && encoding !== 'gzip') return fail(415, 'FB_OPAMP_BAD_ENCODING', `unsupported Content-Encoding ${encoding}`);
    const limit = this.#opts.maxMessageBytes;
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (Number.isFinite(declared) && declared > limit) return fail(413, 'FB_OPAMP_TOO_LARGE', `body exceeds ${limit} bytes`);

    let raw: Buffer;
    try {
      raw = await readBody(req, limit);
    } catch (err) {
      if ((err as Error).message === 'too large') return fail(413, 'FB_OPAMP_TOO_LARGE', `body exceeds ${limit} bytes`);
      req.destroy();
      return;
    }
    let body = raw;
    if (encoding === 'gzip') {
      try {
        body = await gunzipAsync(raw, { maxOutputLength: limit });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
          return fail(413, 'FB_OPAMP_TOO_LARGE', `decompressed body exceeds ${limit} bytes`);
        }
        return fail(400, 'FB_OPAMP_BAD_ENCODING', `body is not valid gzip: ${(err as Error).message}`);
      }
    }
    let msg: AgentToServer;
    try {
      msg = decodeAgentToServer(body);
    } catch (err) {
      if (err instanceof OpampProtocolError) return fail(err.httpStatus, err.code as OpampErrorCode, err.message);
      throw err;
    }
    const conn: AgentConnection = {
      id: this.#nextId++,
      transport: 'http',
      endpoint: this.#endpoint(req, 'http'),
      authorization: req.headers.authorization,
      verified,
    };
    const reply = this.#opts.handler.handleMessage(conn, msg);
    let out = Buffer.from(encodeServerToAgent(reply));
    const headers: Record<string, string> = { 'Content-Type': PROTOBUF_CONTENT_TYPE };
    // Small answers (a poll's is ~20 bytes) are not worth a trip to the zlib thread pool.
    if (out.length >= GZIP_MIN_BYTES && acceptsGzip(req.headers['accept-encoding'])) {
      out = await gzipAsync(out);
      headers['Content-Encoding'] = 'gzip';
    }
    headers['Content-Length'] = String(out.length);
    res.writeHead(200, headers).end(out);
  }

  async #onFileRequest(req: IncomingMessage, res: ServerResponse, path: string, files: NonNullable<OpampServerOptions['files']>): Promise<void> {
    let identity: VerifiedIdentity | undefined;
    if (this.#opts.authenticate) {
      const r = await this.#opts.authenticate(req);
      if (!r.ok) {
        this.#opts.logger.warn({ path, source: req.socket.remoteAddress, status: r.status, reason: r.reason }, 'Refused a file request');
        req.resume();
        const headers: Record<string, string> = { 'Content-Type': 'text/plain', ...(r.status === 401 ? { 'WWW-Authenticate': 'Bearer' } : {}) };
        res.writeHead(r.status, headers).end(`${r.reason}\n`);
        return;
      }
      identity = r.identity;
    }
    await files.handle(req, res, path, identity);
  }
}

const LISTEN_BACKLOG = 16_384;
const GZIP_MIN_BYTES = 1024;

const STATUS_TEXT: Record<401 | 403 | 503, string> = { 401: 'Unauthorized', 403: 'Forbidden', 503: 'Service Unavailable' };

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.removeAllListeners('data');
        reject(new Error('too large'));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** True when Accept-Encoding allows gzip (q-values honoured: "gzip;q=0" refuses it). */
export function acceptsGzip(header: string | string[] | undefined): boolean {
  const value = Array.isArray(header) ? header.join(',') : header ?? '';
  for (const part of value.split(',')) {
    const [name, ...params] = part.trim().toLowerCase().split(';');
    if (name !== 'gzip' && name !== '*') continue;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    if (q === undefined || Number(q.slice(2)) > 0) return true;
  }
  return false;
}
