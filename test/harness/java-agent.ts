/**
 * Harness for the Java test agent (test/agents/java-agent), which runs the real OpenTelemetry Java
 * OpAMP client (`io.opentelemetry.contrib:opentelemetry-opamp-client`, from Maven Central) over
 * HTTP or WebSocket.
 *
 * - `javaAgentMissingReason()` says quickly whether `java` (>= 17) and `mvn` are there (for
 *   describe.skip at collect time; tests use skipUnlessOnCi with it, so on CI a missing tool fails).
 * - `ensureJavaAgent()` builds (once per content of test/agents/java-agent) with
 *   `mvn -q -B compile dependency:copy-dependencies`, its local repository in `.cache/m2`, into
 *   `.cache/java-agent/<first 12 hex of sha256(pom.xml, src/**)>/`: built in a temporary folder
 *   beside it under a lock file, then renamed into place, so concurrent test workers never see half
 *   a build (buildCached() of tools/build/cached-build.mjs). Maven is tried offline first
 *   (everything already in `.cache/m2`), then online.
 * - `startJavaAgent()` spawns the agent through the shared JSON-lines driver and waits for its
 *   `started` event.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { cp, readdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnJsonLines, type JsonLinesChild, type JsonObject } from './child-process.js';
import { buildCached, run } from '../../tools/build/cached-build.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '../..');
export const javaAgentDir = path.join(repoRoot, 'test/agents/java-agent');
const CACHE_ROOT = path.join(repoRoot, '.cache', 'java-agent');
/** Maven's local repository for these builds (git-ignored with the rest of .cache/). */
export const MAVEN_REPO = path.join(repoRoot, '.cache', 'm2');
const MAIN_CLASS = 'fleetbridge.testagent.JavaTestAgent';
const MIN_JAVA = 17;

interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
  spawnError?: NodeJS.ErrnoException;
}

function exec(cmd: string, args: string[], timeoutMs = 30_000): Promise<ExecResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: repoRoot, timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 }, (error, stdout, stderr) => {
      const err = error as (NodeJS.ErrnoException & { code?: unknown }) | null;
      if (err && typeof err.code === 'string') {
        resolve({ code: null, stdout: String(stdout), stderr: String(stderr), spawnError: err });
        return;
      }
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

function onPath(name: string): string | null {
  for (const dir of (process.env['PATH'] ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const p = path.join(dir, name);
    if (existsSync(p)) return p;
  }
  return null;
}

/** `java` to run the agent with: $FLEETBRIDGE_JAVA, else `java` on PATH. */
function javaCommand(): string {
  return process.env['FLEETBRIDGE_JAVA'] || 'java';
}

/**
 * Null when `java` (>= 17) and `mvn` are available, else why not. Synchronous and quick (a PATH
 * look-up; the version is checked by ensureJavaAgent), for use at collect time.
 */
export function javaAgentMissingReason(): string | null {
  const java = javaCommand();
  if (!(path.isAbsolute(java) ? existsSync(java) : onPath(java))) return `${java} not found on PATH; the Java OpAMP client test needs a JDK >= ${MIN_JAVA}`;
  if (!onPath('mvn')) return 'mvn (Apache Maven) not found on PATH; it builds the Java OpAMP test agent (test/agents/java-agent)';
  return null;
}

/** sha256 (12 hex) over the agent's pom.xml and every file under src/ (names and contents). */
export function javaAgentSourceHash(): string {
  const h = createHash('sha256');
  const files = [path.join(javaAgentDir, 'pom.xml')];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) files.push(p);
    }
  };
  walk(path.join(javaAgentDir, 'src'));
  for (const f of files) {
    const body = readFileSync(f);
    h.update(`${path.relative(javaAgentDir, f)}\0${body.length}\0`);
    h.update(body);
  }
  return h.digest('hex').slice(0, 12);
}

export interface JavaAgentBuild {
  dir: string;
  /** -cp value: the compiled agent and the runtime dependencies Maven copied. */
  classpath: string;
  built: boolean;
  /** Seconds the mvn build took (0 when cached). */
  seconds: number;
}

const classpathOf = (dir: string) => [path.join(dir, 'target', 'classes'), path.join(dir, 'target', 'dependency', '*')].join(path.delimiter);

let ensuring: Promise<JavaAgentBuild> | undefined;

/** Builds the agent unless this content was built before; see the file comment. Throws when java/mvn are missing or the build fails. */
export function ensureJavaAgent(opts: { log?: (line: string) => void; timeoutMs?: number } = {}): Promise<JavaAgentBuild> {
  ensuring ??= doEnsure(opts).catch((err: unknown) => {
    ensuring = undefined;
    throw err;
  });
  return ensuring;
}

