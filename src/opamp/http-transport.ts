/**
 * The plain HTTP transport of the OpAMP endpoint (OpAMP §Plain HTTP Transport): one POSTed
 * AgentToServer, one ServerToAgent answer; and the file requests served on the same port.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { BodyTooLargeError, gunzipBody, readBody } from '../lib/http-body.js';
import type { Admission } from './admission.js';
import { decodeAgentToServer, encodeServerToAgent } from './codec.js';
import type { AgentConnection, VerifiedIdentity } from './connection.js';
import { OpampProtocolError, type OpampErrorCode } from './errors.js';
import type { AgentToServer } from './messages.js';
import { PROTOBUF_CONTENT_TYPE, type OpampServerOptions, type ServerCore } from './options.js';

const gzipAsync = promisify(gzip);
/** Small answers (a poll's is ~20 bytes) are not worth a trip to the zlib thread pool. */
const GZIP_MIN_BYTES = 1024;

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

export class HttpTransport {
  constructor(
    private readonly core: ServerCore,
    private readonly admission: Admission,
  ) {}

  /** A request on the OpAMP path with a valid Host (the server checked both). */
  async handle(req: IncomingMessage, res: ServerResponse, endpoint: string): Promise<void> {
    const { core } = this;
    const { opts } = core;
    const fail = (status: number, code: OpampErrorCode, message: string, headers: Record<string, string> = {}) => {
      core.refuse('http', code, 'Refused OpAMP HTTP request', { error: message, status });
      req.resume();
      res.writeHead(status, { 'Content-Type': 'text/plain', Connection: 'close', ...headers }).end(message + '\n');
    };
    if (!opts.transports.includes('http')) return fail(405, 'FB_OPAMP_BAD_METHOD', 'the HTTP transport is disabled');
    // Per keep-alive socket: one agent's poll loop, never another agent's.
    const budget = this.admission.httpBudget(req.socket);
    if (!budget.takeMessage()) {
      // opamp-go clients honour 429 + Retry-After on HTTP (they ignore UNAVAILABLE).
      return fail(429, 'FB_OPAMP_RATE_LIMITED', `more than ${opts.maxMessagesPerSecond} requests per second on this connection`, { 'Retry-After': String(opts.retryAfterSeconds) });
    }
    if (req.method !== 'POST') return fail(405, 'FB_OPAMP_BAD_METHOD', `method ${req.method ?? ''} not allowed: POST an AgentToServer, or GET with Upgrade: websocket`, { Allow: 'POST, GET' });
    let verified: VerifiedIdentity | undefined;
    const authenticate = opts.authenticate;
    if (authenticate) {
      const r = await authenticate(req);
      if (!r.ok) {
        return fail(r.status, 'FB_OPAMP_UNAUTHENTICATED', r.reason, r.status === 401 ? { 'WWW-Authenticate': 'Bearer' } : r.status === 503 ? { 'Retry-After': String(opts.retryAfterSeconds) } : {});
      }
      verified = r.identity;
    }
    const ctype = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (ctype !== PROTOBUF_CONTENT_TYPE) return fail(415, 'FB_OPAMP_BAD_CONTENT_TYPE', `Content-Type must be ${PROTOBUF_CONTENT_TYPE}`);
    const encoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
    if (encoding !== 'identity' && encoding !== 'gzip') return fail(415, 'FB_OPAMP_BAD_ENCODING', `unsupported Content-Encoding ${encoding}`);
    // Read once: a change of the limit while this body arrives applies to the next request.
    const limit = opts.maxMessageBytes;
    let body: Buffer;
    try {
      body = await readBody(req, limit);
    } catch (err) {
      if (err instanceof BodyTooLargeError) return fail(413, 'FB_OPAMP_TOO_LARGE', `body exceeds ${limit} bytes`);
      req.destroy();
      return;
    }
    if (encoding === 'gzip') {
      try {
        body = await gunzipBody(body, limit);
      } catch (err) {
        if (err instanceof BodyTooLargeError) return fail(413, 'FB_OPAMP_TOO_LARGE', `decompressed body exceeds ${limit} bytes`);
        return fail(400, 'FB_OPAMP_BAD_ENCODING', `body is not valid gzip: ${(err as Error).message}`);
      }
    }
    if (!budget.takeBytes(body.length)) {
      return fail(429, 'FB_OPAMP_RATE_LIMITED', `more than ${opts.maxBytesPerSecond} bytes per second on this connection`, { 'Retry-After': String(opts.retryAfterSeconds) });
    }
    let msg: AgentToServer;
    try {
      msg = decodeAgentToServer(body);
    } catch (err) {
      if (err instanceof OpampProtocolError) return fail(err.httpStatus, err.code as OpampErrorCode, err.message);
      throw err;
    }
    const conn: AgentConnection = {
      id: core.nextConnectionId(),
      transport: 'http',
      endpoint,
      remoteAddress: req.socket.remoteAddress ?? '',
      authorization: req.headers.authorization,
      verified,
    };
    const reply = opts.handler.handleMessage(conn, msg);
    let out = Buffer.from(encodeServerToAgent(reply));
    const headers: Record<string, string> = { 'Content-Type': PROTOBUF_CONTENT_TYPE };
    if (out.length >= GZIP_MIN_BYTES && acceptsGzip(req.headers['accept-encoding'])) {
      out = await gzipAsync(out);
      headers['Content-Encoding'] = 'gzip';
    }
    headers['Content-Length'] = String(out.length);
    res.writeHead(200, headers).end(out);
  }

  /** A request under the files prefix: authenticated like an OpAMP request, then handed over. */
  async handleFile(req: IncomingMessage, res: ServerResponse, path: string, files: NonNullable<OpampServerOptions['files']>): Promise<void> {
    let identity: VerifiedIdentity | undefined;
    const authenticate = this.core.opts.authenticate;
    if (authenticate) {
      const r = await authenticate(req);
      if (!r.ok) {
        this.core.opts.logger.warn({ path, source: req.socket.remoteAddress, status: r.status, reason: r.reason }, 'Refused a file request');
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
