#!/usr/bin/env bash
# Pre-builds the OpenTelemetry Collector (tools/otel/collector) and the OpAMP Supervisor
# (tools/otel/supervisor) for the end-to-end tests (see docs/adr/0004-otel-agents-from-go-modules.md)
# into .cache/otel/<hash>/ and prints timings on stderr and the binaries' folder on stdout.
# Instant when that folder exists already. Same code, cache and lock as the tests use
# (tools/build/otel-binaries.mjs), so it is safe to run while tests run.
# Needs go (>= 1.26) and node (>= 20) on PATH, and the Go module proxy.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec node tools/build/otel-binaries.mjs "$@"
