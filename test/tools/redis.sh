#!/usr/bin/env bash
# Installs Debian's redis-server when missing and prints its path on the last
# stdout line. The Vault tests run it on 127.0.0.1 as the database behind
# Vault's redis-database-plugin (leased, renewable credentials).
# Exported by test/ci.sh as PHASE_TEST_REDIS.
set -euo pipefail

if ! command -v redis-server >/dev/null 2>&1; then
	echo "redis.sh: installing redis-server with apt-get" >&2
	sudo_cmd=""
	[[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
	${sudo_cmd} apt-get update >&2
	DEBIAN_FRONTEND=noninteractive ${sudo_cmd} apt-get install -y --no-install-recommends redis-server >&2
	# The package starts a system service where init allows it; the tests
	# start their own server on a free port.
fi
command -v redis-server
