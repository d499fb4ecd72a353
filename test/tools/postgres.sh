#!/usr/bin/env bash
# Installs Debian's postgresql when missing and prints the path of its server
# binary on the last stdout line; initdb and psql are beside it. The e2e soak
# tests run their own cluster on 127.0.0.1 (test/servers.Postgres) as the
# database behind Vault's postgresql-database-plugin. Exported by test/ci.sh
# as PHASE_TEST_POSTGRES.
set -euo pipefail

# The newest installed major version's server binary.
find_server() {
	ls -d /usr/lib/postgresql/*/bin/postgres 2>/dev/null | sort -V | tail -n 1 || true
}

bin=$(find_server)
if [[ -z "${bin}" ]]; then
	echo "postgres.sh: installing postgresql with apt-get" >&2
	sudo_cmd=""
	[[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
	${sudo_cmd} apt-get update >&2
	# The package creates the user postgres (the server refuses to run as
	# root) and, where init allows, starts a system cluster on 5432; the
	# tests start their own on a free port.
	DEBIAN_FRONTEND=noninteractive ${sudo_cmd} apt-get install -y --no-install-recommends postgresql >&2
	bin=$(find_server)
fi
dir=$(dirname "${bin:-/nonexistent/x}")
for tool in postgres initdb psql; do
	if [[ ! -x "${dir}/${tool}" ]]; then
		echo "postgres.sh: ${dir}/${tool} not found after installing postgresql" >&2
		exit 1
	fi
done
if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
	echo "postgres.sh: no user postgres to run the server as (root cannot)" >&2
	exit 1
fi
echo "${bin}"
