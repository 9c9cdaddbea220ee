/**
 * A deliberately low-level OpAMP peer over `ws` and fetch, for sending exactly the bytes a test
 * wants (including malformed ones). Real-client behaviour is tested with opamp-go, the Elastic
 * client and the Python client; this one is for the protocol edges.
 */
import { randomBytes } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { WebSocket } from 'ws';
import { Agent as UndiciAgent } from 'undici';
import { pb, type ServerToAgent } from '../../src/opamp/messages.js';
import { uidToString } from '../../src/opamp/uid.js';

export function randomUid(): Buffer {
  const b = randomBytes(16);
  b[6] = 0x70 | (b[6]! & 0x0f);
  b[8] = 0x80 | (b[8]! & 0x3f);
  return b;
}

export function encodeAgent(p: Record<string, unknown>): Buffer {
  return Buffer.from(pb.AgentToServer.encode(p).finish());
}

export class RawWsAgent {
  readonly received: ServerToAgent[] = [];
  readonly uid: Buffer;
  closeInfo: { code: number; reason: string } | null = null;
  seq = 0;
  #ws: WebSocket;
  #waiters: (() => void)[] = [];

  private constructor(ws: WebSocket, uid: Buffer) {
    this.#ws = ws;
    this.uid = uid;
    ws.on('message', (data: Buffer) => {
      this.received.push(pb.ServerToAgent.decode(data[0] === 0 ? data.subarray(1) : data));
      this.#wake();
    });
    ws.on('close', (code, reason) => {
      this.closeInfo = { code, reason: reason.toString() };
      this.#wake();
    });
    ws.on('error', () => this.#wake());
  }

  static connect(url: string, uid: Buffer = randomUid(), headers: Record<string, string> = {}): Promise<RawWsAgent> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false, headers });
      const agent = new RawWsAgent(ws, uid);
      ws.once('open', () => resolve(agent));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode} ${JSON.stringify(res.headers)}`)));
      ws.once('error', reject);
    });
  }

  get uidString(): string {
    return uidToString(this.uid);
  }

  get ws(): WebSocket {
    return this.#ws;
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Sends an AgentToServer with this agent's uid and the next sequence number, header included. */
  send(fields: Record<string, unknown> = {}): void {
    this.sendRaw(Buffer.concat([Buffer.from([0]), encodeAgent({ instanceUid: this.uid, sequenceNum: this.seq++, capabilities: 1, ...fields })]));
  }

  sendRaw(data: Buffer | string, binary = true): void {
    this.#ws.send(data, { binary });
  }

  /** Waits until `n` messages were received in total (or rejects on close or timeout). */
  async waitForMessages(n: number, timeoutMs = 5000): Promise<ServerToAgent> {
    const deadline = Date.now() + timeoutMs;
    while (this.received.length < n) {
      if (this.closeInfo) throw new Error(`closed ${this.closeInfo.code} ${this.closeInfo.reason} after ${this.received.length} messages`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for message ${n}; got ${this.received.length}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return this.received[n - 1]!;
  }

  async waitForClose(timeoutMs = 5000): Promise<{ code: number; reason: string }> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closeInfo) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for close');
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return this.closeInfo;
  }

  close(): void {
    this.#ws.close();
  }

  terminate(): void {
    this.#ws.terminate();
  }
}

/** One OpAMP HTTP request; returns status, headers and the decoded ServerToAgent when 200. */
export async function httpPost(
  url: string,
  body: Buffer,
  opts: { gzip?: boolean; acceptGzip?: boolean; contentType?: string; method?: string; headers?: Record<string, string>; localAddress?: string } = {},
): Promise<{ status: number; headers: Headers; message: ServerToAgent | null; text: string }> {
  const headers: Record<string, string> = { 'Content-Type': opts.contentType ?? 'application/x-protobuf', ...opts.headers };
  let payload = body;
  if (opts.gzip) {
    payload = gzipSync(body);
    headers['Content-Encoding'] = 'gzip';
  }
  headers['Accept-Encoding'] = opts.acceptGzip ? 'gzip' : 'identity';
  // A source address of the loopback range other than 127.0.0.1 (per-source limits), through its own dispatcher.
  const dispatcher = opts.localAddress ? localDispatcher(opts.localAddress) : undefined;
  const res = await fetch(url, { method: opts.method ?? 'POST', headers, body: opts.method === 'GET' ? undefined : payload, ...(dispatcher ? { dispatcher } : {}) } as RequestInit);
  // fetch transparently gunzips; read raw bytes either way.
  const raw = Buffer.from(await res.arrayBuffer());
  let message: ServerToAgent | null = null;
  if (res.status === 200) {
    let b = raw;
    if (b[0] === 0x1f && b[1] === 0x8b) b = gunzipSync(b);
    message = pb.ServerToAgent.decode(b);
  }
  return { status: res.status, headers: res.headers, message, text: res.status === 200 ? '' : raw.toString() };
}

const dispatchers = new Map<string, UndiciAgent>();
function localDispatcher(localAddress: string): UndiciAgent {
  let d = dispatchers.get(localAddress);
  if (!d) dispatchers.set(localAddress, (d = new UndiciAgent({ localAddress })));
  return d;
}
