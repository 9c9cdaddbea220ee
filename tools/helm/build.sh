#!/usr/bin/env bash
# Pre-builds helm (helm.sh/helm/v3/cmd/helm, pinned in go.mod beside this file) for the Helm chart
# tests into .cache/helm/<version>-<hash of tools/helm>/helm and prints timings on stderr and the
# binary's folder on stdout. Instant when that folder exists already. Same code, cache and lock as
# the tests use (tools/build/helm-binary.mjs), so it is safe to run while tests run.
# Needs go (>= 1.26) and node (>= 20) on PATH, and the Go module proxy.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec node tools/build/helm-binary.mjs "$@"
