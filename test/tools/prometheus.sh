#!/usr/bin/env bash
# Installs Prometheus and promtool (Debian's prometheus package) when missing
# and prints a path on the last line of stdout:
#   test/tools/prometheus.sh             -> prometheus (the server)
#   test/tools/prometheus.sh --promtool  -> promtool (test/tools/promtool.sh)
# env: PHASE_TEST_PROMETHEUS
# Idempotent. The package's own service is stopped and disabled: tests start
# their own server on free ports with their own data dir.
set -euo pipefail

want=prometheus
if [[ "${1:-}" == "--promtool" ]]; then
	want=promtool
fi

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
	export DEBIAN_FRONTEND=noninteractive
	# Keep the packaged daemon from starting: this is a test machine.
	policy_added=0
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		policy_added=1
	fi
	apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends prometheus >&2
	if [[ $policy_added == 1 ]]; then
		rm -f /usr/sbin/policy-rc.d
	fi
fi

command -v "$want"
