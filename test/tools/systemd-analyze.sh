#!/usr/bin/env bash
# Installs systemd-analyze (Debian's systemd package) when missing and prints
# its path on the last line of stdout. Only `systemd-analyze verify` is used:
# it needs no running systemd.
# env: PHASE_TEST_SYSTEMD_ANALYZE
set -euo pipefail

if ! command -v systemd-analyze >/dev/null 2>&1; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends systemd >&2
fi

command -v systemd-analyze
