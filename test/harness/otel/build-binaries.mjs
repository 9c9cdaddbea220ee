// Builds the OpenTelemetry binaries for the end-to-end tests from the Go modules in tools/otel:
//   - tools/otel/collector  -> otelcol-fleetbridge (our minimal collector distribution, our main.go)
//   - tools/otel/supervisor -> opampsupervisor     (the upstream main package, a `tool` of that module)
// into .cache/otel/<hash>/ and reuses them when present (see docs/adr/0004-otel-agents-from-go-modules.md).
//
// Plain JavaScript (typed by build-binaries.d.mts) so that it runs both inside vitest (through
// test/harness/otel/binaries.ts) and standalone with Node 20, which cannot run TypeScript:
//
//   node test/harness/otel/build-binaries.mjs      # what tools/otel/build.sh runs; prints timings
//
// <hash> covers go.mod, go.sum and every *.go file of both modules, the build flags, the Go
// environment and os/arch (not the Go toolchain version: the build info records it, see build-info.json).
//
// Concurrency: one builder at a time per cache key, through an O_EXCL lock file that names the
// builder's pid and host (a lock whose pid is gone, or that is older than the build timeout, is
// stale and taken over). The same scheme as test/harness/kube/build-binaries.mjs, whose helpers are
// module-private. Binaries are built into a temporary folder beside the final one, checked by
// running them, and the folder is renamed into place in one step: nobody ever sees half a binary.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { findGo, lockIsStale, pidAlive, run, tryLock } from '../go-build.mjs';
export { findGo };

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const TOOLS_DIR = join(REPO_ROOT, 'tools', 'otel');
export const CACHE_ROOT = join(REPO_ROOT, '.cache', 'otel');

/** Go environment for every build: no cgo, no workspace, go.sum must already be complete, no VCS stamp (the collector's main module lives in this git repo: its state must not change the bytes), never fetch a toolchain. */
const GO_ENV = { CGO_ENABLED: '0', GOWORK: 'off', GOFLAGS: '-mod=readonly -buildvcs=false', GOTOOLCHAIN: 'local' };
const DEFAULT_BUILD_TIMEOUT_MS = 30 * 60_000;
const SUPERVISOR_PKG = 'github.com/open-telemetry/opentelemetry-collector-contrib/cmd/opampsupervisor';

/** What is built: output name → module folder, package, and how to check the result runs. */
export function buildRecipe() {
  return {
    'otelcol-fleetbridge': { dir: 'collector', pkg: '.', ldflags: '-s -w', check: ['--version'] },
    opampsupervisor: { dir: 'supervisor', pkg: SUPERVISOR_PKG, ldflags: '-s -w', check: ['--help'] },
  };
}

function requiredVersion(goMod, modulePath) {
  const esc = modulePath.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  const m = new RegExp(`^\\s*(?:require\\s+)?${esc}\\s+(v\\S+)`, 'm').exec(goMod);
  return m ? m[1] : null;
}

/** Versions as required in tools/otel/{collector,supervisor}/go.mod. */
export function otelVersions() {
  const col = readFileSync(join(TOOLS_DIR, 'collector', 'go.mod'), 'utf8');
  const sup = readFileSync(join(TOOLS_DIR, 'supervisor', 'go.mod'), 'utf8');
  const collector = requiredVersion(col, 'go.opentelemetry.io/collector/otelcol');
  const opampExtension = requiredVersion(col, 'github.com/open-telemetry/opentelemetry-collector-contrib/extension/opampextension');
  const supervisor = requiredVersion(sup, SUPERVISOR_PKG);
  if (!collector || !opampExtension || !supervisor) {
    throw new Error(`cannot read the otelcol / opampextension / opampsupervisor versions from ${TOOLS_DIR}/*/go.mod`);
  }
  return { collector, opampExtension, supervisor };
}

/** `<12 hex of sha256(go.mod, go.sum and *.go of both modules, recipe, Go env, os/arch)>`. */
export function cacheKey() {
  const h = createHash('sha256');
  for (const mod of ['collector', 'supervisor']) {
    const dir = join(TOOLS_DIR, mod);
    const files = readdirSync(dir)
      .filter((f) => f === 'go.mod' || f === 'go.sum' || f.endsWith('.go'))
      .sort();
    for (const f of files) {
      const body = readFileSync(join(dir, f));
      h.update(`${mod}/${f}\0${body.length}\0`);
      h.update(body);
    }
  }
  h.update(JSON.stringify(buildRecipe()));
  h.update(JSON.stringify(GO_ENV));
  h.update(`${process.platform}/${process.arch}`);
  return h.digest('hex').slice(0, 12);
}

function binDirOverride() {
  const d = process.env.FLEETBRIDGE_OTEL_BIN_DIR;
  return d ? resolve(d) : null;
}

function pathsIn(dir) {
  return { dir, collector: join(dir, 'otelcol-fleetbridge'), supervisor: join(dir, 'opampsupervisor') };
}

/** Where the binaries are (or will be) for the current tools/otel sources. */
export function otelBinaryPaths() {
  return pathsIn(binDirOverride() ?? join(CACHE_ROOT, cacheKey()));
}

function complete(p) {
  return existsSync(p.collector) && existsSync(p.supervisor);
}

/**
 * Why the binaries cannot be had here, or null when they can (cached, or FLEETBRIDGE_OTEL_BIN_DIR
 * points at them, or `go` is on PATH to build them). Synchronous, for skips.
 */
