/**
 * The WebSocket transport of the OpAMP endpoint (OpAMP §WebSocket Transport): upgrades past the
 * server's routing, each connection's life (first message, rates, pings, close), and its frames.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { ConnectionBudget, type Admission, type PendingEntry } from './admission.js';
import { decodeWsMessage, encodeWsMessage } from './codec.js';
import type { AgentConnection, VerifiedIdentity } from './connection.js';
import { OpampProtocolError, type OpampErrorCode } from './errors.js';
import { SERVER_CAPABILITIES, ServerErrorResponseType, type AgentToServer, type ServerToAgentProps } from './messages.js';
import type { ServerCore } from './options.js';
import { sameBytes } from './uid.js';

export interface WsState extends PendingEntry {
  readonly ws: WebSocket;
  conn: AgentConnection;
  alive: boolean;
  /** Sent a valid first message: counted per source as an agent, no longer as pending. */
  identified: boolean;
  /** The server decided to close it (deadline, eviction, limit, error): later frames are ignored. */
  closing: boolean;
  budget: ConnectionBudget;
  /** Consecutive messages refused for rate; the connection is closed when this reaches 10. */
  refused: number;
  /** The last plain answer (instance_uid and capabilities only), encoded, and its uid. */
  plainReply?: Buffer;
  plainUid?: Uint8Array;
}

/** How long a peer has to answer our close frame before its socket is cut. */
const CLOSE_GRACE_MS = 2_000;

const STATUS_TEXT: Record<401 | 403 | 503, string> = { 401: 'Unauthorized', 403: 'Forbidden', 503: 'Service Unavailable' };

/** Not a closure: it stays on an upgraded socket for the connection's life, and would keep what a closure captures (the request) alive with it. */
export function destroyOnError(this: Duplex): void {
  this.destroy();
}

