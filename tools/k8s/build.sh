#!/usr/bin/env bash
# Pre-builds kube-apiserver and etcd for the Kubernetes integration tests (see
# docs/adr/0002-envtest-from-go-modules.md) into .cache/k8s/<version>-<hash>/, then kubectl of the
# same version (a `tool` of tools/k8s/apiserver) into .cache/k8s/kubectl-<version>-<hash>/, and
# prints timings on stderr and the two folders on stdout, one a line. Instant when they exist already.
# Same code, cache and lock as the tests use (tools/build/k8s-binaries.mjs), so it is safe
# to run while tests run. Needs go (>= 1.26) and node (>= 20) on PATH.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec node tools/build/k8s-binaries.mjs "$@"
