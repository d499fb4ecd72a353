#!/usr/bin/env bash
# Installs Debian's nginx binary for the reload tests and prints its path on
# the last line. The package is unpacked into a cache outside the checkout
# instead of installed, so no system service is started and port 80 stays
# free; only its shared libraries are installed with apt-get when missing.
# Idempotent: a second run only prints the path.
set -euo pipefail

cache="${HOME}/.cache/phase-sidecar-test"
if [[ -x "${PHASE_TEST_NGINX:-}" ]]; then
	echo "${PHASE_TEST_NGINX}"
	exit 0
fi
for d in "${cache}"/nginx-*/usr/sbin; do
	if [[ -x "${d}/nginx" ]] && "${d}/nginx" -v >/dev/null 2>&1; then
		echo "${d}/nginx"
		exit 0
	fi
done

export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show nginx >/dev/null 2>&1; then
	apt-get update >&2
fi
libs=(libcrypt1 libpcre2-8-0 libssl3 zlib1g)
missing=()
for p in "${libs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	apt-get update >&2 || true
	apt-get install -y --no-install-recommends "${missing[@]}" >&2
fi

version="$(apt-cache policy nginx | awk '/Candidate:/ {print $2}')"
[[ -n "${version}" && "${version}" != "(none)" ]] || { echo "nginx.sh: no nginx package candidate" >&2; exit 1; }
dir="${cache}/nginx-${version}"
tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT
(cd "${tmp}" && apt-get download "nginx=${version}" >&2)
mkdir -p "${dir}.tmp"
dpkg-deb -x "${tmp}"/nginx_*.deb "${dir}.tmp"
rm -rf "${dir}"
mv "${dir}.tmp" "${dir}"
"${dir}/usr/sbin/nginx" -v >&2
echo "${dir}/usr/sbin/nginx"