export function otelMissingReason() {
  const p = otelBinaryPaths();
  if (binDirOverride()) {
    return complete(p) ? null : `FLEETBRIDGE_OTEL_BIN_DIR=${p.dir} lacks otelcol-fleetbridge and/or opampsupervisor`;
  }
  if (complete(p) || findGo()) return null;
  return 'go missing: `go` was not found on PATH, so the collector and the OpAMP Supervisor cannot be built from tools/otel (install Go >= 1.26, or set FLEETBRIDGE_OTEL_BIN_DIR)';
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let inProcess;

/**
 * Resolves with the paths of the collector and the supervisor, building them first when they are
 * not cached. A cold build downloads ~300 MB of modules and compiles for a few minutes: pre-build
 * with tools/otel/build.sh on CI, and call this from a beforeAll with a generous timeout.
 * @param {import('./build-binaries.d.mts').EnsureOptions} [opts]
 */
export function ensureOtelBinaries(opts = {}) {
  inProcess ??= doEnsure(opts).catch((err) => {
    inProcess = undefined; // let a later call retry
    throw err;
  });
  return inProcess;
}

async function doEnsure(opts) {
  const log = opts.log ?? (() => {});
  const timeoutMs = opts.timeoutMs ?? DEFAULT_BUILD_TIMEOUT_MS;
  const override = binDirOverride();
  const p = otelBinaryPaths();
  const done = (built) => ({ collector: p.collector, supervisor: p.supervisor, dir: p.dir, built });
  if (complete(p)) return done(false);
  if (override) throw new Error(`FLEETBRIDGE_OTEL_BIN_DIR=${override} lacks otelcol-fleetbridge and/or opampsupervisor`);

  const go = findGo();
  if (!go) throw new Error(/** @type {string} */ (otelMissingReason()));
  const key = cacheKey();
  await mkdir(CACHE_ROOT, { recursive: true });
  const lockFile = join(CACHE_ROOT, `${key}.lock`);
  const deadline = Date.now() + timeoutMs;
  let announced = false;
  for (;;) {
    if (complete(p)) return done(false);
    if (await tryLock(lockFile)) break;
    if (await lockIsStale(lockFile, timeoutMs)) {
      log(`removing a stale build lock ${lockFile}`);
      await rm(lockFile, { force: true });
      continue;
    }
    if (!announced) {
      log(`waiting for another process to finish building ${p.dir} (lock ${lockFile})`);
      announced = true;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for the build lock ${lockFile}`);
    await sleep(1000);
  }

  const tmp = join(CACHE_ROOT, `.tmp-${key}-${process.pid}-${Date.now()}`);
  try {
    if (complete(p)) return done(false);
    await mkdir(tmp, { recursive: true });
    const env = { ...process.env, ...GO_ENV };
    const goVersion = spawnSync(go, ['version'], { encoding: 'utf8', env }).stdout.trim();
    const recipe = buildRecipe();
    /** @type {Record<string, any>} */
    const info = { key, versions: otelVersions(), goVersion, env: GO_ENV, recipe, seconds: {}, bytes: {}, builtAt: new Date().toISOString() };
    // The supervisor first: it is the smaller build and shakes out proxy/toolchain problems early.
    for (const name of /** @type {const} */ (['opampsupervisor', 'otelcol-fleetbridge'])) {
      const r = recipe[name];
      const out = join(tmp, name);
      log(`building ${name} (${r.pkg} in tools/otel/${r.dir}) ...`);
      const secs = await run(go, ['build', '-trimpath', `-ldflags=${r.ldflags}`, '-o', out, r.pkg], {
        cwd: join(TOOLS_DIR, r.dir),
        env,
        timeoutMs: Math.max(deadline - Date.now(), 1000),
        logFile: join(tmp, `${name}.build.log`),
      });
      const check = spawnSync(out, r.check, { encoding: 'utf8', timeout: 30_000 });
      if (check.status !== 0) throw new Error(`${out} ${r.check.join(' ')} failed: ${check.stderr || check.error}`);
      const bytes = statSync(out).size;
      info.seconds[name] = Math.round(secs * 10) / 10;
      info.bytes[name] = bytes;
      const firstLine = `${check.stdout}${check.stderr}`.split('\n')[0];
      log(`built ${name} in ${secs.toFixed(1)} s (${(bytes / 1048576).toFixed(1)} MiB): ${firstLine}`);
    }
    await writeFile(join(tmp, 'build-info.json'), `${JSON.stringify(info, null, 2)}\n`);
    try {
      await rename(tmp, p.dir);
    } catch (err) {
      // Someone else's complete folder is already there (e.g. a lock taken over as stale): keep theirs.
      if (!complete(p)) throw err;
    }
    return done(true);
  } finally {
    await rm(tmp, { recursive: true, force: true });
    await rm(lockFile, { force: true });
  }
}

// Standalone: `node test/harness/otel/build-binaries.mjs` (tools/otel/build.sh).
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const t0 = Date.now();
  const log = (m) => console.error(`[otel-binaries ${((Date.now() - t0) / 1000).toFixed(1)}s] ${m}`);
  ensureOtelBinaries({ log })
    .then((r) => {
      log(`${r.built ? 'built' : 'cached'}: ${r.dir} (total ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      console.log(r.dir);
    })
    .catch((err) => {
      console.error(err instanceof Error ? err.message : err);
      process.exit(1);
    });
}
