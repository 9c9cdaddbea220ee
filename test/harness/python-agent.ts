/**
 * Harness for the Python test agent (test/agents/python-agent/agent.py), which runs the real
 * `opentelemetry-opamp-client` from PyPI over HTTP.
 *
 * - `findPython3()` says quickly whether a usable python3 exists (for describe.skip at collect time).
 * - `ensurePythonAgent()` builds (once) and reuses a venv in
 *   `.cache/venv-python-agent-<first 12 hex of sha256(requirements.txt)>`.
 * - `startPythonAgent()` spawns the agent through the shared JSON-lines driver and waits for its
 *   `started` event.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnJsonLines, type JsonLinesChild, type JsonObject } from './child-process.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '../..');
export const pythonAgentDir = path.join(repoRoot, 'test/agents/python-agent');
const agentScript = path.join(pythonAgentDir, 'agent.py');
const requirementsFile = path.join(pythonAgentDir, 'requirements.txt');
const READY_MARKER = '.fleetbridge-ready';
/** opentelemetry-opamp-client 0.5b0 declares Requires-Python >=3.10. */
const MIN_PYTHON: [number, number] = [3, 10];

interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Set when the program could not be started at all (e.g. ENOENT). */
  spawnError?: NodeJS.ErrnoException;
}

