/**
 * The OpAMP endpoint: one HTTP server, one path, both transports (OpAMP §Transports).
 * `POST` with `Content-Type: application/x-protobuf` is the plain HTTP transport; `GET` with
 * `Upgrade: websocket` is the WebSocket transport. Anything else on the path is refused with a
 * logged reason. Bad input fails only its own connection or request.
 */
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { isIPv6 } from 'node:net';
import type { Duplex } from 'node:stream';
import { gunzip, gzip } from 'node:zlib';
import { promisify } from 'node:util';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
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
  /**
   * Concurrent WebSocket connections (identified or not) beyond which upgrades get 503 +
   * Retry-After. A resource bound (file descriptors, memory). Default 19,000 (the fd limit here is 20,000).
   */
  maxConnections?: number;
  /** Seconds sent in Retry-After when refusing for load. Default 30. */
  retryAfterSeconds?: number;
  /** Messages per second one connection (a WebSocket, or an HTTP keep-alive socket) may send; burst twice that. 0 = no limit. Default 50. */
  maxMessagesPerSecond?: number;
  /**
   * Bytes per second one connection may send (after decompression), with a burst of one largest
   * message: an agent's reports are small and rare, and a large report costs the bridge about
   * 10 ms of CPU per MiB, so a few senders of the largest reports at the message rate would hold
   * the event loop for everyone. Over it, like the message rate. 0 = no limit. Default 256 KiB.
   */
  maxBytesPerSecond?: number;
  /**
   * Identified agents per source address: WebSocket connections that sent a valid first message
   * (a decodable AgentToServer with a 16-byte instance_uid). An upgrade from an address that holds
   * this many gets 429 + Retry-After; a connection whose first message would exceed it is closed
   * with 1013. Connections that have not sent one yet do not count (see maxPendingConnectionsPerSource).
   * 0 = no limit (default).
   */
  maxConnectionsPerSource?: number;
  /**
   * WebSocket connections per source address that have not sent a valid first message yet. When a
   * new one would exceed it, the oldest such connection of that address is closed (1008), so that
   * sockets that never speak cannot lock a well-behaved agent out of its address. 0 = no limit.
   * Default: maxConnectionsPerSource (0, no limit, when that is 0).
   */
  maxPendingConnectionsPerSource?: number;
  /**
   * A WebSocket connection that sends no valid first message within this many ms is closed with
   * 1008 (OpAMP clients send their first status report right after connecting). 0 = no deadline.
   * Default 10,000.
   */
  firstMessageTimeoutMs?: number;
  /**
   * Time a TCP connection has to send a complete request head (request line and headers),
   * counted from its first byte or from its accept when it sends nothing; also bounds the TLS
   * handshake. Past it the socket gets 408 and is closed. Default 10,000.
   */
  headersTimeoutMs?: number;
  /** Time to receive a whole HTTP request, body included. Default 30,000. */
  requestTimeoutMs?: number;
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
  /** Sent a valid first message: counted per source as an agent, no longer as pending. */
  identified: boolean;
  /** The server decided to close it (deadline, eviction, limit, error): later frames are ignored. */
  closing: boolean;
  /** The first-message deadline, while pending. */
  deadline: NodeJS.Timeout | null;
  bucket: TokenBucket | null;
  /** Bytes per second (maxBytesPerSecond). */
  bytes: TokenBucket | null;
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

/** Longest Host header value accepted: a 253-character DNS name and a port. */
const MAX_HOST_LENGTH = 260;
/** RFC 3986 unreserved characters: the reg-name (DNS names, IPv4 addresses) accepted in Host. */
const REG_NAME = /^[A-Za-z0-9._~-]{1,253}$/;
const PORT = /^[0-9]{1,5}$/;

/**
 * Parses a Host header value (RFC 9110 §7.2: uri-host [":" port]). Accepted: a reg-name of RFC 3986
 * unreserved characters (letters, digits, "-", ".", "_", "~"; DNS names and IPv4 addresses) of at
 * most 253 characters, or an IPv6 literal in brackets (no zone id, no IPvFuture); then optionally
 * ":" and a port of 1 to 5 digits up to 65535. The result also parses as a WHATWG URL host (which
 * e.g. refuses "1.2.3.4.5"), so URLs built from it never throw. Anything else is null.
 */
