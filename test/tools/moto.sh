#!/usr/bin/env bash
# Finds the Python that has moto (the AWS emulator for STS, Secrets Manager
# and SSM) and prints its path on the last stdout line; tests run
# "PYTHON -m moto.server -H 127.0.0.1 -p PORT". moto lives in the machine
# image's pyenv Python 3.11.7, not in Debian's python3. On a machine without
# it, installs moto[server] into that Python (or into a venv cached under
# $HOME/.cache/phase-sidecar-test/moto-5.2.1/ when that Python is absent).
# Exported by test/ci.sh as PHASE_TEST_MOTO_PYTHON.
# env: PHASE_TEST_MOTO_PYTHON
set -euo pipefail

moto_version=5.2.1
py_version=3.11.7

check() { "$1" -c 'import moto, moto.server, flask' >/dev/null 2>&1; }

python=""
if command -v pyenv >/dev/null 2>&1; then
	python="$(pyenv root)/versions/${py_version}/bin/python"
elif [[ -x "${HOME}/.pyenv/versions/${py_version}/bin/python" ]]; then
	python="${HOME}/.pyenv/versions/${py_version}/bin/python"
fi

if [[ -n "${python}" && -x "${python}" ]]; then
	if ! check "${python}"; then
		echo "moto.sh: installing moto[server]==${moto_version} into ${python}" >&2
		"${python}" -m pip install --quiet "moto[server]==${moto_version}" >&2 || true
	fi
else
	# Fresh machine without the pyenv Python: a venv from Debian's python3.
	venv="${HOME}/.cache/phase-sidecar-test/moto-${moto_version}/venv"
	python="${venv}/bin/python"
	if ! check "${python}" 2>/dev/null; then
		if ! command -v python3 >/dev/null 2>&1 || ! python3 -m venv --help >/dev/null 2>&1; then
			echo "moto.sh: installing python3 and python3-venv with apt-get" >&2
			sudo_cmd=""
			[[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
			${sudo_cmd} apt-get update >&2
			${sudo_cmd} apt-get install -y python3 python3-venv python3-pip >&2
		fi
		python3 -m venv "${venv}" >&2
		"${python}" -m pip install --quiet "moto[server]==${moto_version}" >&2
	fi
fi

if ! check "${python}"; then
	echo "moto.sh: 'import moto' fails with ${python}; want moto[server] ${moto_version} (pip install 'moto[server]==${moto_version}')" >&2
	exit 1
fi
echo "${python}"
