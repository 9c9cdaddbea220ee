// Types for otel-binaries.mjs (plain JavaScript so that Node 20 can run it without a TypeScript loader).

export declare const REPO_ROOT: string;
export declare const TOOLS_DIR: string;
export declare const CACHE_ROOT: string;

export interface EnsureOptions {
  /** Progress lines (build start/end with timings, waiting for another builder's lock). Default: silent. */
  log?: (line: string) => void;
  /** Bound on waiting for a lock plus building; default 30 min. A lock older than this is treated as stale. */
  timeoutMs?: number;
}

export interface OtelBinaries {
  /** Our collector distribution (tools/otel/collector): otlp/nop receivers, batch/attributes/resource processors, debug/file/nop exporters, opamp/health_check extensions. */
  collector: string;
  /** The OpAMP Supervisor (cmd/opampsupervisor). */
  supervisor: string;
  /** The cache folder holding both (and build-info.json after a build). */
  dir: string;
  /** True when this call compiled them, false when they were cached. */
  built: boolean;
}

export declare function buildRecipe(): Record<'otelcol-fleetbridge' | 'opampsupervisor', { dir: string; pkg: string; ldflags: string; check: string[] }>;
export declare function otelVersions(): { collector: string; opampExtension: string; supervisor: string };
export declare function cacheKey(): string;
export declare function findGo(): string | null;
export declare function otelBinaryPaths(): { dir: string; collector: string; supervisor: string };
export declare function otelMissingReason(): string | null;
export declare function ensureOtelBinaries(opts?: EnsureOptions): Promise<OtelBinaries>;
