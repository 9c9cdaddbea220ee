/**
 * The standalone bridge as a real child process — `node <build>/src/main.js standalone ...`, the
 * command users run — on fixed loopback ports chosen up front, so that it can be stopped (SIGTERM
 * or SIGKILL) and started again on the same ports and manifest folder while agents stay connected
 * and reconnect by themselves.
 *
 * ```ts
 * const bridge = await startBridgeProcess({ manifests: { ...bearerAuthManifests(token), 'all.yaml': collectorYaml('all', {}, cfg) } });
 * // agents connect to bridge.opampWsUrl / bridge.opampHttpUrl with `Authorization: Bearer ${token}`
 * await bridge.restart('SIGKILL'); // same ports, same folder; resolves when the new incarnation is ready
 * await bridge.stop();
 * ```
 *
 * The sources are compiled once per content (tsc, into `.cache/bridge-dist/<hash>/`, reused while
 * src/ is unchanged), so parallel test workers never read a half-written build. The process exits
 * when its stdin closes (exit-on-stdin-close.mjs), so a dying test runner never leaves it behind.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AgentView, CollectorView } from '../../src/fleet/view-types.js';
import { adminClient, createManifestFolder, writeAdminToken } from './bridge-client.js';
import { spawnJsonLines, type JsonLinesChild } from './child-process.js';

export { collectorYaml } from './standalone.js';
export type { AgentView, CollectorView } from '../../src/fleet/view-types.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BUILD_ROOT = join(repoRoot, '.cache', 'bridge-dist');
const STDIN_GUARD = join(repoRoot, 'test', 'harness', 'exit-on-stdin-close.mjs');

export interface BridgeProcess {
  /** ws://127.0.0.1:PORT/v1/opamp — the same on every incarnation. */
  opampWsUrl: string;
  /** http://127.0.0.1:PORT/v1/opamp (same port as opampWsUrl). */
  opampHttpUrl: string;
  /** http://127.0.0.1:PORT (admin API, /metrics). */
  apiUrl: string;
  manifestsDir: string;
  /** JSON log lines of every incarnation, in order (each with `incarnation: n`, starting at 1). At most 200,000 are kept (the oldest are dropped). */
  logs: Record<string, unknown>[];
  /** How many times the process was started (1 after startBridgeProcess). */
  readonly incarnation: number;
  /** The current process's pid. */
  readonly pid: number | undefined;
  writeManifest(name: string, text: string): Promise<void>;
  removeManifest(name: string): Promise<void>;
  getAgents(): Promise<AgentView[]>;
  getAgent(uid: string): Promise<AgentView | undefined>;
  getCollectors(): Promise<{ collectors: CollectorView[]; invalidFiles: { path: string; issues: string[] }[] }>;
  getCollector(name: string, ns?: string): Promise<CollectorView | undefined>;
  metricsText(): Promise<string>;
  /** Headers that admit to the admin API and /metrics (`Authorization` with `adminToken`, else none). */
  adminHeaders: Record<string, string>;
  /** Stops the process that way (SIGTERM: waits for its graceful exit, at most 15 s, then SIGKILL), starts it again on the same ports and folder, resolves when it is ready. */
  restart(signal: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** Stops it for good (SIGTERM, then SIGKILL after 15 s) and removes the temporary manifest folder (when the harness made it). */
  stop(): Promise<void>;
  /** Last events and stderr tail of the current process, for error messages. */
  describe(): string;
}

export interface BridgeProcessOptions {
  /** File name → YAML text, written into a new temporary folder. */
  manifests?: Record<string, string>;
  /** --heartbeat-interval (seconds); default 2. Also what the bridge offers agents that accept connection settings. */
  heartbeatIntervalSeconds?: number;
  /** More command-line flags for `fleetbridge standalone`. */
  extraArgs?: string[];
  /** FLEETBRIDGE_LOG_LEVEL of the process; default FLEETBRIDGE_TEST_LOG_LEVEL or 'debug'. */
  logLevel?: string;
  /** More environment variables of the process. */
  env?: Record<string, string>;
  /** Bound on each start-up; default 30 s. */
  startTimeoutMs?: number;
  /**
   * An admin token, passed with --admin-token-file: the admin API and /metrics then need it, and
   * the getters send it. Default: none (the admin endpoint is open, on loopback).
   */
  adminToken?: string;
}

const MAX_LOGS = 200_000;

// ---------------------------------------------------------------------------------------------
// Build

/** sha256 (12 hex) over tsconfig.json, package.json and every file under src/ (names and contents). */
function sourceHash(): string {
  const h = createHash('sha256');
  const files: string[] = [join(repoRoot, 'tsconfig.json'), join(repoRoot, 'package.json')];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) files.push(p);
    }
  };
  walk(join(repoRoot, 'src'));
  for (const f of files) {
    const body = readFileSync(f);
    h.update(`${relative(repoRoot, f)}\0${body.length}\0`);
    h.update(body);
  }
  return h.digest('hex').slice(0, 12);
}

