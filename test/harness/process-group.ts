/**
 * Process groups for the Go-built tools the tests run (etcd, kube-apiserver, the OpAMP Supervisor,
 * the collector): each runs as the leader of its own process group (children inherit it), and
 * every live group is SIGKILLed when this process goes away:
 *   - on a normal exit, by an 'exit' handler;
 *   - on any other death (SIGKILL of the vitest worker included), by a tiny `sh` watchdog that holds
 *     a pipe from us and kills the last announced groups when the pipe closes.
 * Folders registered with trackDir() are removed the same two ways.
 *
 * Every wait here is bounded.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, createWriteStream, openSync, rmSync, type WriteStream } from 'node:fs';
import type { Socket } from 'node:net';

const liveGroups = new Set<number>();
const liveDirs = new Set<string>();
let watchdog: ChildProcess | undefined;
let exitHookInstalled = false;

function syncWatchdog(): void {
  if (!watchdog?.stdin || watchdog.stdin.destroyed) return;
  watchdog.stdin.write(`pids ${[...liveGroups].join(' ')}\ndirs ${[...liveDirs].join(' ')}\n`);
}

function installLifetimeGuards(): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const pgid of liveGroups) killGroup(pgid, 'SIGKILL');
      for (const d of liveDirs) rmSync(d, { recursive: true, force: true, maxRetries: 3 });
    });
  }
  if (watchdog) return;
  // Reads state lines until stdin reaches EOF (we exited or were killed), then kills the last
  // announced groups and removes the last announced dirs. Ignores terminal signals and lives in its
  // own session/group, so a signal to our group does not take it down first.
  const script = [
    "trap '' INT HUP TERM",
    'set -f',
    'p=; d=',
    'while IFS= read -r l; do',
    '  case $l in "pids "*) p=${l#pids } ;; "dirs "*) d=${l#dirs } ;; esac',
    'done',
    'for x in $p; do kill -KILL "-$x" 2>/dev/null; done', // dash's kill takes no '--'
    '[ -n "$d" ] && { sleep 0.3; rm -rf -- $d; }',
    'exit 0',
  ].join('\n');
  const w = spawn('/bin/sh', ['-c', script], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
  w.on('error', () => {
    watchdog = undefined; // no sh: the exit hook still covers normal exits
  });
  w.stdin?.on('error', () => {});
  w.unref();
  (w.stdin as unknown as Socket | null)?.unref?.();
  watchdog = w;
}

/** Removes `dir` when this process goes away (unless untrackDir() came first). */
export function trackDir(dir: string): void {
  liveDirs.add(dir);
  installLifetimeGuards();
  syncWatchdog();
}

export function untrackDir(dir: string): void {
  liveDirs.delete(dir);
  syncWatchdog();
}

export function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // gone already
  }
}

/** Resolves true when `p` settles within `ms`, false otherwise; leaves no timer behind (it would keep the process alive). */
export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p.then(() => true), new Promise<false>((res) => (timer = setTimeout(() => res(false), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

export interface GroupProcess {
  /** The leader's pid (= the group id); -1 when it could not be started. */
  readonly pid: number;
  /** Resolves with the exit code (null when killed by a signal or not started). */
  readonly exited: Promise<number | null>;
  hasExited(): boolean;
  /** The last `limit` characters of stdout+stderr, interleaved as received ('' with `outputTo: 'file'`). */
  output(): string;
  /** Sends `signal` to the leader, waits up to timeoutMs, then SIGKILLs the whole group. Idempotent. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
}

export interface SpawnGroupOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Also append the output to this file (kept after the process ends, for post-mortems). */
  logFile?: string;
  /**
   * 'pipe' (default): output is read through pipes into a ring buffer (output()) and copied to
   * logFile. 'file': stdout and stderr go straight into logFile (required then), with no pipes
   * and the child unref'd, so nothing of it keeps this process alive.
   */
  outputTo?: 'pipe' | 'file';
  /** Ring buffer size in characters; default 1 MiB. */
  limit?: number;
}

/** Starts `cmd` as the leader of a new process group that dies with this process. */
export function spawnGroup(cmd: string, args: readonly string[], opts: SpawnGroupOptions = {}): GroupProcess {
  installLifetimeGuards();
  const limit = opts.limit ?? 1024 * 1024;
  let child: ChildProcess;
  let file: WriteStream | undefined;
  let text = '';
  if (opts.outputTo === 'file') {
    if (!opts.logFile) throw new Error("spawnGroup: outputTo 'file' needs a logFile");
    const fd = openSync(opts.logFile, 'a');
    try {
      child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', fd, fd], detached: true });
    } finally {
      closeSync(fd);
    }
    child.unref();
  } else {
    child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    if (opts.logFile) {
      file = createWriteStream(opts.logFile, { flags: 'a' });
      file.on('error', () => {});
    }
    const append = (chunk: Buffer) => {
      const s = chunk.toString('utf8');
      text += s;
      if (text.length > limit) text = text.slice(-limit);
      file?.write(s);
    };
    child.stdout?.on('data', append);
    child.stderr?.on('data', append);
  }
  const pid = child.pid;
  let done = false;
  const exited = new Promise<number | null>((resolve) => {
    child.once('error', (err) => {
      text += `\n[spawn error: ${err.message}]\n`;
      done = true;
      resolve(null);
    });
    child.once('close', (code) => {
      done = true;
      resolve(code);
    });
  });
  if (pid === undefined) {
    return { pid: -1, exited, hasExited: () => true, output: () => text, stop: () => exited };
  }
  liveGroups.add(pid);
  syncWatchdog();
  void exited.then(() => {
    file?.end();
    // The leader is gone; its children (same group) may not be. Kill stragglers, then forget the group.
    killGroup(pid, 'SIGKILL');
    liveGroups.delete(pid);
    syncWatchdog();
  });

  let stopping: Promise<number | null> | undefined;
  const stop = (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<number | null> => {
    stopping ??= (async () => {
      if (!done) {
        try {
          process.kill(pid, signal);
        } catch {
          // gone already
        }
        if (!(await settlesWithin(exited, timeoutMs))) killGroup(pid, 'SIGKILL');
        await settlesWithin(exited, 5_000);
      }
      killGroup(pid, 'SIGKILL'); // children left in the group
      return done ? exited : null; // bounded: never waits on a process that ignores SIGKILL
    })();
    return stopping;
  };
  return { pid, exited, hasExited: () => done, output: () => text, stop };
}
