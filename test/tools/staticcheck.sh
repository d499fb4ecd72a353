#!/usr/bin/env bash
# Installs staticcheck from the Go module proxy into a cache outside the
# checkout and prints its path on the last line.
set -euo pipefail
v=v0.8.2
dir="$HOME/.cache/phase-sidecar-test/staticcheck-$v"
if [ ! -x "$dir/staticcheck" ]; then
  GOBIN="$dir" go install "honnef.co/go/tools/cmd/staticcheck@$v" >&2
fi
echo "$dir/staticcheck"
