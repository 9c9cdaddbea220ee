/**
 * kube-apiserver and etcd for the Kubernetes integration tests, built from the Go modules in
 * tools/k8s/{apiserver,etcd} (see docs/adr/0002-envtest-from-go-modules.md) and cached in
 * `.cache/k8s/<k8s version>-<hash of go.mod + go.sum + flags>/{kube-apiserver,etcd}`.
 *
 * The logic lives in build-binaries.mjs so that tools/k8s/build.sh can run it with plain Node 20;
 * this module is the typed entry point for the tests.
 *
 * ```ts
 * const { apiserver, etcd } = await ensureControlPlaneBinaries(); // instant when cached
 * ```
 */
export {
  cacheKey,
  controlPlaneBinaryPaths,
  controlPlaneMissingReason,
  controlPlaneVersions,
  findGo,
  type ControlPlaneBinaries,
  type EnsureOptions,
} from './build-binaries.mjs';
import { ensureControlPlaneBinaries as ensure, type ControlPlaneBinaries, type EnsureOptions } from './build-binaries.mjs';

/**
 * Paths of kube-apiserver and etcd, building them first when they are not cached (one builder at a
 * time across processes; a half-written binary is never visible). A cold build takes minutes.
 */
export function ensureControlPlaneBinaries(opts?: EnsureOptions): Promise<ControlPlaneBinaries> {
  return ensure(opts);
}
