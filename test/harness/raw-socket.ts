/**
 * Raw TCP peers for the OpAMP port, for requests no HTTP client sends: a malformed Host header, a
 * request line cut in half, a connection that sends nothing.
 */
import { connect, type Socket } from 'node:net';

export interface RawExchange {
  /** Everything the server sent, as latin1 text. */
  data: string;
  /** From the connect call to the server's close. */
  closedAfterMs: number;
  /** The status line of the first answer ("" when none). */
  statusLine: string;
}

/**
 * Connects (from `localAddress` when given), writes `text` (latin1: every char one byte) unless it
 * is empty, and resolves when the server closes the connection; rejects after `timeoutMs`
 * (default 10 s), destroying the socket. `track` receives the socket, for cleanup.
 */
export function rawExchange(port: number, host: string, text: string, opts: { localAddress?: string; timeoutMs?: number; track?: (s: Socket) => void } = {}): Promise<RawExchange> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const s = connect({ port, host, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    opts.track?.(s);
    let data = '';
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`connection not closed within ${timeoutMs} ms; got ${JSON.stringify(data.slice(0, 200))}`));
    }, timeoutMs);
    s.on('connect', () => {
      if (text) s.write(Buffer.from(text, 'latin1'));
    });
    s.on('data', (d) => (data += d.toString('latin1')));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(t);
      resolve({ data, closedAfterMs: Date.now() - started, statusLine: data.split('\r\n')[0] ?? '' });
    });
  });
}

/** A WebSocket upgrade request for `path` with exactly this Host header value. */
export function upgradeRequest(host: string, path = '/v1/opamp'): string {
  return `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;
}

/** An OpAMP HTTP POST of `body` with exactly this Host header value. */
export function postRequest(host: string, body: Buffer, path = '/v1/opamp'): string {
  return `POST ${path} HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/x-protobuf\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body.toString('latin1')}`;
}