export function parseHostHeader(value: string): { hostname: string; port: string | undefined } | null {
  if (value.length === 0 || value.length > MAX_HOST_LENGTH) return null;
  let hostname: string;
  let rest: string;
  if (value.charCodeAt(0) === 0x5b /* [ */) {
    const end = value.indexOf(']');
    if (end < 0) return null;
    const inner = value.slice(1, end);
    if (inner.includes('%') || !isIPv6(inner)) return null;
    hostname = value.slice(0, end + 1);
    rest = value.slice(end + 1);
  } else {
    const colon = value.indexOf(':');
    hostname = colon < 0 ? value : value.slice(0, colon);
    rest = colon < 0 ? '' : value.slice(colon);
    if (!REG_NAME.test(hostname)) return null;
  }
  let port: string | undefined;
  if (rest !== '') {
    if (rest.charCodeAt(0) !== 0x3a /* : */) return null;
    port = rest.slice(1);
    if (!PORT.test(port) || Number(port) > 65535) return null;
  }
  try {
    new URL(`http://${hostname}/`);
  } catch {
    return null;
  }
  return { hostname, port };
}

/** `reason` cut to the 123 bytes a WebSocket close frame allows, on a character boundary. */
function closeReason(reason: string): string {
  if (Buffer.byteLength(reason) <= 123) return reason;
  let out = '';
  let bytes = 0;
  for (const ch of reason) {
    const n = Buffer.byteLength(ch);
    if (bytes + n > 123) break;
    out += ch;
    bytes += n;
  }
  return out;
}

/**
 * Closes `ws` with a close frame, never throwing (a code ws refuses, e.g. 1005, terminates it
 * instead), and terminates it when the peer has not completed the close handshake within
 * `graceMs` (ws would otherwise wait 30 s for a peer that never answers).
 */
function closeSocket(ws: WebSocket, code: number, reason: string, graceMs = CLOSE_GRACE_MS): void {
  try {
    ws.close(code, closeReason(reason));
  } catch {
    ws.terminate();
    return;
  }
  setTimeout(() => {
    if (ws.readyState !== ws.CLOSED) ws.terminate();
  }, graceMs).unref();
}

/** At most `perWindow` log lines per key per `windowMs`; the next one after says how many were left out. */
class LogBudget {
  readonly #windows = new Map<string, { start: number; lines: number; suppressed: number }>();
  constructor(
    private readonly perWindow: number,
    private readonly windowMs: number,
  ) {}

