#!/usr/bin/env bash
# Builds the Vault binary used by the integration tests (dev server, CLI) from
# the Go module proxy and prints its path on the last stdout line.
#
#   PHASE_TEST_VAULT=$(test/tools/vault.sh | tail -n1)
#
# Vault is not a Debian package but it is a Go module. test/tools/vault/ is a
# wrapper module whose main calls command.Run. Vault's module zip on the proxy
# leaves out its in-tree sdk (a nested module), and the in-tree code does not
# compile against any published sdk at three call sites, so this script copies
# the module into a folder it owns, makes three one-line compatibility edits
# (checked below), points a replace at the copy and builds with -trimpath.
#
# Idempotent: the binary is cached by version under
# $HOME/.cache/phase-sidecar-test/vault-<version>/vault; a second run only
# prints the path. A cold build takes ~8 minutes and ~8 GB of Go caches.
set -euo pipefail

VERSION=1.21.4
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE="${HOME}/.cache/phase-sidecar-test/vault-${VERSION}"
BIN="${CACHE}/vault"

log() { echo "vault.sh: $*" >&2; }

if [[ -x "${BIN}" ]] && "${BIN}" version >/dev/null 2>&1; then
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
if [[ -x "${BIN}" ]] && "${BIN}" version >/dev/null 2>&1; then
	echo "${BIN}"
	exit 0
fi

export GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0

# 1. The module source, copied out of the read-only module cache.
SRC="${CACHE}/src"
if [[ ! -f "${SRC}/.patched" ]]; then
	log "downloading github.com/hashicorp/vault@v${VERSION}"
	dir=$(cd "${HERE}/vault" && go mod download -json "github.com/hashicorp/vault@v${VERSION}" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	if [[ -z "${dir}" || ! -d "${dir}" ]]; then
		log "go mod download did not report a module directory"
		exit 1
	fi
	rm -rf "${SRC}" "${SRC}.tmp"
	cp -R "${dir}" "${SRC}.tmp"
	chmod -R u+w "${SRC}.tmp"

	# 2. The three compatibility edits for the published sdk v0.21.0, whose
	# framework.Backend.ActivationFunc takes an extra string argument and whose
	# LockManager.RestorePolicy returns only an error.
	edit() { # file, sed expression, text that must be present afterwards
		sed -i "$2" "${SRC}.tmp/$1"
		if ! grep -qF -- "$3" "${SRC}.tmp/$1"; then
			log "compatibility edit did not apply to $1"
			exit 1
		fi
	}
	edit vault/identity_store.go \
		's/ActivationFunc: iStore.activateDeduplication,/ActivationFunc: func(ctx context.Context, req *logical.Request, _ string) error { return iStore.activateDeduplication(ctx, req) },/' \
		'_ string) error { return iStore.activateDeduplication(ctx, req) }'
	edit vault/logical_system_activation_flags.go \
		's/b.idStoreBackend.ActivationFunc(ctx, nil)/b.idStoreBackend.ActivationFunc(ctx, nil, "")/' \
		'ActivationFunc(ctx, nil, "")'
	edit builtin/logical/transit/path_restore.go \
		's/restoredKeyName, err := b.lm.RestorePolicy(/restoredKeyName, err := keyName, b.lm.RestorePolicy(/' \
		'restoredKeyName, err := keyName, b.lm.RestorePolicy('
	touch "${SRC}.tmp/.patched"
	mv "${SRC}.tmp" "${SRC}"
fi

# 3. The wrapper module (committed go.mod/go.sum pin every dependency),
# copied next to the source so the replace can use a path we own.
WRAP="${CACHE}/wrapper"
rm -rf "${WRAP}"
mkdir -p "${WRAP}"
cp "${HERE}/vault/go.mod" "${HERE}/vault/go.sum" "${HERE}/vault/main.go" "${WRAP}/"
(cd "${WRAP}" && go mod edit -replace "github.com/hashicorp/vault=${SRC}")

# To bump the version: edit VERSION and vault/go.mod, then run once with
# VAULT_SH_TIDY=1 to regenerate the committed vault/go.mod and vault/go.sum.
if [[ "${VAULT_SH_TIDY:-}" == 1 ]]; then
	(cd "${WRAP}" && go mod tidy)
	cp "${WRAP}/go.sum" "${HERE}/vault/go.sum"
	cp "${WRAP}/go.mod" "${HERE}/vault/go.mod"
	(cd "${HERE}/vault" && go mod edit -dropreplace github.com/hashicorp/vault)
fi

log "building vault ${VERSION} (several minutes on a cold cache)"
(cd "${WRAP}" && go build -trimpath -ldflags "-s -w" -o "${BIN}.tmp" .)
mv "${BIN}.tmp" "${BIN}"
"${BIN}" version >&2
echo "${BIN}"
