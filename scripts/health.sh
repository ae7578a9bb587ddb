#!/usr/bin/env bash
# `make health`: the detailed health report of a running data plane. The
# report names internal hosts and their errors, so it needs a credential with
# the `metrics` scope: an API key in HEALTH_TOKEN (a monitoring system's), or
# the administrator's password, from ADMIN_PASSWORD or the file `make run`
# writes when none is given (./data/admin-password), to sign in with.
set -euo pipefail

URL=${URL:-http://127.0.0.1:8080}
DATA_DIR=${DATA_DIR:-./data}

die() {
  echo "health: $*" >&2
  exit 1
}

token=${HEALTH_TOKEN:-}
if [ -z "$token" ]; then
  password=${ADMIN_PASSWORD:-}
  if [ -z "$password" ] && [ -r "$DATA_DIR/admin-password" ]; then
    password=$(cat "$DATA_DIR/admin-password")
  fi
  [ -n "$password" ] ||
    die "no credential: set HEALTH_TOKEN (a key with the metrics scope) or ADMIN_PASSWORD"
  login=$(python3 -c 'import json, sys; print(json.dumps({"username": "admin", "password": sys.argv[1]}))' "$password")
  token=$(curl -sS --fail-with-body -H 'Content-Type: application/json' -d "$login" "$URL/api/auth/login" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])') ||
    die "signing in as admin at $URL failed"
fi
curl -sS --fail-with-body -H "Authorization: Bearer $token" "$URL/api/health/detailed" | python3 -m json.tool
