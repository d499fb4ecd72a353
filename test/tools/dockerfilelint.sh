#!/usr/bin/env bash
# Installs dockerfilelint (npm) into a cache outside the checkout and prints
# its path on the last line of stdout. Idempotent.
# env: PHASE_TEST_DOCKERFILELINT
set -euo pipefail

version=1.8.0
cache="${HOME}/.cache/phase-sidecar-test/dockerfilelint-${version}"
bin="${cache}/node_modules/.bin/dockerfilelint"

if [[ ! -x "$bin" ]]; then
	if ! command -v npm >/dev/null 2>&1; then
		export DEBIAN_FRONTEND=noninteractive
		apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
		apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends npm >&2
	fi
	mkdir -p "$cache"
	npm install --prefix "$cache" --no-audit --no-fund --loglevel=error "dockerfilelint@${version}" >&2
fi

echo "$bin"
