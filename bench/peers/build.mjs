// Builds the opamp-go peer of the side-by-side fleet benchmark (bench/peers/opamp-go-server) into
// the git-ignored cache .cache/bench/<key>/opamp-go-server and reuses it when present.
//
//   node bench/peers/build.mjs    # prints the binary's path on stdout (timings on stderr)
//
// <key>: 12 hex digits of sha256 over go.mod, go.sum and main.go (names and contents), the Go
// environment and os/arch. Locking, the temporary folder and the rename into place are
// buildCached()'s (tools/build/cached-build.mjs): concurrent callers never see half a binary.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildCached, runIfMain } from '../../tools/build/cached-build.mjs';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const PEER_DIR = join(REPO_ROOT, 'bench', 'peers', 'opamp-go-server');
const CACHE_ROOT = join(REPO_ROOT, '.cache', 'bench');
const NAME = 'opamp-go-server';
const SOURCES = ['go.mod', 'go.sum', 'main.go'];

/** go.sum is complete: the build never rewrites go.mod/go.sum and never fetches a toolchain. */
const GO_ENV = { CGO_ENABLED: '0', GOWORK: 'off', GOFLAGS: '-mod=readonly -buildvcs=false', GOTOOLCHAIN: 'local' };
const BUILD_TIMEOUT_MS = 10 * 60_000;

export function cacheKey() {
  const h = createHash('sha256');
  for (const f of SOURCES) {
    const body = readFileSync(join(PEER_DIR, f));
    h.update(`${f}\0${body.length}\0`);
    h.update(body);
  }
  h.update(JSON.stringify(GO_ENV));
  h.update(`${process.platform}/${process.arch}`);
  return h.digest('hex').slice(0, 12);
}

/**
 * Builds the peer unless it is cached, and resolves with the binary's path.
 * @param {{ log?: (line: string) => void }} [opts]
 * @returns {Promise<string>}
 */
export async function ensureOpampGoServer(opts = {}) {
  return (await build(opts)).path;
}

/** @param {{ log?: (line: string) => void }} opts */
async function build({ log } = {}) {
  const { dir, built } = await buildCached({
    cacheRoot: CACHE_ROOT,
    key: cacheKey(),
    builds: [{ name: NAME, cwd: PEER_DIR, pkg: '.', ldflags: '-s -w', check: ['-version'] }],
    goEnv: GO_ENV,
    info: { peer: 'opamp-go-server', sources: SOURCES },
    goMissing: '`go` was not found on PATH; the opamp-go peer server cannot be built (install Go >= 1.24)',
    timeoutMs: BUILD_TIMEOUT_MS,
    log,
  });
  return { path: join(dir, NAME), built };
}

runIfMain(import.meta.url, 'bench-peers', build, (r) => ({ dirs: [r.path], built: r.built }));
