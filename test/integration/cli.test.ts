/**
 * The `fleetbridge` command as a user runs it (what `npm start` does, on free ports): built
 * JavaScript, a real process, the shipped examples/ folder, SIGTERM to stop.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, execFileSync } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { spawnJsonLines, type JsonLinesChild } from '../harness/child-process.js';

let proc: JsonLinesChild | null = null;

beforeAll(() => {
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });
}, 120_000);
afterAll(async () => {
  await proc?.stop();
});

describe('fleetbridge standalone (the command)', () => {
  it('serves the examples folder, reports ready, and stops cleanly on SIGTERM', async () => {
    proc = spawnJsonLines(process.execPath, ['dist/src/main.js', 'standalone', '--manifests', 'examples', '--opamp-port', '0', '--http-port', '0', '--host', '127.0.0.1']);
    const started = (await proc.waitFor((e) => e['msg'] === 'Fleetbridge standalone started', { timeoutMs: 15_000 })) as { api: string; opamp: { websocket: string; http: string }; collectors: number; invalidFiles: number };
    expect(started.collectors).toBe(3);
    expect(started.invalidFiles).toBe(0);
    expect(started.opamp.websocket).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/v1\/opamp$/);
    expect((await fetch(`${started.api}/readyz`)).status).toBe(200);
    const body = (await (await fetch(`${started.api}/api/v1/collectors`)).json()) as { collectors: { name: string; valid: boolean }[] };
    expect(body.collectors.map((c) => `${c.name}:${c.valid}`).sort()).toEqual(['edge-staging-debug:true', 'edge:true', 'gateway:true']);
    expect(await (await fetch(`${started.api}/metrics`)).text()).toMatch(/fleetbridge_agents_connected\{transport="websocket"\} 0/);
    proc.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
    proc = null;
  });

  it('explains bad flags and exits 2', () => {
    let status = 0;
    let stderr = '';
    try {
      execFileSync(process.execPath, ['dist/src/main.js', 'standalone'], { stdio: 'pipe' });
    } catch (err) {
      status = (err as { status: number }).status;
      stderr = String((err as { stderr: Buffer }).stderr);
    }
    expect(status).toBe(2);
    expect(stderr).toMatch(/--manifests DIR is required/);
  });

  it('fails with a clear message when the manifest folder does not exist', () => {
    let status = 0;
    let stderr = '';
    try {
      execFileSync(process.execPath, ['dist/src/main.js', 'standalone', '--manifests', '/nonexistent/fleetbridge', '--opamp-port', '0', '--http-port', '0'], { stdio: 'pipe' });
    } catch (err) {
      status = (err as { status: number }).status;
      stderr = String((err as { stderr: Buffer }).stderr);
    }
    expect(status).toBe(1);
    expect(stderr).toBe("fleetbridge: cannot read the manifest folder /nonexistent/fleetbridge: ENOENT: no such file or directory, stat '/nonexistent/fleetbridge'\n");
  });
  // A port some other process holds: start-up ends with exit code 1 and one line on stderr naming
  // the address and the flag to change (the admin port used to end it with code 0 and no word).
  describe('a port already in use', () => {
    let holder: Server;
    let port: number;
    beforeAll(async () => {
      holder = createServer();
      port = await new Promise<number>((resolve, reject) => {
        holder.once('error', reject);
        holder.listen(0, '127.0.0.1', () => resolve((holder.address() as { port: number }).port));
      });
    });
    afterAll(async () => {
      await new Promise<void>((resolve) => holder.close(() => resolve()));
    });

    const run = (args: string[]) =>
      new Promise<{ status: number | null; stderr: string }>((resolve) => {
        execFile(process.execPath, ['dist/src/main.js', 'standalone', '--manifests', 'examples', '--host', '127.0.0.1', ...args], { timeout: 20_000 }, (err, _stdout, stderr) => {
          resolve({ status: err ? ((err as { code?: number | string }).code as number) ?? null : 0, stderr: String(stderr) });
        });
      });

    it('the admin port: exit 1, naming the address and --http-port', async () => {
      const r = await run(['--opamp-port', '0', '--http-port', String(port)]);
      expect(r.status).toBe(1);
      expect(r.stderr).toBe(`fleetbridge: cannot listen on 127.0.0.1:${port} for the admin API endpoint: the address is already in use (EADDRINUSE); change --http-port\n`);
    });

    it('the OpAMP port: exit 1, naming the address and --opamp-port', async () => {
      const r = await run(['--opamp-port', String(port), '--http-port', '0']);
      expect(r.status).toBe(1);
      expect(r.stderr).toBe(`fleetbridge: cannot listen on 127.0.0.1:${port} for the OpAMP endpoint: the address is already in use (EADDRINUSE); change --opamp-port\n`);
    });
  });
});
