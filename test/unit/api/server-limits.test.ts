/**
 * The admin server against malformed and slow requests: a path that is not valid percent-encoding
 * is a 400 (not a 500 with a stack), and a connection that never completes its request head is
 * answered 408 and closed at the headers timeout.
 */
import { connect } from 'node:net';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdminServer } from '../../../src/api/server.js';

let server: AdminServer;
let port: number;

beforeAll(async () => {
  server = new AdminServer({
    source: { agents: () => [], agent: () => undefined, collectors: () => ({ collectors: [], invalidFiles: [] }), ready: () => true } as never,
    registry: new Registry(),
    logger: pino({ level: 'silent' }),
    headersTimeoutMs: 500,
    requestTimeoutMs: 1000,
  });
  ({ port } = await server.listen(0, '127.0.0.1'));
});
afterAll(() => server.close());

describe('admin server limits', () => {
  it('answers a path that is not valid percent-encoding with 400 and a reason', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/api/v1/agents/%E0%A4%A`);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toMatch(/percent-encoding/);
  });

  it('closes a connection that never completes its request head, with 408', async () => {
    const socket = connect(port, '127.0.0.1');
    await new Promise<void>((r) => socket.once('connect', () => r()));
    socket.write('GET /api/v1/agents HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    const t0 = Date.now();
    let answer = '';
    socket.on('data', (d: Buffer) => (answer += d.toString()));
    await new Promise<void>((r) => socket.once('close', () => r()));
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });
});
