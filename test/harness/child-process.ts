/**
 * A small driver for test helper processes that speak JSON lines:
 * commands go to the child's stdin (one JSON object per line), events come back on its
 * stdout (one JSON object per line), and stderr is free-form logging kept for diagnostics.
 *
 * Used by the opamp-go test agent (test/harness/go-agent.ts) and the Python test agent.
 *
 * ```ts
 * const child = spawnJsonLines('/path/to/agent', ['--flag']);
 * child.send({ cmd: 'health', healthy: false });
 * const ack = await child.waitFor((e) => e.event === 'ack', { timeoutMs: 5000 });
 * await child.stop(); // closes stdin, then SIGKILL if the child does not exit in time
 * ```
 *
 * Conventions the children follow: exit by themselves when stdin closes (so a crashed test
 * never leaves one running), write nothing but JSON objects to stdout.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export type JsonObject = Record<string, unknown>;

export interface SpawnJsonLinesOptions {
  /** Extra environment variables (merged over process.env). */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Shown in error messages; defaults to the command's base name. */
  name?: string;
  /** How much of stderr to keep, in characters (the tail is kept). Default 256 KiB. */
  stderrLimit?: number;
  /** Default timeout of waitFor; default 10 s. */
  defaultTimeoutMs?: number;
}

export interface WaitForOptions {
  /** Default: the driver's defaultTimeoutMs (10 s). */
  timeoutMs?: number;
  /** Only consider events at this index of `events` or later (e.g. `child.events.length` taken before sending a command). */
  since?: number;
}

export interface JsonLinesChild<E extends JsonObject = JsonObject> {
  readonly pid: number | undefined;
  /** Every event received so far, in order. Lines that are not JSON objects appear as `{ event: '_invalid_line', line }`. */
  readonly events: E[];
  /** Writes `JSON.stringify(obj)` and a newline to stdin. Throws once stdin is closed. */
  send(obj: unknown): void;
  /**
   * Resolves with the first event (already received or future, from index `since`) that matches.
   * Rejects on timeout or when the child exits first; the message includes the last events and the stderr tail.
   */
  waitFor(pred: (e: E) => boolean, opts?: WaitForOptions): Promise<E>;
  /** Closes stdin and waits up to timeoutMs (default 8 s) for the child to exit, then SIGKILLs it. Resolves with the exit code. Idempotent. */
  stop(opts?: { timeoutMs?: number }): Promise<number | null>;
  /** Sends a signal (e.g. SIGTERM to test graceful shutdown). */
  kill(signal: NodeJS.Signals): void;
  /** Exit code; null when the child was killed by a signal or could not be spawned. */
  readonly exited: Promise<number | null>;
  /** The (tail of the) child's stderr so far. */
  stderr(): string;
  /** Last events and stderr tail, formatted for error messages. */
  describe(): string;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort for a test process that exits without stopping its children. (The children
  // also exit on their own once our end of their stdin pipe goes away.)
  process.once('exit', () => {
    for (const child of running) child.kill('SIGKILL');
  });
}

export function spawnJsonLines<E extends JsonObject = JsonObject>(
  cmd: string,
  args: readonly string[],
  opts: SpawnJsonLinesOptions = {},
): JsonLinesChild<E> {
  const name = opts.name ?? cmd.split(/[\\/]/).pop() ?? cmd;
  const stderrLimit = opts.stderrLimit ?? 256 * 1024;
  const defaultTimeoutMs = opts.defaultTimeoutMs ?? 10_000;

  const child = spawn(cmd, args, {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  installExitHook();
  running.add(child);

  const events: E[] = [];
  const listeners = new Set<() => void>();
  let stderrText = '';
  let spawnError: Error | undefined;
  let exitInfo: string | undefined;
  let stdinClosed = false;

  const notify = () => {
    for (const l of [...listeners]) l();
  };

  const exited = new Promise<number | null>((resolve) => {
    child.once('error', (err) => {
      spawnError = err;
      exitInfo = `failed to start: ${err.message}`;
      running.delete(child);
      resolve(null);
      notify();
    });
    child.once('close', (code, signal) => {
      exitInfo = signal ? `killed by ${signal}` : `exited with code ${code}`;
      running.delete(child);
      resolve(signal ? null : code);
      notify();
    });
  });

  // Keep the process from dying on EPIPE when the child has gone away.
  child.stdin.on('error', () => {
    stdinClosed = true;
  });

  createInterface({ input: child.stdout, crlfDelay: Infinity }).on('line', (line) => {
    if (line.trim() === '') return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      parsed = undefined;
    }
    const event =
      parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)
        ? (parsed as E)
        : ({ event: '_invalid_line', line } as unknown as E);
    events.push(event);
    notify();
  });

  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    stderrText += chunk;
    if (stderrText.length > stderrLimit) stderrText = stderrText.slice(-stderrLimit);
  });

  const describe = (): string => {
    const last = events.slice(-25).map((e) => '  ' + JSON.stringify(e)).join('\n');
    const tail = stderrText.slice(-4000);
    return (
      `[${name} pid=${child.pid ?? '?'}${exitInfo ? ', ' + exitInfo : ''}]\n` +
      `last ${Math.min(events.length, 25)} of ${events.length} events:\n${last || '  (none)'}\n` +
      `stderr tail:\n${tail || '  (empty)'}`
    );
  };

  const waitFor = (pred: (e: E) => boolean, wopts: WaitForOptions = {}): Promise<E> => {
    const timeoutMs = wopts.timeoutMs ?? defaultTimeoutMs;
    let next = wopts.since ?? 0;
    return new Promise<E>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const finish = (fn: () => void) => {
        listeners.delete(check);
        if (timer) clearTimeout(timer);
        fn();
      };
      function check(): void {
        for (; next < events.length; next++) {
          const e = events[next]!;
          let ok: boolean;
          try {
            ok = pred(e);
          } catch (err) {
            finish(() => reject(err));
            return;
          }
          if (ok) {
            finish(() => resolve(e));
            return;
          }
        }
        if (exitInfo !== undefined) {
          finish(() => reject(new Error(`waitFor: ${name} ${exitInfo} before a matching event arrived\n${describe()}`)));
        }
      }
      timer = setTimeout(() => {
        finish(() =>
          reject(new Error(`waitFor: no matching event from ${name} within ${timeoutMs} ms (predicate: ${pred.toString().slice(0, 200)})\n${describe()}`)),
        );
      }, timeoutMs);
      listeners.add(check);
      check();
    });
  };

  const send = (obj: unknown): void => {
    if (spawnError) throw new Error(`${name}: ${exitInfo}`);
    if (stdinClosed || exitInfo !== undefined || !child.stdin.writable) {
      throw new Error(`${name}: cannot send, stdin is closed\n${describe()}`);
    }
    child.stdin.write(JSON.stringify(obj) + '\n');
  };

  let stopping: Promise<number | null> | undefined;
  const stop = (sopts: { timeoutMs?: number } = {}): Promise<number | null> => {
    stopping ??= (async () => {
      if (exitInfo === undefined) {
        stdinClosed = true;
        child.stdin.end();
        const timeoutMs = sopts.timeoutMs ?? 8_000;
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs)));
        const result = await Promise.race([exited, timedOut]);
        clearTimeout(timer);
        if (result === 'timeout') child.kill('SIGKILL');
      }
      return exited;
    })();
    return stopping;
  };

  return {
    get pid() {
      return child.pid;
    },
    events,
    send,
    waitFor,
    stop,
    kill: (signal: NodeJS.Signals) => void child.kill(signal),
    exited,
    stderr: () => stderrText,
    describe,
  };
}