  /** The number of lines left out since the last one, when this one may be logged; false otherwise. */
  take(key: string): number | false {
    const now = monotonicNow();
    let w = this.#windows.get(key);
    if (!w) {
      if (this.#windows.size >= 100) this.#windows.clear();
      this.#windows.set(key, (w = { start: now, lines: 0, suppressed: 0 }));
    }
    if (now - w.start >= this.windowMs) {
      w.start = now;
      w.lines = 0;
    }
    if (w.lines >= this.perWindow) {
      w.suppressed++;
      return false;
    }
    w.lines++;
    const suppressed = w.suppressed;
    w.suppressed = 0;
    return suppressed;
  }
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

  take(n = 1): boolean {
    const t = this.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((t - this.#last) / 1000) * this.rate);
    this.#last = t;
    if (this.#tokens < n) return false;
    this.#tokens -= n;
    return true;
  }
}

export class OpampServer {
  readonly #opts: Required<Omit<OpampServerOptions, 'onProtocolError' | 'authenticate' | 'tls' | 'files' | 'maxPendingConnectionsPerSource'>> &
    Pick<OpampServerOptions, 'onProtocolError' | 'authenticate' | 'tls' | 'files'> & { maxPendingConnectionsPerSource: number };
  readonly #http: Server | HttpsServer;
  readonly #wss: WebSocketServer;
  readonly #sockets = new Map<WebSocket, WsState>();
  /** Identified WebSocket agents per source address. */
  readonly #perSource = new Map<string, number>();
  /** WebSocket connections without a valid first message yet, per source address, oldest first. */
  readonly #pending = new Map<string, Set<WsState>>();
  #pendingCount = 0;
  readonly #logBudget = new LogBudget(10, 10_000);
  readonly #httpBuckets = new WeakMap<object, TokenBucket>();
  readonly #httpByteBuckets = new WeakMap<object, TokenBucket>();
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
      maxBytesPerSecond: 256 * 1024,
      maxConnectionsPerSource: 0,
      firstMessageTimeoutMs: DEFAULT_FIRST_MESSAGE_TIMEOUT_MS,
      headersTimeoutMs: DEFAULT_HEADERS_TIMEOUT_MS,
      requestTimeoutMs: DEFAULT_REQUEST_TIMEOUT_MS,
      perMessageDeflate: false,
      ...withoutUndefined(opts),
      maxPendingConnectionsPerSource: opts.maxPendingConnectionsPerSource ?? opts.maxConnectionsPerSource ?? 0,
    };
    if (this.#opts.maxMessageBytes < 1) throw new TypeError('maxMessageBytes must be positive');
    for (const k of ['maxConnections', 'maxConnectionsPerSource', 'maxPendingConnectionsPerSource', 'firstMessageTimeoutMs', 'headersTimeoutMs', 'requestTimeoutMs'] as const) {
      const v = this.#opts[k];
      if (!Number.isSafeInteger(v) || v < 0) throw new TypeError(`${k} must be a non-negative integer (got ${String(v)})`);
    }
    if (this.#opts.headersTimeoutMs < 1 || this.#opts.requestTimeoutMs < 1) throw new TypeError('headersTimeoutMs and requestTimeoutMs must be positive');
    this.#wss = new WebSocketServer({
      noServer: true,
      // +1: the varint header byte is not part of the AgentToServer.
      maxPayload: this.#opts.maxMessageBytes + 1,
      perMessageDeflate: this.#opts.perMessageDeflate,
      clientTracking: false,
    });
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
    return this.#sockets.size;
  }

  /** Open WebSocket connections that have not sent a valid first message yet. */
  get pendingConnectionCount(): number {
    return this.#pendingCount;
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
    const closing = new Promise<void>((resolve) => this.#http.close(() => resolve()));
    // Connections are cut without a close frame, as a crash would: every client reconnects after
    // an abnormal closure, but not every client after a close frame (the Java OpAMP client 1.53
    // never answers one and then waits forever: conformance-java.test.ts).
    for (const ws of this.#sockets.keys()) ws.terminate();
    this.#http.closeAllConnections();
    await closing;
  }

  /** Counts a refusal; logs it at warn level, at most 10 lines per code in 10 s (the next line says how many were left out). */
  #refuse(transport: 'websocket' | 'http', code: OpampErrorCode, reason: string, extra: Record<string, unknown> = {}): void {
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

  #pathOf(req: IncomingMessage): string {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    return q === -1 ? url : url.slice(0, q);
  }

  /**
   * The URL the peer reached us by — scheme, its Host header, our path — built only from a Host
   * that parseHostHeader accepts (IPv6 in brackets), or, for an HTTP/1.0 request without Host, our
   * own address and port. Null when the Host is missing (HTTP/1.1 requires it), malformed, or
   * sent twice: the caller answers 400. Agents are offered this URL (connection settings, package
   * downloads), so it must always parse.
   */
  #endpoint(req: IncomingMessage, scheme: 'ws' | 'http'): string | null {
    const tls = (req.socket as { encrypted?: boolean }).encrypted === true;
    let host = req.headers.host;
    if (host === undefined) {
      if (req.httpVersionMajor === 1 && req.httpVersionMinor === 0) {
        const local = req.socket.localAddress;
        if (!local) return null;
        const addr = isIPv6(local) ? `[${local.replace(/%.*$/, '')}]` : local;
        host = `${addr}:${req.socket.localPort ?? ''}`;
      } else return null;
    } else if (hostHeaderCount(req.rawHeaders) !== 1) return null;
    const prefix = `${scheme}${tls ? 's' : ''}://`;
    // Every agent that reached us by one name shares one copy of the URL (kept per connection).
    // Only valid hosts are cached, so a stream of bad ones cannot churn the cache.
    const key = prefix + host;
    const known = this.#endpoints.get(key);
    if (known !== undefined) return known;
    const parsed = parseHostHeader(host);
    if (!parsed) return null;
    const url = `${prefix}${parsed.hostname}${parsed.port !== undefined ? `:${parsed.port}` : ''}${this.#opts.path}`;
    if (this.#endpoints.size >= 1000) this.#endpoints.clear();
    this.#endpoints.set(key, url);
    return url;
  }

  #badHost(transport: 'websocket' | 'http', req: IncomingMessage): void {
    const host = req.headers.host;
    this.#refuse(transport, 'FB_OPAMP_BAD_HOST', 'Refused a request with a missing, repeated or malformed Host header', {
      source: req.socket.remoteAddress,
      host: host === undefined ? null : host.slice(0, 100),
    });
  }

