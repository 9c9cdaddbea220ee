/**
 * The OpenTelemetry Collector (our minimal distribution) and the OpAMP Supervisor for the
 * end-to-end tests, built from the Go modules in tools/otel/{collector,supervisor} (see
 * docs/adr/0004-otel-agents-from-go-modules.md) and cached in `.cache/otel/<hash>/`.
 *
 * The logic lives in tools/build/otel-binaries.mjs so that tools/otel/build.sh can run it with plain Node 20;
 * this module is the typed entry point for the tests.
 *
 * ```ts
 * if (skipUnlessOnCi(file, otelMissingReason())) ...
 * const { collector, supervisor } = await ensureOtelBinaries(); // instant when cached
 * ```
 */
export {
  cacheKey,
  findGo,
  otelBinaryPaths,
  otelMissingReason,
  otelVersions,
  type EnsureOptions,
  type OtelBinaries,
} from '../../../tools/build/otel-binaries.mjs';
import { ensureOtelBinaries as ensure, type EnsureOptions } from '../../../tools/build/otel-binaries.mjs';

/**
 * Paths of the collector and the supervisor, building them first when they are not cached (one
 * builder at a time across processes; a half-written binary is never visible). A cold build takes
 * minutes.
 */
export async function ensureOtelBinaries(opts?: EnsureOptions): Promise<{ collector: string; supervisor: string }> {
  const r = await ensure(opts);
  return { collector: r.collector, supervisor: r.supervisor };
}
