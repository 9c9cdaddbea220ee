/**
 * Process helpers for the OpenTelemetry harness. Each supervisor or collector runs in its own
 * process group that dies with the test process (../process-group.ts, shared with the control
 * plane); this module adds /proc look-ups and a bounded polling wait.
 */
import { readdirSync, readFileSync } from 'node:fs';

export { killGroup, settlesWithin, spawnGroup, type GroupProcess, type SpawnGroupOptions } from '../process-group.js';

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
