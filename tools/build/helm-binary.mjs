// Builds helm (helm.sh/helm/v3/cmd/helm, a `tool` of the Go module in tools/helm) into
// .cache/helm/<helm version>-<hash>/helm and reuses it when present.
//
// Plain JavaScript (typed by helm-binary.d.mts) so that it runs both inside vitest (through
// test/harness/helm/binaries.ts) and standalone with Node 20, which cannot run TypeScript:
//
//   node tools/build/helm-binary.mjs      # what tools/helm/build.sh runs; prints timings
//
// <hash> covers the Go sources of tools/helm (go.mod, go.sum, any *.go), the build flags, the Go
// environment and os/arch (not the Go toolchain version: build-info.json records it). Locking, the
// temporary build folder and the rename into place are cached-build.mjs's buildCached(): one
// builder at a time, and nobody sees half a binary.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildCached, findGo, GO_ENV, REPO_ROOT, requiredVersion, runIfMain } from './cached-build.mjs';

export { findGo, REPO_ROOT };
export const TOOLS_DIR = join(REPO_ROOT, 'tools', 'helm');
export const CACHE_ROOT = join(REPO_ROOT, '.cache', 'helm');

const DEFAULT_BUILD_TIMEOUT_MS = 30 * 60_000;

/** helm's version, and the client-go version it is built against (which sets its default Kubernetes version), from tools/helm/go.mod. */
export function helmVersions() {
  const goMod = readFileSync(join(TOOLS_DIR, 'go.mod'), 'utf8');
  const helm = requiredVersion(goMod, 'helm.sh/helm/v3');
  const clientGo = requiredVersion(goMod, 'k8s.io/client-go');
  if (!helm || !clientGo) throw new Error(`cannot read the helm.sh/helm/v3 / k8s.io/client-go versions from ${TOOLS_DIR}/go.mod`);
  return { helm, clientGo };
}

/**
 * How helm is built: helm's own Makefile flags. Module zips carry no git data, so the version is
 * stamped with -X (else `helm version` says "v3.22"), and so is the Kubernetes version that
 * `helm template`/`lint` assume (.Capabilities.KubeVersion), which the Makefile derives from client-go
 * (v0.X.Y → 1.X).
 */
export function buildRecipe() {
  const { helm, clientGo } = helmVersions();
  const minor = /^v0\.(\d+)\./.exec(clientGo)?.[1] ?? '';
  const v = 'helm.sh/helm/v3/internal/version';
  return {
    pkg: 'helm.sh/helm/v3/cmd/helm',
    ldflags: [
      '-s', '-w',
      `-X ${v}.version=${helm}`,
      `-X ${v}.gitTreeState=clean`,
      ...['pkg/lint/rules', 'pkg/chartutil'].flatMap((p) => [`-X helm.sh/helm/v3/${p}.k8sVersionMajor=1`, `-X helm.sh/helm/v3/${p}.k8sVersionMinor=${minor}`]),
    ].join(' '),
  };
}

/** `<helm version>-<12 hex of sha256(go.mod, go.sum and *.go of tools/helm, recipe, Go env, os/arch)>`. */
export function cacheKey() {
  const h = createHash('sha256');
  const files = readdirSync(TOOLS_DIR).filter((f) => f === 'go.mod' || f === 'go.sum' || f.endsWith('.go'));
  for (const f of files.sort()) {
    const body = readFileSync(join(TOOLS_DIR, f));
    h.update(`${f}\0${body.length}\0`);
    h.update(body);
  }
  h.update(JSON.stringify(buildRecipe()));
  h.update(JSON.stringify(GO_ENV));
  h.update(`${process.platform}/${process.arch}`);
  return `${helmVersions().helm}-${h.digest('hex').slice(0, 12)}`;
}

/** Where helm is (or will be) for the current tools/helm sources. */
export function helmPath() {
  return join(CACHE_ROOT, cacheKey(), 'helm');
}

/** Why helm cannot be had here (not cached and no `go` on PATH), or null. Synchronous, for skips. */
export function helmMissingReason() {
  if (existsSync(helmPath()) || findGo()) return null;
  return 'go missing: `go` was not found on PATH, so helm cannot be built from tools/helm (install Go >= 1.26)';
}

let inProcess;

/**
 * Resolves with the path of helm, building it first when it is not cached (a few minutes cold:
 * pre-build with tools/helm/build.sh on CI, and call this from a beforeAll with a generous timeout).
 * @param {import('./helm-binary.d.mts').EnsureOptions} [opts]
 */
export function ensureHelmBinary(opts = {}) {
  inProcess ??= (async () => {
    const recipe = buildRecipe();
    const { dir, built } = await buildCached({
      cacheRoot: CACHE_ROOT,
      key: cacheKey(),
      builds: [{ name: 'helm', cwd: TOOLS_DIR, pkg: recipe.pkg, ldflags: recipe.ldflags, check: ['version', '--short'] }],
      goEnv: GO_ENV,
      info: { versions: helmVersions(), recipe },
      goMissing: /** @type {string} */ (helmMissingReason()),
      timeoutMs: opts.timeoutMs ?? DEFAULT_BUILD_TIMEOUT_MS,
      log: opts.log,
    });
    return { helm: join(dir, 'helm'), dir, built };
  })().catch((err) => {
    inProcess = undefined; // let a later call retry
    throw err;
  });
  return inProcess;
}

// Standalone: `node tools/build/helm-binary.mjs` (tools/helm/build.sh).
runIfMain(import.meta.url, 'helm-binary', ensureHelmBinary, (r) => ({ dirs: [r.dir], built: r.built }));
