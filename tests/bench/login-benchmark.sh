#!/usr/bin/env bash
# Measures the login route and adds one dated row to the "Logins" table of
# docs/benchmarks.md (`make benchmark` runs it; docs/benchmarks.md explains
# what is measured and why).
#
# wrk POSTs the administrator's name and password to /api/auth/login from 32
# connections against a release data plane (SQLite store), the shared
# limiter in a real redis-server on loopback: each login reserves its place
# in the brute-force counts (one Lua script), verifies the password
# (argon2id, one hash per core at a time), settles the attempt (another
# script) and opens a session. LOGIN_MAX_FAILURES is raised so that the gate
# on logins in flight (at most that many per address and per account) does
# not refuse the benchmark's own: what is measured is the cost of counting,
# not the gate.
#
# A measurement, not a test: a missed target prints MISS and the script still
# succeeds. It fails when the measurement breaks: a server does not start or
# wrk sees an answer other than 200.
#
# Environment:
#   BENCH_LOGIN_DURATION     wrk's -d (default 15s)
#   BENCH_LOGIN_CONNECTIONS  wrk's -c (default 32)
#   BENCH_LOGIN_BINARY       a data plane binary to measure instead of this
#                            tree's release build (an older revision, to
#                            compare), with BENCH_LOGIN_REVISION naming it
#   CARGO_TARGET_DIR         defaults to ~/.cache/securevault/target
set -euo pipefail

BENCH_LOGIN_DURATION=${BENCH_LOGIN_DURATION:-15s}
BENCH_LOGIN_CONNECTIONS=${BENCH_LOGIN_CONNECTIONS:-32}
BENCH_THREADS=2
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/securevault/target}
export PATH="$HOME/.cargo/bin:$PATH"

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=tests/bench/lib.sh
source tests/bench/lib.sh
TABLE_HEADER='| Date (UTC) | Machine | Revision | logins/s |'

die() {
  echo "login-benchmark: $*" >&2
  if [ -s "${TMP:-}/dataplane.log" ]; then
    echo "--- the data plane's log (last 20 lines) ---" >&2
    tail -n 20 "$TMP/dataplane.log" >&2
  fi
  exit 1
}

for tool in wrk curl awk redis-server redis-cli; do
  command -v "$tool" >/dev/null || die "$tool not found (make benchmark installs wrk, curl and redis-server)"
done
grep -qF "$TABLE_HEADER" "$RESULTS" || die "$RESULTS lacks the Logins table ($TABLE_HEADER ...)"

if [ -n "${BENCH_LOGIN_BINARY:-}" ]; then
  BIN=$BENCH_LOGIN_BINARY
  REVISION=${BENCH_LOGIN_REVISION:-unknown}
else
  REVISION=$(bench_revision)
  echo "==> building the release binary"
  cargo build --release --locked -p dataplane
  BIN="$CARGO_TARGET_DIR/release/dataplane"
fi

bench_scratch securevault-login-bench

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$TMP" >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
wait_until "redis-server's start" 10 redis-cli -p "$REDIS_PORT" ping

ADDR="127.0.0.1:$(free_port)"
mkdir -p "$TMP/data"
env -i PATH="$PATH" HOME="$HOME" LISTEN_ADDR="$ADDR" METRICS_ADDR="127.0.0.1:$(free_port)" \
  DATA_DIR="$TMP/data" LOG_LEVEL=warn \
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT/" LOGIN_MAX_FAILURES=1000 \
  "${BENCH_AUTH_ENV[@]}" "$BIN" serve >"$TMP/dataplane.log" 2>&1 &
PIDS+=($!)
wait_until "the data plane's start" 30 curl -sf "http://$ADDR/api/health/ready"

BODY="{\"username\": \"admin\", \"password\": \"$BENCH_ADMIN_PASSWORD\"}"
cat >"$TMP/login.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$BODY'
LUA
# Warm-up: the store, Redis and its scripts, the hasher's threads.
for _ in 1 2 3; do
  curl -sf -o /dev/null -H 'Content-Type: application/json' -d "$BODY" "http://$ADDR/api/auth/login" ||
    die "the warm-up login failed"
done

out="$TMP/wrk.txt"
echo "==> wrk -t$BENCH_THREADS -c$BENCH_LOGIN_CONNECTIONS -d$BENCH_LOGIN_DURATION POST /api/auth/login"
wrk -t"$BENCH_THREADS" -c"$BENCH_LOGIN_CONNECTIONS" -d"$BENCH_LOGIN_DURATION" --latency \
  -s "$TMP/login.lua" "http://$ADDR/api/auth/login" | tee "$out" || die "wrk failed"
grep -q 'Non-2xx or 3xx responses' "$out" && die "some logins were refused; no row added"
RPS=$(awk '/^Requests\/sec:/ { printf "%.1f", $2 }' "$out")
P50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
P99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
[ -n "$RPS" ] && [ -n "$P99" ] || die "could not parse wrk's output"

MACHINE=$(bench_machine)
DATE=$(date -u '+%Y-%m-%d %H:%M')
cat <<REPORT

SecureVault login benchmark, $DATE UTC
  machine    $MACHINE
  revision   $REVISION
  load       wrk -t$BENCH_THREADS -c$BENCH_LOGIN_CONNECTIONS -d$BENCH_LOGIN_DURATION POST /api/auth/login (right password), Redis limiter, SQLite store

  $RPS logins/s, p50 $P50 ms, p99 $P99 ms
REPORT

insert_row "$TABLE_HEADER" "$(printf '| %s | %s | %s | %s | %s | %s |' \
  "$DATE" "$MACHINE" "$REVISION" "$RPS" "$P50" "$P99")"
echo
echo "added a row to $RESULTS (Logins)"
