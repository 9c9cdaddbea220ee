import { describe, expect, it } from 'vitest';
import { createServer } from 'node:net';
import { ListenError, keepingAlive, listenOrExplain } from '../../src/bridge/listen.js';

const failing = (code: string) => () => Promise.reject(Object.assign(new Error(`listen ${code}: nope`), { code }));

describe('a listener that cannot bind', () => {
  it('names the address, the reason and what to change', async () => {
    await expect(listenOrExplain(failing('EADDRINUSE'), { name: 'admin API', host: '0.0.0.0', port: 8080, change: '--http-port' })).rejects.toThrow(
      'cannot listen on 0.0.0.0:8080 for the admin API endpoint: the address is already in use (EADDRINUSE); change --http-port',
    );
    await expect(listenOrExplain(failing('EACCES'), { name: 'OpAMP', host: '::', port: 443, change: '--opamp-port' })).rejects.toThrow(
      'cannot listen on [::]:443 for the OpAMP endpoint: permission denied (ports below 1024 need privileges) (EACCES); change --opamp-port',
    );
    await expect(listenOrExplain(failing('EADDRNOTAVAIL'), { name: 'OpAMP', host: '10.9.9.9', port: 4320, change: '--opamp-port' })).rejects.toThrow(
      'cannot listen on 10.9.9.9:4320 for the OpAMP endpoint: the address is not available on this host (EADDRNOTAVAIL); change --host (or --opamp-port)',
    );
    const err = await listenOrExplain(failing('EADDRINUSE'), { name: 'OpAMP', host: '127.0.0.1', port: 1, change: 'x' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ListenError);
    expect((err as ListenError).code).toBe('EADDRINUSE');
  });

  it('with a real listener in the way', async () => {
    const holder = createServer();
    const port = await new Promise<number>((resolve) => holder.listen(0, '127.0.0.1', () => resolve((holder.address() as { port: number }).port)));
    try {
      const other = createServer();
      const listen = () => new Promise<void>((resolve, reject) => {
        other.once('error', reject);
        other.listen(port, '127.0.0.1', () => resolve());
      });
      await expect(listenOrExplain(listen, { name: 'admin API', host: '127.0.0.1', port, change: '--http-port' })).rejects.toThrow(`cannot listen on 127.0.0.1:${port} for the admin API endpoint: the address is already in use (EADDRINUSE); change --http-port`);
    } finally {
      await new Promise<void>((resolve) => holder.close(() => resolve()));
    }
  });

  it('keepingAlive passes the result through', async () => {
    expect(await keepingAlive(Promise.resolve(3))).toBe(3);
    await expect(keepingAlive(Promise.reject(new Error('x')))).rejects.toThrow('x');
  });
});
