#!/usr/bin/env bash
# Builds Kubernetes' kube-apiserver from the Go module proxy and prints its
# path on the last stdout line. test/servers.Kube runs it against etcd
# (test/tools/etcd.sh); test/ci.sh exports it as PHASE_TEST_KUBE_APISERVER.
#
#   PHASE_TEST_KUBE_APISERVER=$(test/tools/kube-apiserver.sh | tail -n1)
#
# kube-apiserver is not a Debian package, but k8s.io/kubernetes is a Go
# module. Its go.mod points each k8s.io/* library at ./staging/..., which a
# dependent module cannot use, so test/tools/kube-apiserver/ is a wrapper
# module that requires k8s.io/kubernetes and replaces each of the 33 staging
# modules with its published k8s.io/<name> v0.<minor>.<patch> release (the
# same source, tagged from staging), and names the command in a tool line.
#
# Idempotent: the binary is cached by version under
# $HOME/.cache/phase-sidecar-test/kube-apiserver-v<version>/kube-apiserver;
# a second run only prints the path. A cold build takes 3-10 minutes on two
# cores and ~2 GB of Go caches.
set -euo pipefail

VERSION=1.37.2
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE="${HOME}/.cache/phase-sidecar-test/kube-apiserver-v${VERSION}"
BIN="${CACHE}/kube-apiserver"

log() { echo "kube-apiserver.sh: $*" >&2; }
ok() { [[ -x "${BIN}" ]] && "${BIN}" --version 2>/dev/null | grep -qx "Kubernetes v${VERSION}"; }

if ok; then
	echo "${BIN}"
	exit 0
fi
if ! command -v go >/dev/null 2>&1; then
	log "go is not on PATH; install the Go toolchain used by the project first"
	exit 1
fi

mkdir -p "${CACHE}"
# One build at a time (parallel CI steps, or a developer running it twice).
exec 9>"${CACHE}/.lock"
if command -v flock >/dev/null 2>&1; then
	flock 9
fi
if ok; then
	echo "${BIN}"
	exit 0
fi

export GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0
cd "${HERE}/kube-apiserver"

# To bump the version: edit VERSION, then run once with
# KUBE_APISERVER_SH_TIDY=1: kube-apiserver/go.mod is rewritten with the
# replaces read from the new k8s.io/kubernetes go.mod, and go.sum regenerated.
if [[ "${KUBE_APISERVER_SH_TIDY:-}" == 1 ]]; then
	dir=$(go mod download -json "k8s.io/kubernetes@v${VERSION}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	goline=$(grep '^go ' go.mod)
	printf 'module %s\n\n%s\n\ntool k8s.io/kubernetes/cmd/kube-apiserver\n\nrequire k8s.io/kubernetes v%s\n' \
		"github.com/phase-sidecar/phase-sidecar/test/tools/kube-apiserver" "${goline}" "${VERSION}" >go.mod
	for m in $(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "${dir}/go.mod"); do
		go mod edit -replace "${m}=${m}@v0.${VERSION#1.}"
	done
	rm -f go.sum
	go mod tidy
fi

# The version stamp kube-apiserver --version prints (the upstream build sets
# it from git; the module zip has no git metadata).
pkg=k8s.io/component-base/version
minor=${VERSION#1.}
minor=${minor%%.*}
ldflags="-s -w -X ${pkg}.gitVersion=v${VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor} -X ${pkg}.gitTreeState=clean"

log "building kube-apiserver v${VERSION} (minutes on a cold cache)"
start=${SECONDS}
go build -trimpath -ldflags "${ldflags}" -o "${BIN}.tmp" k8s.io/kubernetes/cmd/kube-apiserver
mv "${BIN}.tmp" "${BIN}"
log "built in $((SECONDS - start))s"
"${BIN}" --version >&2
echo "${BIN}"