async function doEnsure({ log = () => {}, timeoutMs = 15 * 60_000 }: { log?: (line: string) => void; timeoutMs?: number }): Promise<JavaAgentBuild> {
  const key = javaAgentSourceHash();
  let seconds = 0;
  let javaVersion = '';
  const { dir, built } = await buildCached({
    cacheRoot: CACHE_ROOT,
    key,
    timeoutMs,
    log,
    // Complete once build-info.json is there (written last, before the rename).
    outputs: ['build-info.json'],
    // Before the lock: java and mvn on PATH, java new enough.
    async prepare() {
      const missing = javaAgentMissingReason();
      if (missing) throw new Error(missing);
      const version = await exec(javaCommand(), ['-version']);
      const m = /version "(\d+)(?:\.(\d+))?/.exec(version.stderr + version.stdout);
      const major = m ? (m[1] === '1' ? Number(m[2]) : Number(m[1])) : 0;
      if (major < MIN_JAVA) throw new Error(`${javaCommand()} is ${m ? m[0] : 'of unknown version'}; the Java OpAMP test agent needs >= ${MIN_JAVA}:\n${version.stderr}`);
      javaVersion = version.stderr.split('\n')[0] ?? '';
    },
    async build({ tmp, deadline }) {
      await cp(path.join(javaAgentDir, 'pom.xml'), path.join(tmp, 'pom.xml'));
      await cp(path.join(javaAgentDir, 'src'), path.join(tmp, 'src'), { recursive: true });
      const mvnArgs = ['-q', '-B', '-Dstyle.color=never', `-Dmaven.repo.local=${MAVEN_REPO}`, '-f', path.join(tmp, 'pom.xml'), 'compile', 'dependency:copy-dependencies'];
      const logFile = path.join(tmp, 'mvn.log');
      const t0 = Date.now();
      let mode = 'offline';
      log(`building ${path.join(CACHE_ROOT, key)} with mvn (offline first) ...`);
      try {
        await run('mvn', ['-o', ...mvnArgs], { cwd: tmp, env: process.env, timeoutMs: Math.max(deadline - Date.now(), 1000), logFile });
      } catch {
        mode = 'online';
        log('offline build failed (something is not in .cache/m2 yet); building online from Maven Central ...');
        await run('mvn', mvnArgs, { cwd: tmp, env: process.env, timeoutMs: Math.max(deadline - Date.now(), 1000), logFile });
      }
      seconds = Math.round((Date.now() - t0) / 100) / 10;
      // Check: the agent runs and rejects a call without --endpoint (exit 2).
      const check = await exec(javaCommand(), ['-cp', classpathOf(tmp), MAIN_CLASS], 60_000);
      if (check.code !== 2 || !/--endpoint is required/.test(check.stderr)) {
        throw new Error(`the built Java agent does not run as expected (exit ${check.code}):\n${check.stderr}${check.stdout}`);
      }
      const jars = (await readdir(path.join(tmp, 'target', 'dependency'))).sort();
      log(`built in ${seconds} s (${mode}; ${jars.length} jars)`);
      return { mode, seconds, java: javaVersion, jars };
    },
  });
  return { dir, classpath: classpathOf(dir), built, seconds: built ? seconds : 0 };
}

export interface JavaAgentOptions {
  /** http(s)://... → the library's HttpRequestService; ws(s)://... → its WebSocketRequestService. */
  endpoint: string;
  /** Non-identifying attributes (strings). */
  attrs?: Record<string, string>;
  /** Identifying attributes; service.name defaults to java-test-agent unless given here. */
  idAttrs?: Record<string, string>;
  /** Canonical UUID for OpampClientBuilder.setInstanceUid; default: the library's own (a UUIDv7). */
  instanceUid?: string;
  /** Extra headers on every request (and the WebSocket upgrade), e.g. Authorization. */
  headers?: Record<string, string>;
  /** HTTP only: the fixed delay between polls. Default 1000 here (library: 30 s). */
  pollIntervalMs?: number;
  /** First delay of the client's retry backoff (doubling, no cap, no jitter). Default 1000 here (library: 30 s). */
  retryInitialMs?: number;
  /**
   * WebSocket only: notify the library's effective-config state on each new connection and after
   * ReportFullState, so that it sends its queued state (see JavaTestAgent.nudge). Default false.
   */
  nudgeWebSocket?: boolean;
  /** How long a stop waits for the library's AgentDisconnect to go out. Default: poll interval + 2 s. */
  disconnectWaitMs?: number;
  /** Hard lifetime of the process. Default 600 s. */
  maxLifetimeSeconds?: number;
  /** From ensureJavaAgent(); resolved (and built if needed) when omitted. */
  classpath?: string;
  /** How long to wait for the `started` event. Default 30 s. */
  startTimeoutMs?: number;
}

