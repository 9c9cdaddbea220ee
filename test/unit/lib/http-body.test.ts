/**
 * readBody and gunzipBody against a real HTTP server: the whole body under the cap; a refusal
 * before reading when Content-Length is over it, and as soon as a chunked body passes it.
 */
import { createServer, request, type Server } from 'node:http';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BodyTooLargeError, gunzipBody, readBody } from '../../../src/lib/http-body.js';

const LIMIT = 1000;
let server: Server;
let port: number;

beforeAll(async () => {
  server = createServer((req, res) => {
    const custom = req.url === '/custom';
    readBody(req, LIMIT, custom ? { tooLarge: (n) => new RangeError(`over ${n}`) } : {}).then(
      (body) => res.writeHead(200).end(`read ${body.length}`),
      (err: Error) => {
        req.resume();
        res.writeHead(413, { Connection: 'close' }).end(`${err.name}: ${err.message}`);
      },
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as { port: number }).port;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

/** Sends `chunks` (chunked when `length` is not given) and returns status and body. */
function send(path: string, chunks: Buffer[], length?: number): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', headers: length === undefined ? {} : { 'Content-Length': length } }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, text }));
    });
    req.on('error', reject);
    for (const c of chunks) req.write(c);
    req.end();
  });
}

describe('readBody', () => {
  it('reads a body up to the cap', async () => {
    expect(await send('/', [Buffer.alloc(600), Buffer.alloc(400)])).toEqual({ status: 200, text: 'read 1000' });
  });

  it('refuses a declared length over the cap, and a chunked body once it passes it', async () => {
    expect(await send('/', [Buffer.alloc(1001)], 1001)).toEqual({ status: 413, text: 'BodyTooLargeError: body exceeds 1000 bytes' });
    expect(await send('/', [Buffer.alloc(600), Buffer.alloc(600)])).toEqual({ status: 413, text: 'BodyTooLargeError: body exceeds 1000 bytes' });
  });

  it("rejects with the caller's error when given one", async () => {
    expect(await send('/custom', [Buffer.alloc(2000)], 2000)).toEqual({ status: 413, text: 'RangeError: over 1000' });
  });
});

describe('gunzipBody', () => {
  it('inflates up to the cap, refuses past it, and passes on invalid gzip', async () => {
    expect((await gunzipBody(gzipSync(Buffer.alloc(1000)), LIMIT)).length).toBe(1000);
    await expect(gunzipBody(gzipSync(Buffer.alloc(1001)), LIMIT)).rejects.toBeInstanceOf(BodyTooLargeError);
    await expect(gunzipBody(Buffer.from('not gzip'), LIMIT)).rejects.toThrow(/incorrect header check/);
  });
});
