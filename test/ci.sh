#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs or builds what the
# tests need (apt packages, Go tools, a Vault server, emulators; cached under
# ~/.cache/phase-sidecar-test), then runs gofmt, go vet, staticcheck, every
# test with -race, the fuzz tests briefly, the deploy kit's tests and the
# contract smoke check. It installs every tool first, so a test that finds
# one missing fails instead of skipping: CI is true unless set (CI=false
# lets tests skip, as plain `go test` does).
set -euo pipefail
cd "$(dirname "$0")/.."
ci_given="${CI:-}" # what the caller said, before the default
export CI="${CI:-true}"
export DEBIAN_FRONTEND=noninteractive # apt-get in the tool scripts never prompts
fuzztime="${FUZZTIME:-10s}"
log=$(mktemp -d -t phase-sidecar-ci.XXXXXX)
step() { printf '\n=== %s (%s)\n' "$*" "$(date +%T)"; }

# tool VAR SCRIPT: run an install script, export its last stdout line as VAR.
tool() {
  local var=$1 script=$2 out
  if ! out=$("$script" 2>"$log/$(basename "$script").err"); then
    echo "ci: $script failed:" >&2; tail -40 "$log/$(basename "$script").err" >&2
    return 1
  fi
  export "$var=$(printf '%s\n' "$out" | tail -n 1)"
  echo "$var=${!var}"
}

step "tools"
if ! command -v unshare >/dev/null || ! command -v curl >/dev/null; then
  apt-get update -qq && apt-get install -y -qq util-linux curl >/dev/null
fi
# The Vault and kube-apiserver builds are the longest; they run while the
# rest installs.
test/tools/vault.sh >"$log/vault.out" 2>"$log/vault.err" & vault_pid=$!
test/tools/kube-apiserver.sh >"$log/kube.out" 2>"$log/kube.err" & kube_pid=$!
tool STATICCHECK test/tools/staticcheck.sh
for t in test/tools/*.sh; do
  name=$(basename "$t" .sh)
  case "$name" in vault|staticcheck|kube-apiserver) continue ;; esac
  # A script names its variable in a "# env: NAME" line, else PHASE_TEST_<NAME>.
  var=$(sed -n 's/^# env: *\([A-Z0-9_]*\).*/\1/p' "$t" | head -n 1)
  [ -n "$var" ] || var="PHASE_TEST_$(printf '%s' "$name" | tr 'a-z-' 'A-Z_')"
  tool "$var" "$t"
done
if ! wait "$vault_pid"; then echo "ci: test/tools/vault.sh failed:" >&2; tail -40 "$log/vault.err" >&2; exit 1; fi
export PHASE_TEST_VAULT=$(tail -n 1 "$log/vault.out"); echo "PHASE_TEST_VAULT=$PHASE_TEST_VAULT"
if ! wait "$kube_pid"; then echo "ci: test/tools/kube-apiserver.sh failed:" >&2; tail -40 "$log/kube.err" >&2; exit 1; fi
export PHASE_TEST_KUBE_APISERVER=$(tail -n 1 "$log/kube.out"); echo "PHASE_TEST_KUBE_APISERVER=$PHASE_TEST_KUBE_APISERVER"

step "gofmt, go vet, staticcheck"
bad=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$bad" ]; then echo "gofmt would change:"; echo "$bad"; exit 1; fi
go vet ./...
"$STATICCHECK" ./...

step "go test -race ./..."
go test -race -count=1 -timeout 30m ./...

if [ -f deploy/go.mod ]; then
  step "deploy kit: go vet, staticcheck, go test -race"
  (cd deploy && go vet ./... && "$STATICCHECK" ./... && go test -race -count=1 -timeout 20m ./...)
fi

step "fuzz ($fuzztime each)"
go test -run='^$' -fuzz='^FuzzParseRef$' -fuzztime="$fuzztime" ./pkg/sources
go test -run='^$' -fuzz='^FuzzParse$' -fuzztime="$fuzztime" ./pkg/config

step "contract smoke"
if [ -x ../shared/checks/contract-smoke ]; then
  ../shared/checks/contract-smoke
else
  # It lives beside the checkout, not in it: a CI runner (which sets CI)
  # must have it; a developer's clone elsewhere may not.
  echo "ci: ../shared/checks/contract-smoke not found beside the checkout" >&2
  case "$ci_given" in "" | false | 0) ;; *) exit 1 ;; esac
fi
echo
echo "ci: all checks passed"