let building: Promise<string> | undefined;

/**
 * Compiles the bridge (tsc -p tsconfig.json) into `.cache/bridge-dist/<hash>/` unless that build
 * exists, and resolves with the path of its `src/main.js`. Type errors are reported on stderr but do
 * not stop the run when tsc emitted JavaScript (`npm test` type-checks first anyway).
 */
export function buildBridge(): Promise<string> {
  // A prebuilt bridge (e.g. another revision's build) instead of compiling src/.
  const prebuilt = process.env['FLEETBRIDGE_TEST_BRIDGE_MAIN'];
  if (prebuilt) return Promise.resolve(resolve(prebuilt));
  building ??= doBuild().catch((err: unknown) => {
    building = undefined;
    throw err;
  });
  return building;
}

async function doBuild(): Promise<string> {
  const hash = sourceHash();
  const out = join(BUILD_ROOT, hash);
  const main = join(out, 'src', 'main.js');
  if (existsSync(main)) return main;
  await mkdir(BUILD_ROOT, { recursive: true });
  const tmp = join(BUILD_ROOT, `.tmp-${hash}-${process.pid}-${Date.now()}`);
  try {
    const result = await new Promise<{ code: number; output: string }>((ok) => {
      execFile(
        process.execPath,
        [join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(repoRoot, 'tsconfig.json'), '--outDir', tmp],
        { cwd: repoRoot, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 },
        (err, stdout, stderr) => ok({ code: err ? ((err as { code?: number }).code ?? 1) : 0, output: `${stdout}${stderr}` }),
      );
    });
    if (!existsSync(join(tmp, 'src', 'main.js'))) throw new Error(`tsc produced no ${join(tmp, 'src', 'main.js')} (exit ${result.code}):\n${result.output.slice(-8000)}`);
    if (result.code !== 0) process.stderr.write(`[bridge-process] tsc reported errors (building anyway):\n${result.output.slice(-4000)}\n`);
    try {
      await rename(tmp, out);
    } catch (err) {
      // Another worker finished the same build first: use theirs.
      if (!existsSync(main)) throw err;
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  // Best effort: drop builds of other sources that nobody touched for an hour.
  for (const name of readdirSync(BUILD_ROOT)) {
    if (name === hash) continue;
    const p = join(BUILD_ROOT, name);
    try {
      if (Date.now() - statSync(p).mtimeMs > 3_600_000) await rm(p, { recursive: true, force: true });
    } catch {
      // gone meanwhile
    }
  }
  return main;
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** A currently free TCP port on 127.0.0.1 (closed again; the caller binds it soon after). */
export async function freePort(): Promise<number> {
  return new Promise<number>((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => ok(port));
    });
  });
}

/**
 * Polls `pred` every intervalMs (default 100) until it returns something other than
 * undefined/null/false, and resolves with that; a throwing `pred` counts as "not yet". Rejects after
 * timeoutMs with `what`, the last value or error, and `describe()`.
 */
