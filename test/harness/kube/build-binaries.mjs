// Builds kube-apiserver and etcd from the Go modules in tools/k8s/{apiserver,etcd} into
// .cache/k8s/<k8s version>-<hash>/ and reuses them when present.
//
// Plain JavaScript (typed by build-binaries.d.mts) so that it runs both inside vitest (through
// test/harness/kube/binaries.ts) and standalone with Node 20, which cannot run TypeScript:
//
//   node test/harness/kube/build-binaries.mjs      # what tools/k8s/build.sh runs; prints timings
//
// Concurrency: one builder at a time per cache key, through an O_EXCL lock file that names the
// builder's pid (a lock whose pid is gone, or that is older than the build timeout, is stale and
// taken over). The binaries are built into a temporary folder beside the final one, checked with
// `--version`, and the folder is renamed into place in one step, so nobody ever sees half a binary.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, statSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { findGo, lockIsStale, pidAlive, run, tryLock } from '../go-build.mjs';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const TOOLS_DIR = join(REPO_ROOT, 'tools', 'k8s');
export const CACHE_ROOT = join(REPO_ROOT, '.cache', 'k8s');
const MODULES = /** @type {const} */ (['apiserver', 'etcd']);

/** Go environment for every build: no cgo, no workspace, go.sum must already be complete, never fetch a toolchain. */
const GO_ENV = { CGO_ENABLED: '0', GOWORK: 'off', GOFLAGS: '-mod=readonly -buildvcs=false', GOTOOLCHAIN: 'local' };
const DEFAULT_BUILD_TIMEOUT_MS = 40 * 60_000;

/** Versions as required in tools/k8s/{apiserver,etcd}/go.mod. */
export function controlPlaneVersions() {
  const api = readFileSync(join(TOOLS_DIR, 'apiserver', 'go.mod'), 'utf8');
  const etcd = readFileSync(join(TOOLS_DIR, 'etcd', 'go.mod'), 'utf8');
  const k = /^\s*(?:require\s+)?k8s\.io\/kubernetes\s+(v\S+)/m.exec(api);
  const e = /^\s*(?:require\s+)?go\.etcd\.io\/etcd\/server\/v3\s+(v\S+)/m.exec(etcd);
  if (!k || !e) throw new Error(`cannot read the k8s.io/kubernetes / go.etcd.io/etcd/server/v3 versions from ${TOOLS_DIR}/*/go.mod`);
  return { kubernetes: k[1], etcd: e[1] };
}

/** -ldflags for each binary. The -X flags make kube-apiserver report its real version (module zips carry no git data). */
export function buildRecipe() {
  const { kubernetes } = controlPlaneVersions();
  const m = /^v(\d+)\.(\d+)\./.exec(kubernetes);
  const vpkg = 'k8s.io/component-base/version';
  return {
    'kube-apiserver': {
      dir: 'apiserver',
      pkg: 'k8s.io/kubernetes/cmd/kube-apiserver',
      ldflags: [
        '-s', '-w',
        `-X ${vpkg}.gitVersion=${kubernetes}`,
        `-X ${vpkg}.gitMajor=${m ? m[1] : ''}`,
        `-X ${vpkg}.gitMinor=${m ? m[2] : ''}`,
        `-X ${vpkg}.gitTreeState=clean`,
      ].join(' '),
    },
    etcd: { dir: 'etcd', pkg: 'go.etcd.io/etcd/server/v3', ldflags: '-s -w' },
  };
}

/** `<k8s version>-<12 hex of sha256(go.mod + go.sum of both modules, build flags, os/arch)>`. */
export function cacheKey() {
  const h = createHash('sha256');
  for (const mod of MODULES) {
    for (const f of ['go.mod', 'go.sum']) {
      const body = readFileSync(join(TOOLS_DIR, mod, f));
      h.update(`${mod}/${f}\0${body.length}\0`);
      h.update(body);
    }
  }
  h.update(JSON.stringify(buildRecipe()));
  h.update(JSON.stringify(GO_ENV));
  h.update(`${process.platform}/${process.arch}`);
  return `${controlPlaneVersions().kubernetes}-${h.digest('hex').slice(0, 12)}`;
}

function binDirOverride() {
  const d = process.env.FLEETBRIDGE_K8S_BIN_DIR;
  return d ? resolve(d) : null;
}

function pathsIn(dir) {
  return { dir, apiserver: join(dir, 'kube-apiserver'), etcd: join(dir, 'etcd') };
}

/** Where the binaries are (or will be) for the current go.mod/go.sum. */
export function controlPlaneBinaryPaths() {
  return pathsIn(binDirOverride() ?? join(CACHE_ROOT, cacheKey()));
}

function complete(p) {
  return existsSync(p.apiserver) && existsSync(p.etcd);
}

/**
 * Why the control plane cannot be had here, or null when it can (the binaries are cached, or
 * FLEETBRIDGE_K8S_BIN_DIR points at them, or `go` is on PATH to build them). Synchronous, for skips.
 */
