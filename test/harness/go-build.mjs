// Shared by the Go-built test tools (test/harness/kube/build-binaries.mjs and
// test/harness/otel/build-binaries.mjs): finding `go`, running a build in its own process group with
// a time limit, and a lock file that survives crashed builders. Plain JavaScript so that Node can
// run the build scripts directly from tools/*/build.sh.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, statSync } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { delimiter, join } from 'node:path';

/** The `go` binary on PATH, or null. */
export function findGo() {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, process.platform === 'win32' ? 'go.exe' : 'go');
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return null;
}

export function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return /** @type {NodeJS.ErrnoException} */ (err).code === 'EPERM';
  }
}

/** Runs a command in its own process group; kills the whole group on timeout or when we exit. Output goes to logFile. */
export function run(cmd, args, { cwd, env, timeoutMs, logFile }) {
  return new Promise((ok, fail) => {
    const fd = openSync(logFile, 'a');
    const started = Date.now();
    let child;
    try {
      child = spawn(cmd, args, { cwd, env, stdio: ['ignore', fd, fd], detached: true });
    } finally {
      closeSync(fd);
    }
    const killGroup = () => {
      try {
        process.kill(-(/** @type {number} */ (child.pid)), 'SIGKILL');
      } catch {
        // gone already
      }
    };
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, timeoutMs);
    process.once('exit', killGroup);
    child.once('error', (err) => {
      clearTimeout(timer);
      process.off('exit', killGroup);
      fail(err);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      process.off('exit', killGroup);
      const secs = (Date.now() - started) / 1000;
      if (code === 0) ok(secs);
      else {
        let tail = '';
        try {
          tail = readFileSync(logFile, 'utf8').slice(-6000);
        } catch {
          // no log
        }
        fail(
          new Error(
            `${cmd} ${args.join(' ')} (in ${cwd}) ${timedOut ? `timed out after ${timeoutMs} ms` : `failed (${signal ?? `exit ${code}`})`} after ${secs.toFixed(1)} s:\n${tail}`,
          ),
        );
      }
    });
  });
}

export async function tryLock(lockFile) {
  try {
    const fh = await open(lockFile, 'wx');
    await fh.writeFile(JSON.stringify({ pid: process.pid, host: hostname(), started: new Date().toISOString() }));
    await fh.close();
    return true;
  } catch (err) {
    if (/** @type {NodeJS.ErrnoException} */ (err).code === 'EEXIST') return false;
    throw err;
  }
}

/** True when the lock's owner is gone (same host, pid dead) or the lock is older than staleMs. */
export async function lockIsStale(lockFile, staleMs) {
  try {
    const [body, st] = await Promise.all([readFile(lockFile, 'utf8'), stat(lockFile)]);
    if (Date.now() - st.mtimeMs > staleMs) return true;
    let info;
    try {
      info = JSON.parse(body);
    } catch {
      // created but not yet filled in: give it a few seconds
      return Date.now() - st.mtimeMs > 10_000;
    }
    return info.host === hostname() && typeof info.pid === 'number' && !pidAlive(info.pid);
  } catch (err) {
    if (/** @type {NodeJS.ErrnoException} */ (err).code === 'ENOENT') return false; // released meanwhile
    throw err;
  }
}
