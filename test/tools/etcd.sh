#!/usr/bin/env bash
# Installs Debian's etcd-server when missing and prints the path of etcd on
# the last stdout line: the store behind the kube-apiserver that
# test/servers.Kube starts (each test runs its own etcd on free ports of
# 127.0.0.1, in a directory of its own). Exported by test/ci.sh as
# PHASE_TEST_ETCD. The package's own service is not needed.
set -euo pipefail

bin=$(command -v etcd || true)
if [[ -z "${bin}" ]]; then
	echo "etcd.sh: installing etcd-server with apt-get" >&2
	sudo_cmd=""
	[[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
	${sudo_cmd} apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
	DEBIAN_FRONTEND=noninteractive ${sudo_cmd} apt-get -o DPkg::Lock::Timeout=600 \
		install -y -qq --no-install-recommends etcd-server >&2
	bin=$(command -v etcd || true)
fi
if [[ -z "${bin}" ]] || ! "${bin}" --version >/dev/null 2>&1; then
	echo "etcd.sh: no working etcd after installing etcd-server" >&2
	exit 1
fi
echo "${bin}"