  #onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const reject = (status: number, text: string, headers: Record<string, string> = {}) => {
      const lines = [`HTTP/1.1 ${status} ${text}`, 'Connection: close', 'Content-Length: 0', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
      socket.end(lines.join('\r\n') + '\r\n\r\n');
    };
    // Not a closure of this scope: it stays on the socket for the connection's life, and would keep
    // everything this function's closures capture (the request and its headers) alive with it.
    socket.on('error', destroyOnError);
    // Before anything else: the URL offered back to the agent is built from it.
    const endpoint = this.#endpoint(req, 'ws');
    if (endpoint === null) {
      this.#badHost('websocket', req);
      return reject(400, 'Bad Request');
    }
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
        // The limits again: other upgrades may have completed while this one was authenticated.
        if (this.#sockets.size >= this.#opts.maxConnections) {
          this.#refuse('websocket', 'FB_OPAMP_OVERLOADED', 'Refused WebSocket upgrade: connection limit reached', { limit: this.#opts.maxConnections });
          return reject(503, 'Service Unavailable', { 'Retry-After': String(this.#opts.retryAfterSeconds) });
        }
        this.#wss.handleUpgrade(req, socket, head, (ws) => this.#onWebSocket(ws, endpoint, authorization, source, r.identity));
      },
      (err: unknown) => {
        this.#logError(err, 'Authentication failed unexpectedly');
        reject(500, 'Internal Server Error');
      },
    ).catch((err: unknown) => {
      this.#logError(err, 'Unexpected error handling a WebSocket upgrade');
      socket.destroy();
    });
  }

  #newByteBucket(): TokenBucket | null {
    const rate = this.#opts.maxBytesPerSecond;
    return rate > 0 ? new TokenBucket(rate, Math.max(this.#opts.maxMessageBytes, 2 * rate)) : null;
  }

  #newBucket(): TokenBucket | null {
    const rate = this.#opts.maxMessagesPerSecond;
    return rate > 0 ? new TokenBucket(rate, Math.max(2 * rate, 1)) : null;
  }

