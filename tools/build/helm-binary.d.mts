// Types for helm-binary.mjs (plain JavaScript so that Node 20 can run it without a TypeScript loader).

export declare const REPO_ROOT: string;
export declare const TOOLS_DIR: string;
export declare const CACHE_ROOT: string;

export interface EnsureOptions {
  /** Progress lines (build start/end with timings, waiting for another builder's lock). Default: silent. */
  log?: (line: string) => void;
  /** Bound on waiting for a lock plus building; default 30 min. A lock older than this is treated as stale. */
  timeoutMs?: number;
}

export interface HelmBinary {
  helm: string;
  /** The cache folder holding it (and build-info.json after a build). */
  dir: string;
  /** True when this call compiled it, false when it was cached. */
  built: boolean;
}

export declare function helmVersions(): { helm: string; clientGo: string };
export declare function buildRecipe(): { pkg: string; ldflags: string };
export declare function cacheKey(): string;
export declare function findGo(): string | null;
export declare function helmPath(): string;
export declare function helmMissingReason(): string | null;
export declare function ensureHelmBinary(opts?: EnsureOptions): Promise<HelmBinary>;
