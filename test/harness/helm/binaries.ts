/**
 * helm (v3, pinned in tools/helm/go.mod) for the Helm chart tests, built from the Go module proxy
 * with `go build` and cached in `.cache/helm/<helm version>-<hash of tools/helm>/helm`.
 *
 * The logic lives in tools/build/helm-binary.mjs so that tools/helm/build.sh can run it with plain Node 20;
 * this module is the typed entry point for the tests.
 *
 * ```ts
 * if (skipUnlessOnCi(file, helmMissingReason())) ...
 * const helm = await ensureHelm(); // instant when cached
 * ```
 */
export { cacheKey, helmMissingReason, helmPath, helmVersions, type EnsureOptions, type HelmBinary } from '../../../tools/build/helm-binary.mjs';
import { ensureHelmBinary, type EnsureOptions } from '../../../tools/build/helm-binary.mjs';

/**
 * Path of the helm binary, building it first when it is not cached (one builder at a time across
 * processes; a half-written binary is never visible). A cold build takes a few minutes.
 */
export async function ensureHelm(opts?: EnsureOptions): Promise<string> {
  return (await ensureHelmBinary(opts)).helm;
}
