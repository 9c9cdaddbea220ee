// Builds the OpenTelemetry binaries for the end-to-end tests from the Go modules in tools/otel:
//   - tools/otel/collector  -> otelcol-fleetbridge (our minimal collector distribution, our main.go)
//   - tools/otel/supervisor -> opampsupervisor     (the upstream main package, a `tool` of that module)
// into .cache/otel/<hash>/ and reuses them when present (see docs/adr/0004-otel-agents-from-go-modules.md).
//
// Plain JavaScript (typed by otel-binaries.d.mts) so that it runs both inside vitest (through
// test/harness/otel/binaries.ts) and standalone with Node 20, which cannot run TypeScript:
//
//   node tools/build/otel-binaries.mjs      # what tools/otel/build.sh runs; prints timings
//
// <hash> covers go.mod, go.sum and every *.go file of both modules, the build flags, the Go
// environment and os/arch (not the Go toolchain version: the build info records it, see build-info.json).
//
// Locking, the temporary build folder and the rename into place are cached-build.mjs's
// buildCached(): one builder at a time per cache key, and nobody ever sees half a binary.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { buildCached, findGo, GO_ENV, REPO_ROOT, requiredVersion, runIfMain } from './cached-build.mjs';

export { findGo, REPO_ROOT };
export const TOOLS_DIR = join(REPO_ROOT, 'tools', 'otel');
export const CACHE_ROOT = join(REPO_ROOT, '.cache', 'otel');

const DEFAULT_BUILD_TIMEOUT_MS = 30 * 60_000;
const SUPERVISOR_PKG = 'github.com/open-telemetry/opentelemetry-collector-contrib/cmd/opampsupervisor';

/** What is built: output name → module folder, package, and how to check the result runs. */
export function buildRecipe() {
  return {
    'otelcol-fleetbridge': { dir: 'collector', pkg: '.', ldflags: '-s -w', check: ['--version'] },
    opampsupervisor: { dir: 'supervisor', pkg: SUPERVISOR_PKG, ldflags: '-s -w', check: ['--help'] },
  };
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

let inProcess;

/**
 * Resolves with the paths of the collector and the supervisor, building them first when they are
 * not cached. A cold build downloads ~300 MB of modules and compiles for a few minutes: pre-build
 * with tools/otel/build.sh on CI, and call this from a beforeAll with a generous timeout.
 * @param {import('./otel-binaries.d.mts').EnsureOptions} [opts]
 */
export function ensureOtelBinaries(opts = {}) {
  inProcess ??= doEnsure(opts).catch((err) => {
    inProcess = undefined; // let a later call retry
    throw err;
  });
  return inProcess;
}

async function doEnsure(opts) {
  const override = binDirOverride();
  const p = otelBinaryPaths();
  const done = (built) => ({ collector: p.collector, supervisor: p.supervisor, dir: p.dir, built });
  if (complete(p)) return done(false);
  if (override) throw new Error(`FLEETBRIDGE_OTEL_BIN_DIR=${override} lacks otelcol-fleetbridge and/or opampsupervisor`);
  const recipe = buildRecipe();
  // The supervisor first: it is the smaller build and shakes out proxy/toolchain problems early.
  const builds = /** @type {const} */ (['opampsupervisor', 'otelcol-fleetbridge']).map((name) => {
    const { dir, pkg, ldflags, check } = recipe[name];
    return { name, cwd: join(TOOLS_DIR, dir), pkg, ldflags, check };
  });
  const { built } = await buildCached({
    cacheRoot: CACHE_ROOT,
    key: cacheKey(),
    builds,
    goEnv: GO_ENV,
    info: { versions: otelVersions(), recipe },
    goMissing: /** @type {string} */ (otelMissingReason()),
    timeoutMs: opts.timeoutMs ?? DEFAULT_BUILD_TIMEOUT_MS,
    log: opts.log,
  });
  return done(built);
}

// Standalone: `node tools/build/otel-binaries.mjs` (tools/otel/build.sh).
runIfMain(import.meta.url, 'otel-binaries', ensureOtelBinaries, (r) => ({ dirs: [r.dir], built: r.built }));