  #onWebSocket(ws: WebSocket, endpoint: string, authorization: string | undefined, source: string, verified: VerifiedIdentity | undefined): void {
    const log = this.#opts.logger;
    const id = this.#nextId++;
    // Set below; `send` and `close` are called from the fleet's shared loops (fan-out, sweeps) and
    // must never throw into them: a failure costs this connection only.
    let state: WsState;
    const conn: AgentConnection = {
      id,
      transport: 'websocket',
      endpoint,
      remoteAddress: source,
      authorization,
      verified,
      send: (msg, tail) => {
        if (ws.readyState !== ws.OPEN) return;
        try {
          ws.send(encodeWsMessage(msg, tail), { binary: true });
        } catch (err) {
          this.#logError(err, 'Unexpected error sending an OpAMP message', { connection: id });
          state.closing = true;
          closeSocket(ws, 1011, 'internal error');
        }
      },
      close: (code, reason) => {
        state.closing = true;
        closeSocket(ws, code, reason);
      },
    };
    state = { conn, alive: true, source, identified: false, closing: false, deadline: null, bucket: this.#newBucket(), bytes: this.#newByteBucket(), refused: 0 };
    this.#sockets.set(ws, state);
    this.#addPending(state, ws);
    ws.on('pong', () => {
      state.alive = true;
    });
    ws.on('message', (data, isBinary) => {
      try {
        this.#onWsMessage(ws, state, data, isBinary);
      } catch (err) {
        // A bug of ours must cost one connection, never the process.
        this.#logError(err, 'Unexpected error handling an OpAMP message', { connection: id });
        state.closing = true;
        closeSocket(ws, 1011, 'internal error');
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
      if (state.identified) {
        const n = (this.#perSource.get(source) ?? 1) - 1;
        if (n <= 0) this.#perSource.delete(source);
        else this.#perSource.set(source, n);
      } else this.#removePending(state);
      log.debug({ connection: id, code }, 'WebSocket closed');
      try {
        this.#opts.handler.connectionClosed(conn);
      } catch (err) {
        this.#logError(err, 'Unexpected error forgetting a closed connection', { connection: id });
      }
    });
  }

  /** Counts a new connection as pending, with its deadline; closes its source's oldest pending one past the per-source cap. */
  #addPending(state: WsState, ws: WebSocket): void {
    let set = this.#pending.get(state.source);
    if (!set) this.#pending.set(state.source, (set = new Set()));
    const cap = this.#opts.maxPendingConnectionsPerSource;
    if (cap > 0 && set.size >= cap) {
      // Evict rather than refuse the newcomer: a peer that holds sockets open without speaking
      // cannot lock a well-behaved agent (which speaks at once) out of its address.
      const oldest = set.values().next().value!;
      this.#removePending(oldest);
      oldest.closing = true;
      this.#refuse('websocket', 'FB_OPAMP_IDLE_CONNECTION', 'Closed the oldest connection without an OpAMP message from its address: too many such connections', {
        connection: oldest.conn.id,
        source: state.source,
        limit: cap,
      });
      oldest.conn.close!(1008, 'too many connections without an OpAMP message from this address');
    }
    set.add(state);
    this.#pendingCount++;
    const timeout = this.#opts.firstMessageTimeoutMs;
    if (timeout > 0) {
      state.deadline = setTimeout(() => {
        state.deadline = null;
        if (state.identified || state.closing) return;
        this.#removePending(state);
        state.closing = true;
        this.#refuse('websocket', 'FB_OPAMP_IDLE_CONNECTION', 'Closed a connection that sent no OpAMP message in time', {
          connection: state.conn.id,
          source: state.source,
          timeoutMs: timeout,
        });
        closeSocket(ws, 1008, `no OpAMP message within ${timeout / 1000} s`);
      }, timeout);
      state.deadline.unref();
    }
  }

  #removePending(state: WsState): void {
    if (state.deadline) {
      clearTimeout(state.deadline);
      state.deadline = null;
    }
    const set = this.#pending.get(state.source);
    if (!set?.delete(state)) return;
    this.#pendingCount--;
    if (set.size === 0) this.#pending.delete(state.source);
  }

  #onWsMessage(ws: WebSocket, state: WsState, data: RawData, isBinary: boolean): void {
    const { conn } = state;
    const id = conn.id;
    if (state.closing) return;
    state.alive = true;
    if (!isBinary) {
      this.#refuse('websocket', 'FB_OPAMP_TEXT_FRAME', 'Closed connection that sent a text frame', { connection: id });
      conn.close!(1003, 'OpAMP uses binary frames only');
      return;
    }
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    let msg: AgentToServer;
    try {
      msg = decodeWsMessage(buf);
    } catch (err) {
      if (err instanceof OpampProtocolError) {
        this.#refuse('websocket', err.code as OpampErrorCode, 'Closed connection that sent a malformed message', { connection: id, error: err.message });
        conn.close!(err.wsCloseCode, err.message);
        return;
      }
      this.#logError(err, 'Unexpected error decoding an OpAMP message', { connection: id });
      conn.close!(1011, 'internal error');
      return;
    }
    const overBytes = state.bytes !== null && !state.bytes.take(buf.length);
    if (overBytes || (state.bucket && !state.bucket.take())) {
      // OpAMP §Throttling: UNAVAILABLE with a retry hint; the message is not processed.
      state.refused++;
      const why = overBytes ? `more than ${this.#opts.maxBytesPerSecond} bytes per second on this connection` : `more than ${this.#opts.maxMessagesPerSecond} messages per second on this connection`;
      this.#refuse('websocket', 'FB_OPAMP_RATE_LIMITED', 'Refused a message over the rate limit', { connection: id, limit: why });
      conn.send!({
        instanceUid: msg.instanceUid,
        errorResponse: {
          type: ServerErrorResponseType.Unavailable,
          errorMessage: why,
          retryInfo: { retryAfterNanoseconds: this.#opts.retryAfterSeconds * 1e9 },
        },
      });
      if (state.refused >= 10) conn.close!(1008, 'message rate limit exceeded');
      return;
    }
    state.refused = 0;
    if (!state.identified && msg.instanceUid?.length === 16) {
      // The first valid message: the connection is an agent now, and counts against its address.
      this.#removePending(state);
      const perSource = this.#opts.maxConnectionsPerSource;
      const held = this.#perSource.get(state.source) ?? 0;
      if (perSource > 0 && held >= perSource) {
        this.#refuse('websocket', 'FB_OPAMP_OVERLOADED', 'Closed a connection past the limit of agents per source address', { connection: id, source: state.source, limit: perSource });
        conn.close!(1013, 'connection limit per source address reached');
        return;
      }
      state.identified = true;
      this.#perSource.set(state.source, held + 1);
    }
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
  }

  #pingAll(): void {
    for (const [ws, state] of this.#sockets) {
      try {
        if (!state.alive) {
          // No pong and no message for a whole interval: a half-open socket. OpAMP clients rely on
          // heartbeats, and a dead peer must not hold its agent's record as connected.
          this.#opts.logger.info({ connection: state.conn.id }, 'Terminated unresponsive WebSocket');
          ws.terminate();
          continue;
        }
        state.alive = false;
        ws.ping();
      } catch (err) {
        this.#logError(err, 'Unexpected error pinging a WebSocket', { connection: state.conn.id });
        ws.terminate();
      }
    }
  }

  async #onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const files = this.#opts.files;
    const path = this.#pathOf(req);
    // Before anything else, on every path: the URLs offered to agents are built from it.
    const endpoint = this.#endpoint(req, 'http');
    if (endpoint === null) {
      this.#badHost('http', req);
      req.resume();
      res.writeHead(400, { 'Content-Type': 'text/plain', Connection: 'close' }).end('missing, repeated or malformed Host header\n');
      return;
    }
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
    if (this.#opts.maxBytesPerSecond > 0) {
      let bytes = this.#httpByteBuckets.get(req.socket);
      if (!bytes) this.#httpByteBuckets.set(req.socket, (bytes = this.#newByteBucket()!));
      if (!bytes.take(body.length)) {
        return fail(429, 'FB_OPAMP_RATE_LIMITED', `more than ${this.#opts.maxBytesPerSecond} bytes per second on this connection`, { 'Retry-After': String(this.#opts.retryAfterSeconds) });
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
      endpoint,
      remoteAddress: req.socket.remoteAddress ?? '',
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
/** OpAMP clients send their first status report right after connecting; 10 s is ample on any link. */
const DEFAULT_FIRST_MESSAGE_TIMEOUT_MS = 10_000;
const DEFAULT_HEADERS_TIMEOUT_MS = 10_000;
const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/** How long a peer has to answer our close frame before its socket is cut. */
const CLOSE_GRACE_MS = 2_000;

/** How many Host headers a request carries (Node keeps only the first in `headers`). */
function hostHeaderCount(raw: string[]): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.length === 4 && raw[i]!.toLowerCase() === 'host') n++;
  return n;
}

/** `o` without its undefined properties, so that they do not replace defaults when spread. */
function withoutUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
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
