#!/usr/bin/env bash
# Measures an authenticated, rate-limited route and adds one dated row to the
# "Authenticated routes" table of docs/benchmarks.md (`make benchmark` runs
# it; docs/benchmarks.md explains what is measured and why).
#
# wrk GETs /api/auth/me with an API key against a release data plane (SQLite
# store), limits raised so nothing is refused: each request looks the key up
# in the store and spends one GCRA step. Twice: with the budgets in a real
# redis-server on loopback (the shared limiter every replica would use), then
# with the per-process limiter (no REDIS_URL).
#
# A measurement, not a test: a missed target prints MISS and the script still
# succeeds. It fails when the measurement breaks: a server does not start or
# wrk sees an answer other than 200.
#
# Environment:
#   BENCH_AUTH_DURATION     wrk's -d per run (default 15s)
#   BENCH_AUTH_CONNECTIONS  wrk's -c (default 16)
#   CARGO_TARGET_DIR        defaults to ~/.cache/securevault/target
set -euo pipefail

BENCH_AUTH_DURATION=${BENCH_AUTH_DURATION:-15s}
BENCH_AUTH_CONNECTIONS=${BENCH_AUTH_CONNECTIONS:-16}
BENCH_THREADS=2
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/securevault/target}
export PATH="$HOME/.cargo/bin:$PATH"

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=tests/bench/lib.sh
source tests/bench/lib.sh
TABLE_HEADER='| Date (UTC) | Machine | Revision | Redis req/s |'

die() {
  echo "auth-benchmark: $*" >&2
  if [ -s "${TMP:-}/dataplane.log" ]; then
    echo "--- the data plane's log (last 20 lines) ---" >&2
    tail -n 20 "$TMP/dataplane.log" >&2
  fi
  exit 1
}

for tool in wrk curl python3 awk redis-server; do
  command -v "$tool" >/dev/null || die "$tool not found (make benchmark installs wrk, curl and redis-server)"
done
grep -qF "$TABLE_HEADER" "$RESULTS" || die "$RESULTS lacks the Authenticated routes table ($TABLE_HEADER ...)"

REVISION=$(bench_revision)
echo "==> building the release binary"
cargo build --release --locked -p dataplane
BIN="$CARGO_TARGET_DIR/release/dataplane"

bench_scratch securevault-auth-bench

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$TMP" >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
wait_until "redis-server's start" 10 redis-cli -p "$REDIS_PORT" ping

# Starts the data plane with EXTRA env (one store for both runs, so the key
# stays valid), measures /api/auth/me, stops it; sets <NAME>_RPS and
# <NAME>_P99.
measure() { # NAME EXTRA-ENV...
  local name=$1 out="$TMP/wrk-$1.txt" addr pid rps p99
  shift
  addr="127.0.0.1:$(free_port)"
  mkdir -p "$TMP/data"
  env -i PATH="$PATH" HOME="$HOME" LISTEN_ADDR="$addr" METRICS_ADDR="127.0.0.1:$(free_port)" DATA_DIR="$TMP/data" LOG_LEVEL=warn \
    "${BENCH_AUTH_ENV[@]}" "$@" "$BIN" serve >"$TMP/dataplane.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  wait_until "the data plane's start" 30 curl -sf "http://$addr/api/health/ready"
  [ -n "${API_KEY:-}" ] || API_KEY=$(bench_api_key "http://$addr") || die "could not create an API key"
  # Warm-up: connections to the store and Redis, the script loaded once.
  for _ in 1 2 3 4 5; do
    curl -sf -o /dev/null -H "Authorization: Bearer $API_KEY" "http://$addr/api/auth/me" ||
      die "the warm-up request failed"
  done
  echo "==> $name: wrk -t$BENCH_THREADS -c$BENCH_AUTH_CONNECTIONS -d$BENCH_AUTH_DURATION GET /api/auth/me"
  wrk -t"$BENCH_THREADS" -c"$BENCH_AUTH_CONNECTIONS" -d"$BENCH_AUTH_DURATION" --latency \
    -H "Authorization: Bearer $API_KEY" "http://$addr/api/auth/me" | tee "$out" || die "wrk failed"
  grep -q 'Non-2xx or 3xx responses' "$out" && die "$name: some requests were refused; no row added"
  rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out")
  p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
  [ -n "$rps" ] && [ -n "$p99" ] || die "could not parse wrk's output"
  printf -v "${name}_RPS" '%s' "$rps"
  printf -v "${name}_P99" '%s' "$p99"
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
}

measure REDIS REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
measure LOCAL

MACHINE=$(bench_machine)
DATE=$(date -u '+%Y-%m-%d %H:%M')
cat <<REPORT

SecureVault authenticated-route benchmark, $DATE UTC
  machine    $MACHINE
  revision   $REVISION
  load       wrk -t$BENCH_THREADS -c$BENCH_AUTH_CONNECTIONS -d$BENCH_AUTH_DURATION GET /api/auth/me with an API key, SQLite store

  Redis limiter          $REDIS_RPS req/s, p99 $REDIS_P99 ms
  per-process limiter    $LOCAL_RPS req/s, p99 $LOCAL_P99 ms

Targets:
REPORT
target "requests/s through Redis" "$REDIS_RPS" ">=" 10000 "req/s"
target "p99 through Redis" "$REDIS_P99" "<" 5 "ms"

insert_row "$TABLE_HEADER" "$(printf '| %s | %s | %s | %s | %s | %s | %s |' \
  "$DATE" "$MACHINE" "$REVISION" "$REDIS_RPS" "$REDIS_P99" "$LOCAL_RPS" "$LOCAL_P99")"
echo
echo "added a row to $RESULTS (Authenticated routes)"
