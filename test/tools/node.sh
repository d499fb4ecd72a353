#!/usr/bin/env bash
# Prints the path of node on the last stdout line, installing Debian's
# nodejs when there is none. The Phase kit tests run a Next.js-shaped
# server with it (the process that retitles itself "next-server (vX)").
# Exported by test/ci.sh as PHASE_TEST_NODE.
set -euo pipefail

if ! command -v node >/dev/null 2>&1; then
	echo "node.sh: installing nodejs with apt-get" >&2
	sudo_cmd=""
	[[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
	${sudo_cmd} apt-get update >&2
	DEBIAN_FRONTEND=noninteractive ${sudo_cmd} apt-get install -y --no-install-recommends nodejs >&2
fi
command -v node
