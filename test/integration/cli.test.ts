/**
 * The `fleetbridge` command as a user runs it (what `npm start` does, on free ports): built
 * JavaScript, a real process, the shipped examples/ folder, SIGTERM to stop.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
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
});
