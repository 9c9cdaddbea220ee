/**
 * Process groups for the OpenTelemetry harness: each supervisor or collector we start runs in its
 * own process group (the supervisor's collector children inherit it), and every group is
 * SIGKILLed when this process goes away:
 *   - on a normal exit, by an 'exit' handler;
 *   - on any other death (SIGKILL of the vitest worker included), by a tiny `sh` watchdog that holds
 *     a pipe from us and kills the last announced groups when the pipe closes.
 * (The same scheme as test/harness/kube/control-plane.ts, whose helpers are module-private.)
 *
 * Every wait here is bounded; output is kept in a ring buffer (tail) and optionally copied to a file.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readdirSync, readFileSync, type WriteStream } from 'node:fs';
import type { Socket } from 'node:net';

const liveGroups = new Set<number>();
let watchdog: ChildProcess | undefined;
let exitHookInstalled = false;

function syncWatchdog(): void {
  if (!watchdog?.stdin || watchdog.stdin.destroyed) return;
  watchdog.stdin.write(`pids ${[...liveGroups].join(' ')}\n`);
}

function installLifetimeGuards(): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const pgid of liveGroups) killGroup(pgid, 'SIGKILL');
    });
  }
  if (watchdog) return;
  // Reads "pids ..." lines until stdin reaches EOF (we exited or were killed), then kills the last
  // announced groups. Ignores terminal signals and lives in its own session/group, so a signal to
  // our group does not take it down first.
  const script = [
    "trap '' INT HUP TERM",
    'set -f',
    'p=',
    'while IFS= read -r l; do',
    '  case $l in "pids "*) p=${l#pids } ;; esac',
    'done',
    'for x in $p; do kill -KILL "-$x" 2>/dev/null; done',
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

export function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // gone already
  }
}

export interface GroupProcess {
  readonly pid: number;
  /** Resolves with the exit code (null when killed by a signal or not started). */
  readonly exited: Promise<number | null>;
  hasExited(): boolean;
  /** The last `limit` characters of stdout+stderr, interleaved as received. */
  output(): string;
  /** Sends `signal` to the leader, waits up to timeoutMs, then SIGKILLs the whole group. Idempotent. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
}

export interface SpawnGroupOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Also append the output to this file (kept after the process ends, for post-mortems). */
  logFile?: string;
  /** Ring buffer size in characters; default 1 MiB. */
  limit?: number;
}

/** Starts `cmd` as the leader of a new process group that dies with this process. */
export function spawnGroup(cmd: string, args: readonly string[], opts: SpawnGroupOptions = {}): GroupProcess {
  installLifetimeGuards();
  const limit = opts.limit ?? 1024 * 1024;
  const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const pid = child.pid;
  let text = '';
  let file: WriteStream | undefined;
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
      return exited;
    })();
    return stopping;
  };
  return { pid, exited, hasExited: () => done, output: () => text, stop };
}

export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([p.then(() => true), new Promise<false>((res) => (timer = setTimeout(() => res(false), ms)))]);
  clearTimeout(timer);
  return r;
}

/** Live children of `ppid` (Linux /proc), with their argv. */
export function childProcesses(ppid: number): { pid: number; argv: string[] }[] {
  const out: { pid: number; argv: string[] }[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      // pid (comm) state ppid ... — comm may contain spaces/parens: parse after the last ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) !== ppid || fields[0] === 'Z') continue;
      const argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0').filter((s) => s !== '');
      out.push({ pid: Number(e), argv });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** Thrown by a waitUntil probe to give up at once (e.g. the process being waited on exited). */
export class WaitAborted extends Error {}

/**
 * Polls `probe` until it returns a value other than undefined/false, or throws after timeoutMs with
 * describe()'s text. A probe that throws is retried (the last error is reported), except WaitAborted.
 */
export async function waitUntil<T>(
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  opts: { timeoutMs: number; intervalMs?: number; what: string; describe?: () => string | Promise<string> },
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastErr = err;
      if (err instanceof WaitAborted) {
        const extra = opts.describe ? `\n${await opts.describe()}` : '';
        throw new Error(`gave up waiting for ${opts.what}: ${err.message}${extra}`);
      }
    }
    if (Date.now() >= deadline) {
      const extra = opts.describe ? `\n${await opts.describe()}` : '';
      const errText = lastErr ? `\nlast error: ${lastErr instanceof Error ? lastErr.message : String(lastErr)}` : '';
      throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${opts.what}${errText}${extra}`);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 200));
  }
}