/** Events written by JavaTestAgent (one JSON object per stdout line). */
export type JavaAgentEvent =
  | { event: 'started'; instanceUid: string; instanceUidSource: 'library' | 'flag'; libraryVersion: string; transport: 'http' | 'websocket'; pid: number }
  | { event: 'connected'; first: boolean; responses: number; transport: 'http' | 'websocket' }
  | { event: 'connect_failed'; error: string; errorType: string | null }
  | { event: 'remote_config'; hash: string; body: string | null; contentType: string | null; files: string[]; repeat: boolean }
  | { event: 'config_status_queued'; hash: string; status: 'APPLIED' | 'FAILED'; errorMessage: string }
  /** Seen going out on the wire (delivered: HTTP 2xx answer, or the WebSocket accepted the frame). */
  | { event: 'config_status_sent'; hash: string; status: 'APPLIED' | 'FAILED'; errorMessage: string; seq: number }
  | { event: 'config_status_unchanged'; hash: string; status: 'APPLIED' | 'FAILED' }
  /** Every AgentToServer the library produced, as seen on the wire. */
  | {
      event: 'agent_to_server';
      seq: number;
      instanceUid: string;
      capabilities: number;
      described: boolean;
      remoteConfigStatus: { status: string; hash: string; errorMessage: string } | null;
      effectiveConfig: boolean;
      disconnect: boolean;
      flags: number;
      bytes: number;
      delivered: boolean;
      httpStatus: number | null;
      error: string | null;
    }
  /** Every ServerToAgent the library received. */
  | {
      event: 'server_to_agent';
      flags: number;
      reportFullState: boolean;
      connectionSettings: boolean;
      heartbeatIntervalSeconds: number | null;
      remoteConfig: boolean;
      remoteConfigHash: string | null;
      errorResponse: { type: string; message: string } | null;
      newInstanceUid: string | null;
    }
  | { event: 'ws_open' | 'ws_closing' | 'ws_closed' }
  | { event: 'ws_failure'; error: string }
  | { event: 'nudge'; reason: 'connected' | 'report_full_state' }
  | { event: 'error'; source: 'server' | 'agent' | 'command'; message: string; type?: string }
  | { event: 'ack'; cmd: string; [k: string]: unknown }
  | { event: 'stopped'; reason: string; stopMs: number; disconnectSeen: boolean; disconnectDelivered: boolean };

export type JavaAgentCommand = { cmd: 'mode'; remoteConfig: 'apply' | 'fail' | 'ignore'; error?: string } | { cmd: 'stop' };

export type JavaAgent = JsonLinesChild<JsonObject> & {
  /** Canonical UUID the agent reports as instance_uid (from its `started` event). */
  instanceUid: string;
  libraryVersion: string;
  transport: 'http' | 'websocket';
};

function kv(flag: string, rec: Record<string, string> | undefined): string[] {
  return Object.entries(rec ?? {}).flatMap(([k, v]) => [flag, `${k}=${v}`]);
}

export async function startJavaAgent(opts: JavaAgentOptions): Promise<JavaAgent> {
  const classpath = opts.classpath ?? (await ensureJavaAgent()).classpath;
  const args = [
    // Small and quick to start on a shared 2-core machine.
    '-XX:+UseSerialGC',
    '-XX:TieredStopAtLevel=1',
    '-Xmx96m',
    '-cp',
    classpath,
    MAIN_CLASS,
    '--endpoint',
    opts.endpoint,
    ...kv('--attr', opts.attrs),
    ...kv('--id-attr', opts.idAttrs),
    ...kv('--header', opts.headers),
    '--poll-interval-ms',
    String(opts.pollIntervalMs ?? 1000),
    '--retry-initial-ms',
    String(opts.retryInitialMs ?? 1000),
    '--nudge-websocket',
    String(opts.nudgeWebSocket ?? false),
    '--max-lifetime-seconds',
    String(opts.maxLifetimeSeconds ?? 600),
  ];
  if (opts.disconnectWaitMs !== undefined) args.push('--disconnect-wait-ms', String(opts.disconnectWaitMs));
  if (opts.instanceUid) args.push('--instance-uid', opts.instanceUid);

  const driver = spawnJsonLines(javaCommand(), args, { cwd: javaAgentDir, name: 'java-opamp-agent' });
  let started: JsonObject;
  try {
    started = await driver.waitFor((e) => e.event === 'started', { timeoutMs: opts.startTimeoutMs ?? 30_000 });
  } catch (err) {
    await driver.stop();
    throw new Error(`java agent did not start: ${(err as Error).message}`);
  }
  return Object.assign(driver, {
    instanceUid: String(started.instanceUid),
    libraryVersion: String(started.libraryVersion),
    transport: started.transport === 'websocket' ? ('websocket' as const) : ('http' as const),
  });
}
