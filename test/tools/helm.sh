#!/usr/bin/env bash
# Builds helm from the Go module proxy into a cache outside the checkout
# (the injector chart's lint and install tests use it) and prints its path
# on the last line.
# env: PHASE_TEST_HELM
set -euo pipefail
v=v4.3.2
dir="$HOME/.cache/phase-sidecar-test/helm-$v"
if [ ! -x "$dir/helm" ]; then
  # Its own module graph, outside this checkout's go.mod.
  (cd "$(mktemp -d)" && GOFLAGS=-mod=mod GOBIN="$dir" go install "helm.sh/helm/v4/cmd/helm@$v") >&2
fi
echo "$dir/helm"
