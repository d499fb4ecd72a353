#!/usr/bin/env bash
# Installs AWS's EC2 instance metadata mock (IMDSv1/v2 emulator) and prints
# the binary path on the last stdout line. Idempotent; the cache lives outside
# the checkout so a fresh CI clone reuses it. Exported by test/ci.sh as
# PHASE_TEST_EC2_METADATA_MOCK.
set -euo pipefail

version=v1.13.0
dir="${HOME}/.cache/phase-sidecar-test/ec2-metadata-mock-${version}"
bin="${dir}/ec2-metadata-mock"

if [[ ! -x "${bin}" ]]; then
	if ! command -v go >/dev/null 2>&1; then
		echo "ec2-metadata-mock.sh: go is not on PATH; install Go first" >&2
		exit 1
	fi
	mkdir -p "${dir}"
	echo "ec2-metadata-mock.sh: installing ec2-metadata-mock ${version} into ${dir}" >&2
	# GOFLAGS=-mod=mod: never use the caller's vendor directory or go.mod.
	(cd "${dir}" && GOBIN="${dir}" GOFLAGS=-mod=mod go install \
		"github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@${version}") >&2
fi

"${bin}" --help >/dev/null 2>&1 || {
	echo "ec2-metadata-mock.sh: ${bin} does not run" >&2
	exit 1
}
echo "${bin}"
