/**
 * The OpAMP server's options, their defaults and checks, the settings `configure` changes live,
 * and what the server shares with its transports.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { AgentConnection, AuthResult, TransportName as Transport, VerifiedIdentity } from './connection.js';
import type { OpampErrorCode } from './errors.js';
import type { AgentToServer, ServerToAgentProps } from './messages.js';
import type { TlsMaterial } from './tls.js';

export const PROTOBUF_CONTENT_TYPE = 'application/x-protobuf';

export type { Transport };

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
  onProtocolError?: (transport: Transport, code: OpampErrorCode) => void;
  /** URL path of the endpoint. Default "/v1/opamp". */
  path?: string;
  /** Which transports are served. Default both. */
  transports?: ReadonlyArray<Transport>;
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

/** The settings `OpampServer.configure` changes on a running server. */
export type LiveSettings = Pick<
  OpampServerOptions,
  | 'maxMessageBytes'
  | 'maxMessagesPerSecond'
  | 'maxBytesPerSecond'
  | 'maxConnectionsPerSource'
  | 'maxConnections'
  | 'firstMessageTimeoutMs'
  | 'maxPendingConnectionsPerSource'
  | 'path'
  | 'transports'
  | 'authenticate'
>;

/** The options with their defaults filled in. One object for the server's life: `configure` changes its fields in place. */
export type ResolvedOptions = Required<Omit<OpampServerOptions, 'onProtocolError' | 'authenticate' | 'tls' | 'files' | 'maxPendingConnectionsPerSource'>> &
  Pick<OpampServerOptions, 'onProtocolError' | 'authenticate' | 'tls' | 'files'> & {
    maxPendingConnectionsPerSource: number;
    /** maxPendingConnectionsPerSource was given; otherwise it follows maxConnectionsPerSource. */
    pendingCapGiven: boolean;
  };

/** OpAMP clients send their first status report right after connecting; 10 s is ample on any link. */
const DEFAULT_FIRST_MESSAGE_TIMEOUT_MS = 10_000;
const DEFAULT_HEADERS_TIMEOUT_MS = 10_000;
const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

const DEFAULTS = {
  path: '/v1/opamp',
  transports: ['websocket', 'http'] as ReadonlyArray<Transport>,
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
};

/** `opts` with defaults; throws a TypeError for a limit out of range. */
export function resolveOptions(opts: OpampServerOptions): ResolvedOptions {
  const o: ResolvedOptions = {
    ...DEFAULTS,
    ...withoutUndefined(opts),
    maxPendingConnectionsPerSource: opts.maxPendingConnectionsPerSource ?? opts.maxConnectionsPerSource ?? 0,
    pendingCapGiven: opts.maxPendingConnectionsPerSource !== undefined,
  };
  checkLimits(o);
  if (o.headersTimeoutMs < 1 || o.requestTimeoutMs < 1) throw new TypeError('headersTimeoutMs and requestTimeoutMs must be positive');
  return o;
}

function checkLimits(o: ResolvedOptions): void {
  if (o.maxMessageBytes < 1) throw new TypeError('maxMessageBytes must be positive');
  for (const k of ['maxConnections', 'maxConnectionsPerSource', 'maxPendingConnectionsPerSource', 'firstMessageTimeoutMs', 'headersTimeoutMs', 'requestTimeoutMs'] as const) {
    const v = o[k];
    if (!Number.isSafeInteger(v) || v < 0) throw new TypeError(`${k} must be a non-negative integer (got ${String(v)})`);
  }
}

const LIVE_KEYS = [
  'maxMessageBytes',
  'maxMessagesPerSecond',
  'maxBytesPerSecond',
  'maxConnectionsPerSource',
  'maxConnections',
  'firstMessageTimeoutMs',
  'maxPendingConnectionsPerSource',
  'path',
  'transports',
  'authenticate',
] as const satisfies ReadonlyArray<keyof LiveSettings>;

/**
 * The options `current` would have with `changes`, checked like the constructor's (a TypeError,
 * and nothing applied, when a limit is out of range), and the names of the settings that differ.
 * A key given as undefined goes back to its default; an absent key is kept.
 */
export function applyLiveSettings(current: ResolvedOptions, changes: Partial<LiveSettings>): { next: ResolvedOptions; changed: Array<keyof LiveSettings> } {
  const next: ResolvedOptions = { ...current };
  for (const k of LIVE_KEYS) {
    if (!Object.prototype.hasOwnProperty.call(changes, k)) continue;
    const v = changes[k];
    if (k === 'authenticate') next.authenticate = changes.authenticate;
    else if (k === 'maxPendingConnectionsPerSource') {
      next.pendingCapGiven = v !== undefined;
      if (v !== undefined) next.maxPendingConnectionsPerSource = v as number;
    } else (next as Record<string, unknown>)[k] = v === undefined ? DEFAULTS[k] : v;
  }
  if (!next.pendingCapGiven) next.maxPendingConnectionsPerSource = next.maxConnectionsPerSource;
  if (typeof next.path !== 'string' || !next.path.startsWith('/')) throw new TypeError(`path must start with "/" (got ${String(next.path)})`);
  if (!Array.isArray(next.transports) || next.transports.some((t) => t !== 'websocket' && t !== 'http')) throw new TypeError('transports must list "websocket" and/or "http"');
  checkLimits(next);
  const changed = LIVE_KEYS.filter((k) => (k === 'transports' ? !sameTransports(current.transports, next.transports) : current[k] !== next[k]));
  return { next, changed };
}

function sameTransports(a: ReadonlyArray<Transport>, b: ReadonlyArray<Transport>): boolean {
  return a.includes('websocket') === b.includes('websocket') && a.includes('http') === b.includes('http');
}

/** `o` without its undefined properties, so that they do not replace defaults when spread. */
function withoutUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** What the server shares with its transports. */
export interface ServerCore {
  /** The live options (`configure` changes their fields in place). */
  readonly opts: ResolvedOptions;
  /** Counts a refusal and logs it, rate-limited. */
  refuse(transport: Transport, code: OpampErrorCode, reason: string, extra?: Record<string, unknown>): void;
  /** Logs a bug of ours at error level, rate-limited. */
  logError(err: unknown, message: string, extra?: Record<string, unknown>): void;
  nextConnectionId(): number;
}
