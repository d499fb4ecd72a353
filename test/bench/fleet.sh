#!/usr/bin/env bash
# Issue 11's fleet benchmark: PHASE_FLEET_N (default 200) phase-sidecar
# processes, 10 paths each, refresh 10s, against a Vault dev server and
# against moto (Secrets Manager and SSM) through the counting proxy of
# test/fleet, with a 40 s outage (PHASE_FLEET_FAULT: 503 by default; 429,
# throttle, drop, quota). Prints the per-second counts and a markdown table; with
# PHASE_FLEET_AGENT=1 it also runs the Vault Agent comparison (N=20 unless
# PHASE_FLEET_N is set). Every PHASE_FLEET_* setting is listed in
# test/fleet/fleet_test.go.
#
#   test/bench/fleet.sh                       # vault, aws-sm, aws-ssm, aws (half each), N=200
#   PHASE_FLEET_N=50 PHASE_FLEET_BACKENDS=vault test/bench/fleet.sh
#   PHASE_FLEET_OUT=/tmp/fleet test/bench/fleet.sh   # CSVs and table.md there
#   PHASE_FLEET_AGENT=1 PHASE_FLEET_BACKENDS=none test/bench/fleet.sh   # the Vault Agent comparison alone
set -euo pipefail
cd "$(dirname "$0")/../.."

if [[ -z "${PHASE_TEST_VAULT:-}" ]]; then
	PHASE_TEST_VAULT=$(test/tools/vault.sh | tail -n1)
	export PHASE_TEST_VAULT
fi
if [[ -z "${PHASE_TEST_MOTO_PYTHON:-}" ]]; then
	PHASE_TEST_MOTO_PYTHON=$(test/tools/moto.sh | tail -n1)
	export PHASE_TEST_MOTO_PYTHON
fi
if [[ -n "${PHASE_FLEET_OUT:-}" ]]; then
	mkdir -p "${PHASE_FLEET_OUT}"
fi
export PHASE_FLEET_BENCH=1
run='^TestFleetBench$'
if [[ "${PHASE_FLEET_AGENT:-}" == 1 ]]; then
	run='^(TestFleetBench|TestFleetVaultAgent)$'
fi
# A failed tool lookup must fail, not skip.
export CI="${CI:-true}"
exec go test -count=1 -v -timeout 90m -run "${run}" ./test/fleet/