export async function waitUntil<T>(
  pred: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  opts: { timeoutMs: number; intervalMs?: number; what?: string; describe?: () => string | Promise<string> },
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let last: unknown;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await pred();
      if (v !== undefined && v !== null && v !== false) return v;
      last = v;
      lastErr = undefined;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() >= deadline) {
      const why = lastErr !== undefined ? `last error: ${lastErr instanceof Error ? lastErr.message : String(lastErr)}` : `last value: ${String(last)}`;
      const extra = opts.describe ? `\n${await opts.describe()}` : '';
      throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${opts.what ?? pred.toString().slice(0, 200)}\n${why}${extra}`);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 100));
  }
}

/** An OpAMPBridge manifest (standalone mode reads spec.auth, spec.tls, spec.limits, ...). */
export function opampBridgeYaml(spec: object, name = 'fb', namespace = 'default'): string {
  return `apiVersion: fleetbridge.dev/v1alpha1\nkind: OpAMPBridge\nmetadata: { name: ${name}, namespace: ${namespace} }\nspec: ${JSON.stringify(spec)}\n`;
}

/** A Secret manifest with stringData. */
export function secretYaml(name: string, stringData: Record<string, string>, namespace = 'default'): string {
  return `apiVersion: v1\nkind: Secret\nmetadata: { name: ${name}, namespace: ${namespace} }\nstringData: ${JSON.stringify(stringData)}\n`;
}

/**
 * Authentication on: an OpAMPBridge with `auth.mode: bearerToken` whose tokens come from the Secret
 * `agent-tokens` (key `token`). Agents must send `Authorization: Bearer <token>` (see bearerHeaders).
 * Files: `bridge.yaml` and `agent-tokens.yaml`.
 */
export function bearerAuthManifests(token: string, opts: { secretName?: string; bridgeSpec?: object } = {}): Record<string, string> {
  const secretName = opts.secretName ?? 'agent-tokens';
  return {
    'bridge.yaml': opampBridgeYaml({ ...opts.bridgeSpec, auth: { mode: 'bearerToken', bearerToken: { secretName } } }),
    [`${secretName}.yaml`]: secretYaml(secretName, { token }),
  };
}

/** The header agents send with bearerAuthManifests(token). */
export function bearerHeaders(token: string): Record<string, string> {
  return { Authorization: `Bearer ${token}` };
}

/** Value of a Prometheus sample in /metrics text (`name{labels} value`), or undefined. `labels` is matched exactly as written, e.g. `transport="websocket"`. */
export function metricValue(text: string, name: string, labels?: string): number | undefined {
  const prefix = labels === undefined ? `${name} ` : `${name}{${labels}} `;
  for (const line of text.split('\n')) if (line.startsWith(prefix)) return Number(line.slice(prefix.length).trim().split(' ')[0]);
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// The process

export async function startBridgeProcess(opts: BridgeProcessOptions = {}): Promise<BridgeProcess> {
  const main = await buildBridge();
  const folder = await createManifestFolder('fleetbridge-proc-', opts.manifests);
  const dir = folder.dir;
  const [opampPort, httpPort] = [await freePort(), await freePort()];
  const token = opts.adminToken !== undefined ? await writeAdminToken(opts.adminToken) : undefined;
  const adminHeaders: Record<string, string> = token?.headers ?? {};
  const args = [
    '--import',
    STDIN_GUARD,
    main,
    'standalone',
    '--manifests',
    dir,
    '--host',
    '127.0.0.1',
    '--opamp-port',
    String(opampPort),
    '--http-port',
    String(httpPort),
    '--heartbeat-interval',
    String(opts.heartbeatIntervalSeconds ?? 2),
    ...(token ? ['--admin-token-file', token.file] : []),
    ...(opts.extraArgs ?? []),
  ];
  const env = {
    FLEETBRIDGE_LOG_FORMAT: 'json',
    FLEETBRIDGE_LOG_LEVEL: opts.logLevel ?? process.env['FLEETBRIDGE_TEST_LOG_LEVEL'] ?? 'debug',
    ...opts.env,
  };
  const logs: Record<string, unknown>[] = [];
  let incarnation = 0;
  let proc: JsonLinesChild | undefined;
  let copied = 0;
  let stopped = false;
  const apiUrl = `http://127.0.0.1:${httpPort}`;

  const startOnce = async (): Promise<void> => {
    incarnation++;
    const n = incarnation;
    const p = spawnJsonLines(process.execPath, args, { env, cwd: repoRoot, name: `fleetbridge#${n}`, defaultTimeoutMs: opts.startTimeoutMs ?? 30_000 });
    proc = p;
    copied = 0;
    // Copy this incarnation's lines into the shared log as they arrive (the child's event list keeps growing too; trim it).
    const pump = () => {
      for (; copied < p.events.length; copied++) {
        logs.push({ incarnation: n, ...p.events[copied] });
      }
      if (logs.length > MAX_LOGS) logs.splice(0, logs.length - MAX_LOGS);
    };
    const timer = setInterval(pump, 200);
    timer.unref();
    void p.exited.then(() => {
      clearInterval(timer);
      pump();
    });
    await p.waitFor((e) => e['msg'] === 'Fleetbridge standalone started', { timeoutMs: opts.startTimeoutMs ?? 30_000 });
    pump();
  };

  /** Starts, retrying while the old incarnation's ports are not free yet. */
  const start = async (): Promise<void> => {
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        await startOnce();
        return;
      } catch (err) {
        const addrInUse = proc !== undefined && /EADDRINUSE/.test(proc.describe());
        if (proc) await killAndWait(proc, 'SIGKILL');
        if (!addrInUse || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  };

  const killAndWait = async (p: JsonLinesChild, signal: 'SIGTERM' | 'SIGKILL'): Promise<void> => {
    p.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([p.exited.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), 15_000)))]);
    clearTimeout(timer);
    if (timedOut) {
      p.kill('SIGKILL');
      await p.exited;
    }
  };

  await start();

  const bridge: BridgeProcess = {
    ...adminClient(apiUrl, adminHeaders, { timeoutMs: 10_000 }),
    opampWsUrl: `ws://127.0.0.1:${opampPort}/v1/opamp`,
    opampHttpUrl: `http://127.0.0.1:${opampPort}/v1/opamp`,
    apiUrl,
    manifestsDir: dir,
    logs,
    adminHeaders,
    get incarnation() {
      return incarnation;
    },
    get pid() {
      return proc?.pid;
    },
    writeManifest: folder.writeManifest,
    removeManifest: folder.removeManifest,
    async restart(signal) {
      if (stopped) throw new Error('restart(): the bridge process was stopped');
      if (proc) await killAndWait(proc, signal);
      await start();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      if (proc) await killAndWait(proc, 'SIGTERM');
      await folder.remove();
      await token?.remove();
    },
    describe() {
      return proc ? proc.describe() : '(not started)';
    },
  };
  return bridge;
}
