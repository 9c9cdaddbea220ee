// The one cached-build sequence for every tool the tests, the benchmark and the scripts build
// (Go binaries from tools/* and bench/peers, the Maven-built Java test agent): finding `go`,
// running a build step in its own process group with a time limit, a lock file that survives
// crashed builders, and buildCached(): lock / build into a temporary folder / check / rename into
// the cache. Plain JavaScript so that Node runs it without a TypeScript loader (tools/*/build.sh).
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, statSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The repository's root folder. */
export const REPO_ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

/** Go environment for every build: no cgo, no workspace, go.sum must already be complete, no VCS stamp, never fetch a toolchain. */
export const GO_ENV = Object.freeze({ CGO_ENABLED: '0', GOWORK: 'off', GOFLAGS: '-mod=readonly -buildvcs=false', GOTOOLCHAIN: 'local' });

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

/** The version a go.mod requires of `modulePath` (direct or indirect), or null. */
export function requiredVersion(goMod, modulePath) {
  const esc = modulePath.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  const m = new RegExp(`^\\s*(?:require\\s+)?${esc}\\s+(v\\S+)`, 'm').exec(goMod);
  return m ? m[1] : null;
}

export function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return /** @type {NodeJS.ErrnoException} */ (err).code === 'EPERM';
  }
}

/**
 * Runs a command in its own process group; kills the whole group on timeout or when we exit.
 * Output goes to logFile. Resolves with the seconds it took.
 * @param {string} cmd
 * @param {string[]} args
 * @param {{ cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number, logFile: string }} opts
 * @returns {Promise<number>}
 */
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

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * @typedef {{ name: string, cwd: string, pkg: string, ldflags: string, check: string[] }} GoBuild
 * @typedef {{ tmp: string, deadline: number, log: (line: string) => void }} BuildContext
 */

/**
 * `go build` of each entry into `tmp`, in order, each checked by running it with `check`; returns
 * build-info.json fields (Go version, env, timings, sizes).
 * @param {GoBuild[]} builds
 * @param {Record<string, string>} goEnv
 * @param {string} go
 * @param {BuildContext} ctx
 */
async function goBuildStep(builds, goEnv, go, { tmp, deadline, log }) {
  const env = { ...process.env, ...goEnv };
  const goVersion = spawnSync(go, ['version'], { encoding: 'utf8', env }).stdout.trim();
  /** @type {{ seconds: Record<string, number>, bytes: Record<string, number> } & Record<string, unknown>} */
  const record = { goVersion, env: goEnv, builds, seconds: {}, bytes: {} };
  for (const b of builds) {
    const out = join(tmp, b.name);
    log(`building ${b.name} (${b.pkg} in ${b.cwd}) ...`);
    const secs = await run(go, ['build', '-trimpath', `-ldflags=${b.ldflags}`, '-o', out, b.pkg], {
      cwd: b.cwd,
      env,
      timeoutMs: Math.max(deadline - Date.now(), 1000),
      logFile: join(tmp, `${b.name}.build.log`),
    });
    const check = spawnSync(out, b.check, { encoding: 'utf8', timeout: 30_000 });
    if (check.status !== 0) throw new Error(`${out} ${b.check.join(' ')} failed: ${check.stderr || check.error}`);
    const bytes = statSync(out).size;
    record.seconds[b.name] = Math.round(secs * 10) / 10;
    record.bytes[b.name] = bytes;
    const firstLine = `${check.stdout}${check.stderr}`.split('\n')[0];
    log(`built ${b.name} in ${secs.toFixed(1)} s (${(bytes / 1048576).toFixed(1)} MiB): ${firstLine}`);
  }
  return record;
}

/**
 * Builds into `<cacheRoot>/<key>/` unless it is complete already, and resolves with that folder.
 * One builder at a time per key, through an O_EXCL lock file `<cacheRoot>/<key>.lock` naming the
 * builder's pid and host (a lock whose pid is gone, or older than timeoutMs, is stale and taken
 * over). The build fills a temporary folder beside the final one, which gets a build-info.json and
 * is renamed into place in one step, so nobody ever sees half a build.
 *
 * Two kinds of build:
 *  - Go: `builds` (run in order; put the quick one first: it shakes out proxy/toolchain problems),
 *    `goEnv`, `goMissing` (the error when `go` is not on PATH). Complete = every binary present.
 *  - Any other: `build(ctx)` fills `ctx.tmp` and returns build-info.json fields; `outputs` names
 *    the paths that make a folder complete (default: build-info.json); `prepare()` runs once a
 *    build may be needed, before the lock (check the toolchain; throw when it is missing).
 *
 * @param {{
 *   cacheRoot: string,
 *   key: string,
 *   timeoutMs: number,
 *   log?: (line: string) => void,
 *   info?: Record<string, unknown>,
 *   builds?: GoBuild[],
 *   goEnv?: Record<string, string>,
 *   goMissing?: string,
 *   build?: (ctx: BuildContext) => Promise<Record<string, unknown>>,
 *   prepare?: () => unknown,
 *   outputs?: string[],
 * }} spec  info is added to build-info.json.
 * @returns {Promise<{ dir: string, built: boolean }>}
 */
