#!/usr/bin/env bash
# `make registry`: a local OCI registry for `make publish` and for installing
# from it: go-containerregistry's `crane registry serve` (built once by
# tests/setup/crane.sh) on 127.0.0.1:$REGISTRY_PORT (default 5001), plain
# HTTP, no authentication, started in the background and left running.
# Idempotent: a registry already answering there is kept.
#
# Blobs are kept in $SECUREVAULT_CACHE/registry (default
# ~/.cache/securevault/registry), but crane holds manifests and tags in
# memory: after a restart, publish again. `scripts/registry.sh stop` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${SECUREVAULT_CACHE:-$HOME/.cache/securevault}
PORT=${REGISTRY_PORT:-5001}
DIR=$CACHE/registry
ADDRESS=127.0.0.1:$PORT
answers() { curl -fsS -o /dev/null --max-time 2 "http://$ADDRESS/v2/" 2>/dev/null; }

if [ "${1:-}" = stop ]; then
  # Only the process this script started, by the pid it recorded, and only
  # while that pid is still a crane registry (pids are reused).
  pid=$(cat "$DIR/crane.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q ' registry serve '; then
    kill "$pid"
    echo "registry (pid $pid) stopped"
  fi
  rm -f "$DIR/crane.pid"
  exit 0
fi

if answers; then
  echo "registry already running on $ADDRESS"
  exit 0
fi
CRANE=$(tests/setup/crane.sh)
mkdir -p "$DIR/blobs"
setsid "$CRANE" registry serve --address "$ADDRESS" --disk "$DIR/blobs" \
  >"$DIR/crane.log" 2>&1 </dev/null &
echo $! >"$DIR/crane.pid"
for _ in $(seq 50); do
  answers && break
  sleep 0.2
done
answers || {
  echo "registry.sh: the registry did not start on $ADDRESS: $(tail -n 5 "$DIR/crane.log")" >&2
  exit 1
}
cat <<EOF
registry running on $ADDRESS (plain HTTP; log $DIR/crane.log; stop: scripts/registry.sh stop)
  make publish REGISTRY=$ADDRESS COSIGN_KEY=cosign.key
EOF