export function controlPlaneMissingReason() {
  const p = controlPlaneBinaryPaths();
  if (binDirOverride()) {
    return complete(p) ? null : `FLEETBRIDGE_K8S_BIN_DIR=${p.dir} lacks kube-apiserver and/or etcd`;
  }
  if (complete(p) || findGo()) return null;
  return '`go` was not found on PATH, so kube-apiserver and etcd cannot be built from tools/k8s (install Go >= 1.26, or set FLEETBRIDGE_K8S_BIN_DIR)';
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let inProcess;

/**
 * Resolves with the paths of kube-apiserver and etcd, building them first when they are not cached.
 * A cold build downloads ~1 GB of modules and compiles for several minutes: pre-build with
 * tools/k8s/build.sh on CI, and call this from a beforeAll/globalSetup with a generous timeout.
 * @param {import('./build-binaries.d.mts').EnsureOptions} [opts]
 */
export function ensureControlPlaneBinaries(opts = {}) {
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
  const key = override ? null : cacheKey();
  const p = controlPlaneBinaryPaths();
  if (complete(p)) return { apiserver: p.apiserver, etcd: p.etcd, built: false };
  if (override) throw new Error(`FLEETBRIDGE_K8S_BIN_DIR=${override} lacks kube-apiserver and/or etcd`);

  const go = findGo();
  if (!go) throw new Error(/** @type {string} */ (controlPlaneMissingReason()));
  await mkdir(CACHE_ROOT, { recursive: true });
  const lockFile = join(CACHE_ROOT, `${key}.lock`);
  const deadline = Date.now() + timeoutMs;
  let announced = false;
  for (;;) {
    if (complete(p)) return { apiserver: p.apiserver, etcd: p.etcd, built: false };
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
    // Leftovers of builders that died (their pid is in the name).
    for (const f of await readdir(CACHE_ROOT)) {
      const m = /^\.tmp-.+-(\d+)-\d+$/.exec(f);
      if (m && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]))) await rm(join(CACHE_ROOT, f), { recursive: true, force: true });
    }
    if (complete(p)) return { apiserver: p.apiserver, etcd: p.etcd, built: false };
    await mkdir(tmp, { recursive: true });
    const env = { ...process.env, ...GO_ENV };
    const versions = controlPlaneVersions();
    const goVersion = spawnSync(go, ['version'], { encoding: 'utf8', env }).stdout.trim();
    const recipe = buildRecipe();
    /** @type {Record<string, unknown>} */
    const info = { key, versions, goVersion, env: GO_ENV, recipe, seconds: {}, bytes: {}, builtAt: new Date().toISOString() };
    // etcd first: it is quick and shakes out proxy/toolchain problems before the long apiserver build.
    for (const name of /** @type {const} */ (['etcd', 'kube-apiserver'])) {
      const r = recipe[name];
      const out = join(tmp, name);
      const remaining = deadline - Date.now();
      log(`building ${name} (${r.pkg}) ...`);
      const secs = await run(go, ['build', '-trimpath', `-ldflags=${r.ldflags}`, '-o', out, r.pkg], {
        cwd: join(TOOLS_DIR, r.dir),
        env,
        timeoutMs: Math.max(remaining, 1000),
        logFile: join(tmp, `${name}.build.log`),
      });
      const version = spawnSync(out, ['--version'], { encoding: 'utf8', timeout: 30_000 });
      if (version.status !== 0) throw new Error(`${out} --version failed: ${version.stderr || version.error}`);
      const bytes = statSync(out).size;
      /** @type {Record<string, number>} */ (info.seconds)[name] = Math.round(secs * 10) / 10;
      /** @type {Record<string, number>} */ (info.bytes)[name] = bytes;
      log(`built ${name} in ${secs.toFixed(1)} s (${(bytes / 1048576).toFixed(1)} MiB): ${version.stdout.split('\n')[0]}`);
    }
    await writeFile(join(tmp, 'build-info.json'), `${JSON.stringify(info, null, 2)}\n`);
    try {
      await rename(tmp, p.dir);
    } catch (err) {
      // Someone else's complete folder is already there (e.g. a lock taken over as stale): keep theirs.
      if (!complete(p)) throw err;
    }
    return { apiserver: p.apiserver, etcd: p.etcd, built: true };
  } finally {
    await rm(tmp, { recursive: true, force: true });
    await rm(lockFile, { force: true });
  }
}

// Standalone: `node test/harness/kube/build-binaries.mjs` (tools/k8s/build.sh).
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const t0 = Date.now();
  const log = (m) => console.error(`[k8s-binaries ${((Date.now() - t0) / 1000).toFixed(1)}s] ${m}`);
  ensureControlPlaneBinaries({ log })
    .then((r) => {
      log(`${r.built ? 'built' : 'cached'}: ${dirname(r.apiserver)} (total ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      console.log(dirname(r.apiserver));
    })
    .catch((err) => {
      console.error(err instanceof Error ? err.message : err);
      process.exit(1);
    });
}