export async function buildCached(spec) {
  const { cacheRoot, key, info = {}, timeoutMs, log = () => {} } = spec;
  const builds = spec.builds ?? [];
  if (!spec.build && builds.length === 0) throw new Error('buildCached: give either builds (Go) or build()');
  const dir = join(cacheRoot, key);
  const outputs = spec.outputs ?? (spec.build ? ['build-info.json'] : builds.map((b) => b.name));
  const complete = () => outputs.every((o) => existsSync(join(dir, o)));
  if (complete()) return { dir, built: false };

  /** @type {(ctx: BuildContext) => Promise<Record<string, unknown>>} */
  let step;
  if (spec.build) {
    await spec.prepare?.();
    step = spec.build;
  } else {
    const go = findGo();
    if (!go) throw new Error(spec.goMissing ?? '`go` was not found on PATH');
    step = (ctx) => goBuildStep(builds, spec.goEnv ?? GO_ENV, go, ctx);
  }
  await mkdir(cacheRoot, { recursive: true });
  const lockFile = join(cacheRoot, `${key}.lock`);
  const deadline = Date.now() + timeoutMs;
  let announced = false;
  for (;;) {
    if (complete()) return { dir, built: false };
    if (await tryLock(lockFile)) break;
    if (await lockIsStale(lockFile, timeoutMs)) {
      log(`removing a stale build lock ${lockFile}`);
      await rm(lockFile, { force: true });
      continue;
    }
    if (!announced) {
      log(`waiting for another process to finish building ${dir} (lock ${lockFile})`);
      announced = true;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for the build lock ${lockFile}`);
    await sleep(1000);
  }

  const tmp = join(cacheRoot, `.tmp-${key}-${process.pid}-${Date.now()}`);
  try {
    // Leftovers of builders that died (their pid is in the name).
    for (const f of await readdir(cacheRoot)) {
      const m = /^\.tmp-.+-(\d+)-\d+$/.exec(f);
      if (m && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]))) await rm(join(cacheRoot, f), { recursive: true, force: true });
    }
    if (complete()) return { dir, built: false };
    await mkdir(tmp, { recursive: true });
    const record = await step({ tmp, deadline, log });
    await writeFile(join(tmp, 'build-info.json'), `${JSON.stringify({ key, ...info, ...record, builtAt: new Date().toISOString() }, null, 2)}\n`);
    try {
      await rename(tmp, dir);
    } catch (err) {
      // Someone else's complete folder is already there (e.g. a lock taken over as stale): keep theirs.
      if (!complete()) throw err;
    }
    return { dir, built: true };
  } finally {
    await rm(tmp, { recursive: true, force: true });
    await rm(lockFile, { force: true });
  }
}

/**
 * Runs `ensure({ log })` when `metaUrl` is the script Node was started with (`node <file>.mjs`, as
 * tools/<tool>/build.sh does): prints timings on stderr prefixed with `[tag …s]`, and the folders
 * that `result(value)` names (where the binaries are), one a line, on stdout; exits 1 on failure.
 * @template T
 * @param {string} metaUrl
 * @param {string} tag
 * @param {(opts: { log: (line: string) => void }) => Promise<T>} ensure
 * @param {(value: T) => { dirs: string[], built: boolean }} result
 */
export function runIfMain(metaUrl, tag, ensure, result) {
  if (metaUrl !== pathToFileURL(process.argv[1] ?? '').href) return;
  const t0 = Date.now();
  const log = (m) => console.error(`[${tag} ${((Date.now() - t0) / 1000).toFixed(1)}s] ${m}`);
  ensure({ log })
    .then((v) => {
      const { dirs, built } = result(v);
      log(`${built ? 'built' : 'cached'}: ${dirs.join(', ')} (total ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      for (const d of dirs) console.log(d);
    })
    .catch((err) => {
      console.error(err instanceof Error ? err.message : err);
      process.exit(1);
    });
}
