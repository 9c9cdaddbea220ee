// Builds kube-apiserver and etcd from the Go modules in tools/k8s/{apiserver,etcd} into
// .cache/k8s/<k8s version>-<hash>/, and kubectl (k8s.io/kubernetes/cmd/kubectl, a `tool` of the same
// tools/k8s/apiserver module, so the same version and the same staging `replace` lines) into
// .cache/k8s/kubectl-<k8s version>-<hash>/, and reuses them when present. kubectl has its own folder
// and lock: the control plane never waits for it, and tests that need no kubectl never build it.
//
// Plain JavaScript (typed by k8s-binaries.d.mts) so that it runs both inside vitest (through
// test/harness/kube/binaries.ts) and standalone with Node 20, which cannot run TypeScript:
//
//   node tools/build/k8s-binaries.mjs      # what tools/k8s/build.sh runs; prints timings
//
// Locking, the temporary build folder and the rename into place are cached-build.mjs's
// buildCached(): one builder at a time per cache key, and nobody ever sees half a binary.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { buildCached, findGo, GO_ENV, REPO_ROOT, runIfMain } from './cached-build.mjs';

export { findGo, REPO_ROOT };
export const TOOLS_DIR = join(REPO_ROOT, 'tools', 'k8s');
export const CACHE_ROOT = join(REPO_ROOT, '.cache', 'k8s');
const MODULES = /** @type {const} */ (['apiserver', 'etcd']);

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

/**
 * `-X` flags that stamp the Kubernetes version into a binary built from module zips (which carry
 * no git data), as hack/lib/version.sh does: component-base/version for the servers and kubectl's
 * client version, client-go/pkg/version for the user agent.
 */
function versionLdflags(kubernetes, pkgs) {
  const m = /^v(\d+)\.(\d+)\./.exec(kubernetes);
  return pkgs.flatMap((vpkg) => [
    `-X ${vpkg}.gitVersion=${kubernetes}`,
    `-X ${vpkg}.gitMajor=${m ? m[1] : ''}`,
    `-X ${vpkg}.gitMinor=${m ? m[2] : ''}`,
    `-X ${vpkg}.gitTreeState=clean`,
  ]);
}

/** -ldflags for each binary. The -X flags make kube-apiserver report its real version (module zips carry no git data). */
export function buildRecipe() {
  const { kubernetes } = controlPlaneVersions();
  return {
    'kube-apiserver': {
      dir: 'apiserver',
      pkg: 'k8s.io/kubernetes/cmd/kube-apiserver',
      ldflags: ['-s', '-w', ...versionLdflags(kubernetes, ['k8s.io/component-base/version'])].join(' '),
    },
    etcd: { dir: 'etcd', pkg: 'go.etcd.io/etcd/server/v3', ldflags: '-s -w' },
  };
}

