#!/usr/bin/env bash
# Installs promtool (with Debian's prometheus package) when missing and
# prints its path on the last line of stdout.
# env: PHASE_TEST_PROMTOOL
set -euo pipefail
exec "$(dirname "$0")/prometheus.sh" --promtool
