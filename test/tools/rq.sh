#!/usr/bin/env bash
# Installs Debian's python3-rq (RQ, the job queue behind Phase's worker)
# when missing and prints the python3 that imports it on the last stdout
# line. The Phase kit tests run a real RQ worker with it as Phase's worker
# container does: python manage.py rqworker default.
# env: PHASE_TEST_RQ_PYTHON
set -euo pipefail

python=/usr/bin/python3
if ! "${python}" -c 'import rq, redis' >/dev/null 2>&1; then
	echo "rq.sh: installing python3-rq with apt-get" >&2
	sudo_cmd=""
	[[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
	${sudo_cmd} apt-get update >&2
	DEBIAN_FRONTEND=noninteractive ${sudo_cmd} apt-get install -y --no-install-recommends python3-rq >&2
fi
"${python}" -c 'import rq, redis' >&2
echo "${python}"
