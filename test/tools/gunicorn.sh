#!/usr/bin/env bash
# Installs Debian's gunicorn (and python3-setproctitle, with which gunicorn
# retitles its processes "gunicorn: master [...]") when missing and prints
# its path on the last stdout line. The Phase kit tests run it as Phase's
# backend container does: gunicorn -b ADDR --workers N backend.wsgi:application.
# Exported by test/ci.sh as PHASE_TEST_GUNICORN.
set -euo pipefail

want=(gunicorn python3-setproctitle)
missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "gunicorn.sh: installing ${missing[*]} with apt-get" >&2
	sudo_cmd=""
	[[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
	${sudo_cmd} apt-get update >&2
	DEBIAN_FRONTEND=noninteractive ${sudo_cmd} apt-get install -y --no-install-recommends "${missing[@]}" >&2
fi
command -v gunicorn