function run(cmd: string, args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<ExecResult> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      {
        cwd: opts.cwd ?? repoRoot,
        timeout: opts.timeoutMs ?? 60_000,
        maxBuffer: 16 * 1024 * 1024,
        env: { ...process.env, PIP_DISABLE_PIP_VERSION_CHECK: '1', PIP_NO_INPUT: '1', PYTHONDONTWRITEBYTECODE: '1' },
      },
      (error, stdout, stderr) => {
        const err = error as (NodeJS.ErrnoException & { code?: unknown }) | null;
        if (err && typeof err.code === 'string') {
          resolve({ code: null, stdout: String(stdout), stderr: String(stderr), spawnError: err });
          return;
        }
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

async function exists(p: string): Promise<boolean> {
  try {
    await access(p);
    return true;
  } catch {
    return false;
  }
}

export type Python3Probe = { ok: true; python3: string; version: string } | { ok: false; reason: string };

/**
 * Finds the base interpreter: $FLEETBRIDGE_PYTHON if set, else `python3` on PATH. Fast (one exec).
 */
export async function findPython3(): Promise<Python3Probe> {
  const python3 = process.env.FLEETBRIDGE_PYTHON || 'python3';
  const res = await run(python3, ['-c', 'import sys; print("%d.%d.%d" % sys.version_info[:3])'], { timeoutMs: 20_000 });
  if (res.spawnError) {
    return { ok: false, reason: `${python3} not found (${res.spawnError.code}); the Python OpAMP client test needs python3 >= ${MIN_PYTHON.join('.')}` };
  }
  if (res.code !== 0) {
    return { ok: false, reason: `${python3} failed to run (exit ${res.code}): ${res.stderr.trim()}` };
  }
  const version = res.stdout.trim();
  const [major = 0, minor = 0] = version.split('.').map(Number);
  if (major < MIN_PYTHON[0] || (major === MIN_PYTHON[0] && minor < MIN_PYTHON[1])) {
    return { ok: false, reason: `${python3} is ${version}; opentelemetry-opamp-client needs >= ${MIN_PYTHON.join('.')}` };
  }
  return { ok: true, python3, version };
}

export async function pythonAgentVenvDir(): Promise<string> {
  const requirements = await readFile(requirementsFile);
  const digest = createHash('sha256').update(requirements).digest('hex').slice(0, 12);
  return path.join(repoRoot, '.cache', `venv-python-agent-${digest}`);
}

async function venvWorks(python: string): Promise<boolean> {
  if (!(await exists(python))) return false;
  const res = await run(python, ['-c', 'import opentelemetry._opamp.agent, yaml'], { timeoutMs: 30_000 });
  return res.code === 0;
}

/**
 * Returns the venv's interpreter, creating the venv and pip-installing requirements.txt the first
 * time (needs PyPI; allow a few minutes). Later calls reuse it after a quick import check.
 * Returns null only when no usable python3 exists (missing, or older than 3.10; see findPython3,
 * which honours $FLEETBRIDGE_PYTHON); throws when venv creation or pip install fails.
 */
export async function ensurePythonAgent(): Promise<{ python: string; venvDir: string; created: boolean } | null> {
  const probe = await findPython3();
  if (!probe.ok) return null;

  const venvDir = await pythonAgentVenvDir();
  const python = path.join(venvDir, 'bin', 'python');
  if ((await exists(path.join(venvDir, READY_MARKER))) && (await venvWorks(python))) {
    return { python, venvDir, created: false };
  }

  // Build in a private directory and rename it into place, so concurrent test workers never
  // see (or use) a half-installed venv. Running `<venv>/bin/python` directly works after a move.
  await mkdir(path.dirname(venvDir), { recursive: true });
  const tmpDir = `${venvDir}.tmp-${process.pid}-${Date.now()}`;
  try {
    const mk = await run(probe.python3, ['-m', 'venv', tmpDir], { timeoutMs: 120_000 });
    if (mk.code !== 0) {
      throw new Error(`python3 -m venv failed (exit ${mk.code}; is the venv module installed?):\n${mk.stderr}`);
    }
    const tmpPython = path.join(tmpDir, 'bin', 'python');
    const pip = await run(
      tmpPython,
      ['-m', 'pip', 'install', '--quiet', '--no-input', '--disable-pip-version-check', '-r', requirementsFile],
      { timeoutMs: 220_000 },
    );
    if (pip.code !== 0) {
      throw new Error(`pip install -r ${path.relative(repoRoot, requirementsFile)} failed (exit ${pip.code}):\n${pip.stderr}\n${pip.stdout}`);
    }
    await writeFile(path.join(tmpDir, READY_MARKER), `${new Date().toISOString()}\n`);
    if (await exists(venvDir)) {
      // Another worker finished first, or a stale broken venv is in the way.
      if ((await exists(path.join(venvDir, READY_MARKER))) && (await venvWorks(python))) {
        return { python, venvDir, created: false };
      }
      await rm(venvDir, { recursive: true, force: true });
    }
    await rename(tmpDir, venvDir);
  } finally {
    await rm(tmpDir, { recursive: true, force: true });
  }
  if (!(await venvWorks(python))) {
    throw new Error(`venv at ${venvDir} was created but cannot import the OpAMP client`);
  }
  return { python, venvDir, created: true };
}

export interface PythonAgentOptions {
  /** OpAMP HTTP URL, e.g. bridge.opampHttpUrl (http://127.0.0.1:PORT/v1/opamp). */
  endpoint: string;
  /** Non-identifying attributes (strings). */
  attrs?: Record<string, string>;
  /** Identifying attributes; service.name defaults to python-test-agent unless given here. */
  idAttrs?: Record<string, string>;
  /**
   * Canonical UUID. The 0.5b0 client has no option for it (always UUIDv7); the agent overrides
   * the client's private `_instance_uid`. Leave unset to test the library's own behaviour.
   */
  instanceUid?: string;
  /** OpAMPAgent(interval=...): seconds between heartbeat polls. Default 1 here (library: 30). */
  heartbeatSeconds?: number;
  /** OpAMPClient(timeout_millis=...). Default 5000 (library: 1000). */
  requestTimeoutMs?: number;
  /** OpAMPAgent(initial_backoff=...). Default 0.5 here (library: 1.0). */
  initialBackoffSeconds?: number;
  /** Extra HTTP headers sent with each request. */
  headers?: Record<string, string>;
  /** Hard lifetime of the process. Default 600 s. */
  maxLifetimeSeconds?: number;
  logLevel?: 'DEBUG' | 'INFO' | 'WARNING' | 'ERROR';
  /** Interpreter from ensurePythonAgent(); resolved (and the venv built if needed) when omitted. */
  python?: string;
  /** How long to wait for the `started` event. Default 30 s. */
  startTimeoutMs?: number;
}

/** Events written by agent.py (one JSON object per stdout line). */
export type PythonAgentEvent =
  | { event: 'started'; instanceUid: string; instanceUidSource: 'library' | 'override'; libraryVersion: string; pid: number }
  | { event: 'connected'; first: boolean; responses: number }
  | { event: 'connect_failed'; error: string; errorType: string }
  | {
      event: 'remote_config';
      hash: string;
      /** Text of the "" entry of the config map; null when there is no such entry. */
      body: string | null;
      contentType: string | null;
      /** Top-level keys of the body parsed as YAML. */
      keys: string[];
      files: string[];
      /** Same hash as the previous remote_config message. */
      repeat: boolean;
    }
  | { event: 'config_status_queued' | 'config_status_sent'; hash: string; status: 'APPLIED' | 'FAILED'; errorMessage: string }
  | { event: 'config_status_unchanged'; hash: string; status: 'APPLIED' | 'FAILED' }
  | { event: 'error'; source: 'server' | 'agent' | 'command'; message: string; type?: string }
  /**
   * A ServerToAgent that carried the ReportFullState flag and/or ConnectionSettingsOffers (seen by
   * the agent's response hook: the library acts on ReportFullState itself and never passes offers
   * to its callbacks).
   */
  | { event: 'server_message'; reportFullState: boolean; connectionSettings: boolean; heartbeatIntervalSeconds: number | null; remoteConfig: boolean }
  | { event: 'ack'; cmd: string; [k: string]: unknown }
  | { event: 'stopped'; reason: string; stopMs: number };

export type PythonAgentCommand =
  | { cmd: 'mode'; remoteConfig: 'apply' | 'fail' | 'ignore'; error?: string }
  | { cmd: 'stop' };

export type PythonAgent = JsonLinesChild<JsonObject> & {
  /** Canonical UUID the agent reports as instance_uid (from its `started` event). */
  instanceUid: string;
  libraryVersion: string;
};

function kv(flag: string, rec: Record<string, string> | undefined): string[] {
  return Object.entries(rec ?? {}).flatMap(([k, v]) => [flag, `${k}=${v}`]);
}

export async function startPythonAgent(opts: PythonAgentOptions): Promise<PythonAgent> {
  let python = opts.python;
  if (!python) {
    const env = await ensurePythonAgent();
    if (!env) throw new Error('python3 not available for the Python OpAMP test agent');
    python = env.python;
  }
  const args = [
    '-u',
    agentScript,
    '--endpoint',
    opts.endpoint,
    ...kv('--attr', opts.attrs),
    ...kv('--id-attr', opts.idAttrs),
    ...kv('--header', opts.headers),
    '--heartbeat-seconds',
    String(opts.heartbeatSeconds ?? 1),
    '--request-timeout-ms',
    String(opts.requestTimeoutMs ?? 5000),
    '--initial-backoff-seconds',
    String(opts.initialBackoffSeconds ?? 0.5),
    '--max-lifetime-seconds',
    String(opts.maxLifetimeSeconds ?? 600),
    '--log-level',
    opts.logLevel ?? 'INFO',
  ];
  if (opts.instanceUid) args.push('--instance-uid', opts.instanceUid);

  const driver = spawnJsonLines(python, args, { cwd: pythonAgentDir, name: 'python-opamp-agent' });
  let started: JsonObject;
  try {
    started = await driver.waitFor((e) => e.event === 'started', { timeoutMs: opts.startTimeoutMs ?? 30_000 });
  } catch (err) {
    await driver.stop();
    throw new Error(`python agent did not start: ${(err as Error).message}`);
  }
  return Object.assign(driver, {
    instanceUid: String(started.instanceUid),
    libraryVersion: String(started.libraryVersion),
  });
}
