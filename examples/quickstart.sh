#!/usr/bin/env bash
# Seeds demo source files under /dev/shm/phase-sidecar-quickstart/source and
# runs the sidecar on examples/quickstart.yaml: files appear in
# /dev/shm/phase-sidecar-quickstart/out, metrics on http://127.0.0.1:9102.
# Edit a source file while it runs and watch the target follow.
# PHASE_QUICKSTART_DIR moves both under another directory (on a tmpfs); extra
# arguments go to run (--listen 127.0.0.1:9200).
set -euo pipefail
default=/dev/shm/phase-sidecar-quickstart
base=$(realpath -m -- "${PHASE_QUICKSTART_DIR:-$default}") # before the cd
cd "$(dirname "$0")/.."
config=examples/quickstart.yaml
mkdir -p "$base/source/redis" "$base/out"
if [ "$base" != "$default" ]; then
  # The same config with the paths moved.
  esc=$(printf '%s' "$base" | sed 's/[\\&#]/\\&/g') # \, & and # are special to sed
  sed "s#$default#$esc#g" examples/quickstart.yaml >"$base/quickstart.yaml"
  config="$base/quickstart.yaml"
fi
[ -f "$base/source/secret_key" ] || head -c 32 /dev/urandom | base64 | tr -d '\n' >"$base/source/secret_key"
[ -f "$base/source/database_password" ] || printf 'quickstart-db-password\n' >"$base/source/database_password"
[ -f "$base/source/redis/password" ] || printf 'quickstart-redis-password' >"$base/source/redis/password"
[ -f "$base/source/redis/username" ] || printf 'default' >"$base/source/redis/username"
echo "quickstart: sources in $base/source, targets in $base/out; try:" >&2
listen=127.0.0.1:9102
prev=
for a in "$@"; do # the address run will use, for the hint
  case "$a" in --listen=*) listen="${a#--listen=}" ;; esac
  [ "$prev" = --listen ] && listen="$a"
  prev="$a"
done
echo "  curl -s $listen/v1/status; ls -l $base/out; go run ./cmd/phase-sidecar env --config $config" >&2
exec go run ./cmd/phase-sidecar run --config "$config" --log-format text "$@"
