#!/usr/bin/env bash
# Installs buildah (Debian) when missing and prints its path on the last line
# of stdout (PHASE_TEST_BUILDAH). Idempotent.
#
# Inside an unprivileged sandbox (no overlayfs, no new namespaces) buildah
# works as root with: --storage-driver vfs, --isolation chroot. The tests
# pass those flags and keep their storage under a temporary --root/--runroot.
set -euo pipefail

if ! command -v buildah >/dev/null 2>&1; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends buildah >&2
fi

command -v buildah