/** Answers an upgrade request with `status` and closes the socket. */
export function rejectUpgrade(socket: Duplex, status: number, text: string, headers: Record<string, string> = {}): void {
  const lines = [`HTTP/1.1 ${status} ${text}`, 'Connection: close', 'Content-Length: 0', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
  socket.end(lines.join('\r\n') + '\r\n\r\n');
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

export class WsTransport {
  readonly #wss: WebSocketServer;
  readonly #sockets = new Map<WebSocket, WsState>();
  #pingTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly core: ServerCore,
    private readonly admission: Admission<WsState>,
  ) {
    this.#wss = new WebSocketServer({
      noServer: true,
      maxPayload: this.#maxPayload(),
      perMessageDeflate: core.opts.perMessageDeflate,
      clientTracking: false,
    });
  }

  /** Open WebSocket connections, identified or not. */
  get count(): number {
    return this.#sockets.size;
  }

  /**
   * maxMessageBytes changed. ws reads maxPayload when it upgrades a socket, so new connections get
   * the new frame cap; open ones keep the cap they were opened with as ws's buffering bound, and
   * each of their frames is also judged by the current limit (#onMessage).
   */
  maxMessageBytesChanged(): void {
    this.#wss.options.maxPayload = this.#maxPayload();
  }

  startPinging(): void {
    this.#pingTimer = setInterval(() => this.#pingAll(), this.core.opts.pingIntervalMs);
    this.#pingTimer.unref();
  }

  /**
   * Cuts every connection without a close frame, as a crash would: every client reconnects after
   * an abnormal closure, but not every client after a close frame (the Java OpAMP client 1.53
   * never answers one and then waits forever: conformance-java.test.ts).
   */
  terminateAll(): void {
    if (this.#pingTimer) clearInterval(this.#pingTimer);
    for (const ws of this.#sockets.keys()) ws.terminate();
  }

  /** An upgrade on the OpAMP path with a valid Host (the server checked both). */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, endpoint: string): void {
    const { opts } = this.core;
    if (!opts.transports.includes('websocket')) {
      this.core.refuse('websocket', 'FB_OPAMP_BAD_METHOD', 'Refused WebSocket upgrade: the WebSocket transport is disabled');
      return rejectUpgrade(socket, 405, 'Method Not Allowed');
    }
    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket' || req.method !== 'GET') {
      this.core.refuse('websocket', 'FB_OPAMP_BAD_METHOD', 'Refused an upgrade that is not a WebSocket GET');
      return rejectUpgrade(socket, 400, 'Bad Request');
    }
    if (this.#refuseAtCap(socket)) return;
    const source = req.socket.remoteAddress ?? '';
    if (this.admission.atSourceCap(source)) {
      this.core.refuse('websocket', 'FB_OPAMP_OVERLOADED', 'Refused WebSocket upgrade: connection limit per source address reached', { source, limit: opts.maxConnectionsPerSource });
      return rejectUpgrade(socket, 429, 'Too Many Requests', { 'Retry-After': String(opts.retryAfterSeconds) });
    }
    const authorization = req.headers.authorization;
    const authenticate = opts.authenticate;
    if (!authenticate) {
      this.#wss.handleUpgrade(req, socket, head, (ws) => this.#onWebSocket(ws, endpoint, authorization, source, undefined));
      return;
    }
    authenticate(req)
      .then(
        (r) => {
          if (!r.ok) {
            this.core.refuse('websocket', 'FB_OPAMP_UNAUTHENTICATED', 'Refused WebSocket upgrade', { source, status: r.status, reason: r.reason });
            return rejectUpgrade(socket, r.status, STATUS_TEXT[r.status], r.status === 401 ? { 'WWW-Authenticate': 'Bearer' } : r.status === 503 ? { 'Retry-After': String(opts.retryAfterSeconds) } : {});
          }
          if (socket.destroyed) return;
          // The cap again: other upgrades may have completed while this one was authenticated.
          if (this.#refuseAtCap(socket)) return;
          this.#wss.handleUpgrade(req, socket, head, (ws) => this.#onWebSocket(ws, endpoint, authorization, source, r.identity));
        },
        (err: unknown) => {
          this.core.logError(err, 'Authentication failed unexpectedly');
          rejectUpgrade(socket, 500, 'Internal Server Error');
        },
      )
      .catch((err: unknown) => {
        this.core.logError(err, 'Unexpected error handling a WebSocket upgrade');
        socket.destroy();
      });
  }

  /** Closes `state`, evicted from the pending list for a newcomer of its address. */
  evict(state: WsState, cap: number): void {
    state.closing = true;
    this.core.refuse('websocket', 'FB_OPAMP_IDLE_CONNECTION', 'Closed the oldest connection without an OpAMP message from its address: too many such connections', {
      connection: state.conn.id,
      source: state.source,
      limit: cap,
    });
    state.conn.close!(1008, 'too many connections without an OpAMP message from this address');
  }

  /** Closes `state` when it has still sent no valid first message at its deadline. */
  expire(state: WsState, timeoutMs: number): void {
    if (state.identified || state.closing) return;
    this.admission.removePending(state);
    state.closing = true;
    this.core.refuse('websocket', 'FB_OPAMP_IDLE_CONNECTION', 'Closed a connection that sent no OpAMP message in time', {
      connection: state.conn.id,
      source: state.source,
      timeoutMs,
    });
    closeSocket(state.ws, 1008, `no OpAMP message within ${timeoutMs / 1000} s`);
  }

  /** +1: the varint header byte is not part of the AgentToServer. */
  #maxPayload(): number {
    return this.core.opts.maxMessageBytes + 1;
  }

  /** Refuses the upgrade with 503 when maxConnections are open (opamp-go clients ignore ServerErrorResponse{UNAVAILABLE}; 503 + Retry-After slows them). */
  #refuseAtCap(socket: Duplex): boolean {
    if (!this.admission.atConnectionCap(this.#sockets.size)) return false;
    const { opts } = this.core;
    this.core.refuse('websocket', 'FB_OPAMP_OVERLOADED', 'Refused WebSocket upgrade: connection limit reached', { limit: opts.maxConnections });
    rejectUpgrade(socket, 503, 'Service Unavailable', { 'Retry-After': String(opts.retryAfterSeconds) });
    return true;
  }

  #onWebSocket(ws: WebSocket, endpoint: string, authorization: string | undefined, source: string, verified: VerifiedIdentity | undefined): void {
    const { core } = this;
    const id = core.nextConnectionId();
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
          core.logError(err, 'Unexpected error sending an OpAMP message', { connection: id });
          state.closing = true;
          closeSocket(ws, 1011, 'internal error');
        }
      },
      close: (code, reason) => {
        state.closing = true;
        closeSocket(ws, code, reason);
      },
    };
    state = { ws, conn, alive: true, source, openedAt: performance.now(), identified: false, closing: false, deadline: null, budget: new ConnectionBudget(this.admission), refused: 0 };
    this.#sockets.set(ws, state);
    this.admission.addPending(state);
    ws.on('pong', () => {
      state.alive = true;
    });
    ws.on('message', (data, isBinary) => {
      try {
        this.#onMessage(state, data, isBinary);
      } catch (err) {
        // A bug of ours must cost one connection, never the process.
        core.logError(err, 'Unexpected error handling an OpAMP message', { connection: id });
        state.closing = true;
        closeSocket(ws, 1011, 'internal error');
      }
    });
    ws.on('error', (err: Error & { code?: string }) => {
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
        core.refuse('websocket', 'FB_OPAMP_TOO_LARGE', 'Closed connection that sent a message over the size limit', { connection: id, limit: core.opts.maxMessageBytes });
      } else {
        core.refuse('websocket', 'FB_OPAMP_BAD_PROTOBUF', 'WebSocket protocol error', { connection: id, error: err.message, wsCode: err.code });
      }
    });
    ws.on('close', (code) => {
      this.#sockets.delete(ws);
      if (state.identified) this.admission.removeAgent(source);
      else this.admission.removePending(state);
      core.opts.logger.debug({ connection: id, code }, 'WebSocket closed');
      try {
        core.opts.handler.connectionClosed(conn);
      } catch (err) {
        core.logError(err, 'Unexpected error forgetting a closed connection', { connection: id });
      }
    });
  }

  #onMessage(state: WsState, data: RawData, isBinary: boolean): void {
    const { ws, conn } = state;
    const { core } = this;
    const id = conn.id;
    if (state.closing) return;
    state.alive = true;
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    const limit = core.opts.maxMessageBytes;
    if (buf.length > limit + 1) {
      // Only after maxMessageBytes was lowered: ws refuses larger frames of newer connections itself.
      core.refuse('websocket', 'FB_OPAMP_TOO_LARGE', 'Closed connection that sent a message over the size limit', { connection: id, limit });
      conn.close!(1009, `message exceeds ${limit} bytes`);
      return;
    }
    if (!isBinary) {
      core.refuse('websocket', 'FB_OPAMP_TEXT_FRAME', 'Closed connection that sent a text frame', { connection: id });
      conn.close!(1003, 'OpAMP uses binary frames only');
      return;
    }
    let msg: AgentToServer;
    try {
      msg = decodeWsMessage(buf);
    } catch (err) {
      if (err instanceof OpampProtocolError) {
        core.refuse('websocket', err.code as OpampErrorCode, 'Closed connection that sent a malformed message', { connection: id, error: err.message });
        conn.close!(err.wsCloseCode, err.message);
        return;
      }
      core.logError(err, 'Unexpected error decoding an OpAMP message', { connection: id });
      conn.close!(1011, 'internal error');
      return;
    }
    const overBytes = !state.budget.takeBytes(buf.length);
    if (overBytes || !state.budget.takeMessage()) {
      // OpAMP §Throttling: UNAVAILABLE with a retry hint; the message is not processed.
      state.refused++;
      const why = overBytes ? `more than ${core.opts.maxBytesPerSecond} bytes per second on this connection` : `more than ${core.opts.maxMessagesPerSecond} messages per second on this connection`;
      core.refuse('websocket', 'FB_OPAMP_RATE_LIMITED', 'Refused a message over the rate limit', { connection: id, limit: why });
      conn.send!({
        instanceUid: msg.instanceUid,
        errorResponse: {
          type: ServerErrorResponseType.Unavailable,
          errorMessage: why,
          retryInfo: { retryAfterNanoseconds: core.opts.retryAfterSeconds * 1e9 },
        },
      });
      if (state.refused >= 10) conn.close!(1008, 'message rate limit exceeded');
      return;
    }
    state.refused = 0;
    if (!state.identified && msg.instanceUid?.length === 16) {
      // The first valid message: the connection is an agent now, and counts against its address.
      this.admission.removePending(state);
      if (!this.admission.addAgent(state.source)) {
        core.refuse('websocket', 'FB_OPAMP_OVERLOADED', 'Closed a connection past the limit of agents per source address', { connection: id, source: state.source, limit: core.opts.maxConnectionsPerSource });
        conn.close!(1013, 'connection limit per source address reached');
        return;
      }
      state.identified = true;
    }
    const reply = core.opts.handler.handleMessage(conn, msg);
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
          this.core.opts.logger.info({ connection: state.conn.id }, 'Terminated unresponsive WebSocket');
          ws.terminate();
          continue;
        }
        state.alive = false;
        ws.ping();
      } catch (err) {
        this.core.logError(err, 'Unexpected error pinging a WebSocket', { connection: state.conn.id });
        ws.terminate();
      }
    }
  }
}
