// Types for k8s-binaries.mjs (plain JavaScript so that Node 20 can run it without a TypeScript loader).

export declare const REPO_ROOT: string;
export declare const TOOLS_DIR: string;
export declare const CACHE_ROOT: string;

export interface EnsureOptions {
  /** Progress lines (build start/end with timings, waiting for another builder's lock). Default: silent. */
  log?: (line: string) => void;
  /** Bound on waiting for a lock plus building; default 40 min. A lock older than this is treated as stale. */
  timeoutMs?: number;
}

export interface ControlPlaneBinaries {
  apiserver: string;
  etcd: string;
  /** True when this call compiled them, false when they were cached. */
  built: boolean;
}

export interface KubectlBinary {
  kubectl: string;
  /** The cache folder holding it (and build-info.json after a build). */
  dir: string;
  /** True when this call compiled it, false when it was cached. */
  built: boolean;
}

export declare function controlPlaneVersions(): { kubernetes: string; etcd: string };
export declare function buildRecipe(): Record<'kube-apiserver' | 'etcd', { dir: string; pkg: string; ldflags: string }>;
export declare function cacheKey(): string;
export declare function findGo(): string | null;
export declare function controlPlaneBinaryPaths(): { dir: string; apiserver: string; etcd: string };
export declare function controlPlaneMissingReason(): string | null;
export declare function ensureControlPlaneBinaries(opts?: EnsureOptions): Promise<ControlPlaneBinaries>;
export declare function kubectlRecipe(): { dir: string; pkg: string; ldflags: string };
export declare function kubectlCacheKey(): string;
export declare function kubectlPath(): string;
export declare function kubectlMissingReason(): string | null;
export declare function ensureKubectlBinary(opts?: EnsureOptions): Promise<KubectlBinary>;
