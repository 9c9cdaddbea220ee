/**
 * kube-apiserver and etcd for the Kubernetes integration tests, built from the Go modules in
 * tools/k8s/{apiserver,etcd} (see docs/adr/0002-envtest-from-go-modules.md) and cached in
 * `.cache/k8s/<k8s version>-<hash of go.mod + go.sum + flags>/{kube-apiserver,etcd}`; and kubectl
 * of the same version (from tools/k8s/apiserver too), cached in its own folder
 * `.cache/k8s/kubectl-<k8s version>-<hash>/kubectl`.
 *
 * The logic lives in tools/build/k8s-binaries.mjs so that tools/k8s/build.sh can run it with plain Node 20;
 * this module is the typed entry point for the tests.
 *
 * ```ts
 * const { apiserver, etcd } = await ensureControlPlaneBinaries(); // instant when cached
 * const kubectl = await ensureKubectl(); // likewise; never needed by the control plane itself
 * ```
 */
export {
  cacheKey,
  controlPlaneBinaryPaths,
  controlPlaneMissingReason,
  controlPlaneVersions,
  findGo,
  kubectlCacheKey,
  kubectlMissingReason,
  kubectlPath,
  type ControlPlaneBinaries,
  type EnsureOptions,
  type KubectlBinary,
} from '../../../tools/build/k8s-binaries.mjs';
import {
  ensureControlPlaneBinaries as ensure,
  ensureKubectlBinary,
  type ControlPlaneBinaries,
  type EnsureOptions,
} from '../../../tools/build/k8s-binaries.mjs';

/**
 * Paths of kube-apiserver and etcd, building them first when they are not cached (one builder at a
 * time across processes; a half-written binary is never visible). A cold build takes minutes.
 */
export function ensureControlPlaneBinaries(opts?: EnsureOptions): Promise<ControlPlaneBinaries> {
  return ensure(opts);
}

/**
 * Path of kubectl (k8s.io/kubernetes/cmd/kubectl at the control plane's version, kustomize built in),
 * building it first when it is not cached (its own cache folder and lock: it never delays
 * ensureControlPlaneBinaries()). A cold build takes a few minutes.
 */
export async function ensureKubectl(opts?: EnsureOptions): Promise<string> {
  return (await ensureKubectlBinary(opts)).kubectl;
}