/** How kubectl is built: from tools/k8s/apiserver, whose go.mod lists it as a `tool` beside kube-apiserver. */
export function kubectlRecipe() {
  const { kubernetes } = controlPlaneVersions();
  return {
    dir: 'apiserver',
    pkg: 'k8s.io/kubernetes/cmd/kubectl',
    ldflags: ['-s', '-w', ...versionLdflags(kubernetes, ['k8s.io/component-base/version', 'k8s.io/client-go/pkg/version'])].join(' '),
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

/** `kubectl-<k8s version>-<12 hex of sha256(go.mod + go.sum of tools/k8s/apiserver, build flags, os/arch)>`. */
export function kubectlCacheKey() {
  const h = createHash('sha256');
  const recipe = kubectlRecipe();
  for (const f of ['go.mod', 'go.sum']) {
    const body = readFileSync(join(TOOLS_DIR, recipe.dir, f));
    h.update(`${recipe.dir}/${f}\0${body.length}\0`);
    h.update(body);
  }
  h.update(JSON.stringify(recipe));
  h.update(JSON.stringify(GO_ENV));
  h.update(`${process.platform}/${process.arch}`);
  return `kubectl-${controlPlaneVersions().kubernetes}-${h.digest('hex').slice(0, 12)}`;
}

/** Where kubectl is (or will be) for the current tools/k8s/apiserver go.mod/go.sum. */
export function kubectlPath() {
  return join(CACHE_ROOT, kubectlCacheKey(), 'kubectl');
}

/** Why kubectl cannot be had here (not cached and no `go` on PATH), or null. Synchronous, for skips. */
export function kubectlMissingReason() {
  if (existsSync(kubectlPath()) || findGo()) return null;
  return 'go missing: `go` was not found on PATH, so kubectl cannot be built from tools/k8s/apiserver (install Go >= 1.26)';
}

let inProcess;

/**
 * Resolves with the paths of kube-apiserver and etcd, building them first when they are not cached.
 * A cold build downloads ~1 GB of modules and compiles for several minutes: pre-build with
 * tools/k8s/build.sh on CI, and call this from a beforeAll/globalSetup with a generous timeout.
 * @param {import('./k8s-binaries.d.mts').EnsureOptions} [opts]
 */
export function ensureControlPlaneBinaries(opts = {}) {
  inProcess ??= doEnsure(opts).catch((err) => {
    inProcess = undefined; // let a later call retry
    throw err;
  });
  return inProcess;
}

async function doEnsure(opts) {
  const override = binDirOverride();
  const p = controlPlaneBinaryPaths();
  const done = (built) => ({ apiserver: p.apiserver, etcd: p.etcd, built });
  if (complete(p)) return done(false);
  if (override) throw new Error(`FLEETBRIDGE_K8S_BIN_DIR=${override} lacks kube-apiserver and/or etcd`);
  const recipe = buildRecipe();
  // etcd first: it is quick and shakes out proxy/toolchain problems before the long apiserver build.
  const builds = /** @type {const} */ (['etcd', 'kube-apiserver']).map((name) => {
    const { dir, pkg, ldflags } = recipe[name];
    return { name, cwd: join(TOOLS_DIR, dir), pkg, ldflags, check: ['--version'] };
  });
  const { built } = await buildCached({
    cacheRoot: CACHE_ROOT,
    key: cacheKey(),
    builds,
    goEnv: GO_ENV,
    info: { versions: controlPlaneVersions(), recipe },
    goMissing: /** @type {string} */ (controlPlaneMissingReason()),
    timeoutMs: opts.timeoutMs ?? DEFAULT_BUILD_TIMEOUT_MS,
    log: opts.log,
  });
  return done(built);
}

let kubectlInProcess;

/**
 * Resolves with the path of kubectl (the version of the control plane; kustomize built in),
 * building it first when it is not cached (~2-3 min cold). Independent of the control plane's
 * build: its own cache folder and lock.
 * @param {import('./k8s-binaries.d.mts').EnsureOptions} [opts]
 */
export function ensureKubectlBinary(opts = {}) {
  kubectlInProcess ??= (async () => {
    const recipe = kubectlRecipe();
    const { dir, built } = await buildCached({
      cacheRoot: CACHE_ROOT,
      key: kubectlCacheKey(),
      builds: [{ name: 'kubectl', cwd: join(TOOLS_DIR, recipe.dir), pkg: recipe.pkg, ldflags: recipe.ldflags, check: ['version', '--client'] }],
      goEnv: GO_ENV,
      info: { versions: { kubernetes: controlPlaneVersions().kubernetes }, recipe },
      goMissing: /** @type {string} */ (kubectlMissingReason()),
      timeoutMs: opts.timeoutMs ?? DEFAULT_BUILD_TIMEOUT_MS,
      log: opts.log,
    });
    return { kubectl: join(dir, 'kubectl'), dir, built };
  })().catch((err) => {
    kubectlInProcess = undefined; // let a later call retry
    throw err;
  });
  return kubectlInProcess;
}

// Standalone: `node tools/build/k8s-binaries.mjs` (tools/k8s/build.sh): the control plane,
// then kubectl; prints both folders.
runIfMain(
  import.meta.url,
  'k8s-binaries',
  async (opts) => ({ cp: await ensureControlPlaneBinaries(opts), kubectl: await ensureKubectlBinary(opts) }),
  ({ cp, kubectl }) => ({ dirs: [dirname(cp.apiserver), kubectl.dir], built: cp.built || kubectl.built }),
);
