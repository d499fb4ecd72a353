#!/usr/bin/env bash
# Builds Nomad v1.4.1 (the last MPL-2.0 release; Nomad is not in Debian)
# from the Go module proxy through the wrapper module in test/tools/nomad,
# caches it, and prints the binary's path on the last line of stdout.
# About 4 minutes cold on two cores; instant when cached. Needs cgo (runc's
# nsenter), so gcc is installed when missing.
# env: PHASE_TEST_NOMAD
set -euo pipefail

version=1.4.1
cache="${HOME}/.cache/phase-sidecar-test/nomad-${version}"
bin="${cache}/nomad"

if [[ -x "$bin" ]] && "$bin" version 2>/dev/null | grep -q "Nomad v${version}"; then
	echo "$bin"
	exit 0
fi

if ! command -v gcc >/dev/null 2>&1; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends gcc libc6-dev >&2
fi

mkdir -p "$cache"
cd "$(dirname "$0")/nomad"
# -mod=mod: go.sum in the wrapper lists Nomad's whole build list; a missing
# line (a new Go release asking for more) is filled in rather than failing.
CGO_ENABLED=1 GOFLAGS=-mod=mod go build -trimpath -o "${bin}.tmp" github.com/hashicorp/nomad >&2
mv "${bin}.tmp" "$bin"
"$bin" version >&2
echo "$bin"
