#!/usr/bin/env bash
# Load-tests a release build of the data plane with wrk and appends one dated
# row to docs/benchmarks.md (`make benchmark`; docs/benchmarks.md explains
# what is measured and why).
#
# It is a measurement, not a test: a missed target is printed as MISS and the
# script still succeeds. It fails only when the measurement itself is not
# trustworthy: the server does not start, or wrk sees non-2xx/3xx responses
# (then the figures would describe error pages, not the endpoint).
#
# Environment:
#   BENCH_DURATION     wrk's -d per endpoint (default 15s)
#   BENCH_CONNECTIONS  wrk's -c (default 64)
#   CARGO_TARGET_DIR   defaults to ~/.cache/securevault/target, like the Makefile,
#                      so running the script directly reuses the same build cache
set -euo pipefail

BENCH_DURATION=${BENCH_DURATION:-15s}
BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-64}
BENCH_THREADS=2 # one per core of the reference machine; more would only contend
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/securevault/target}
export PATH="$HOME/.cargo/bin:$PATH"

# Work from the repository root whatever the caller's directory is, so the
# relative paths below (docs/, cargo's workspace) are right.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=tests/bench/lib.sh
source tests/bench/lib.sh

die() {
  echo "benchmark: $*" >&2
  exit 1
}

for tool in wrk curl python3; do
  command -v "$tool" >/dev/null || die "$tool not found (make benchmark installs wrk and curl)"
done
# Fail before spending a build and a minute of load on a file we cannot append to.
grep -q '^| Date (UTC) |' "$RESULTS" 2>/dev/null ||
  die "$RESULTS is missing or lacks the results table header"

REVISION=$(bench_revision)

echo "==> building the release binary"
cargo build --release --locked -p dataplane
BIN="$CARGO_TARGET_DIR/release/dataplane"
[ -x "$BIN" ] || die "$BIN was not built"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/securevault-bench.XXXXXX")
LOG="$TMP/dataplane.log"
SERVER_PID=
SAMPLER_PID=

# Whatever happens (success, failure, Ctrl-C), stop what we started and remove
# the temporary data directory, so no stray server holds a port or eats CPU.
cleanup() {
  local status=$?
  if [ -n "$SAMPLER_PID" ]; then
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
  fi
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Ask the kernel for a free loopback port. Another process could take it
# before the server binds; then the server exits and we say so below.
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ADDR="127.0.0.1:$PORT"
URL="http://$ADDR"

echo "==> starting $BIN on $ADDR (DATA_DIR=$TMP/data)"
mkdir -p "$TMP/data"
# A clean environment (env -i) so that a DATABASE_URL, REDIS_URL, LOG_LEVEL or
# SECUREVAULT_ENV in the caller's shell cannot change what is measured: the
# rows of docs/benchmarks.md are only comparable if every run uses the same
# embedded defaults (SQLite, in-process cache, log level info).
env -i PATH="$PATH" HOME="$HOME" \
  LISTEN_ADDR="$ADDR" METRICS_ADDR="127.0.0.1:$(free_port)" DATA_DIR="$TMP/data" LOG_LEVEL=info STATS_CACHE_TTL_SECS=60 \
  "${BENCH_AUTH_ENV[@]}" "$BIN" serve >"$LOG" 2>&1 &
SERVER_PID=$!

# Wait for the server's own "listening on" line rather than polling the port:
# the line proves that *our* process owns the port.
deadline=$((SECONDS + 30))
until grep -q "listening on http://$ADDR" "$LOG"; do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "--- server log ---" >&2
    cat "$LOG" >&2
    SERVER_PID=
    die "the server exited before listening"
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "--- server log ---" >&2
    cat "$LOG" >&2
    die "the server did not log 'listening on http://$ADDR' within 30 s"
  fi
  sleep 0.1
done

# kB figure of one field of /proc/PID/status (VmRSS, VmHWM).
status_kb() {
  awk -v field="$1:" '$1 == field { print $2 }' "/proc/$SERVER_PID/status"
}

# Warm-up: the first requests fault in code and allocator arenas, and the
# first /api/stats fills the cache, so the load test measures the steady,
# cached path and not the one-off cold start.
echo "==> warming up"
# /api/stats needs credentials since accounts arrived: an API key, as a
# machine client would use.
API_KEY=$(bench_api_key "$URL") || die "could not create an API key"
AUTH_HEADER="Authorization: Bearer $API_KEY"
for _ in 1 2 3 4 5; do
  curl -sS --fail -o /dev/null "$URL/api/health"
  curl -sS --fail -o /dev/null -H "$AUTH_HEADER" "$URL/api/stats"
done
# Let background start-up work (pool connections, the metrics sampler's
# first tick) settle before taking the idle figure.
sleep 2
RSS_IDLE_KB=$(status_kb VmRSS)
RSS_IDLE_MB=$(kb_to_mb "$RSS_IDLE_KB")

# Sample VmRSS every 0.2 s during both runs and keep the peak in a file; the
# sampler is a separate process, so it cannot hand a variable back.
PEAK_FILE="$TMP/rss-peak-kb"
echo "$RSS_IDLE_KB" >"$PEAK_FILE"
(
  peak=$RSS_IDLE_KB
  while rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$SERVER_PID/status" 2>/dev/null) && [ -n "$rss" ]; do
    if [ "$rss" -gt "$peak" ]; then
      peak=$rss
      echo "$peak" >"$PEAK_FILE"
    fi
    sleep 0.2
  done
) &
SAMPLER_PID=$!

# Runs wrk against one path; sets <NAME>_RPS, <NAME>_P50, <NAME>_P99 and
# counts non-2xx/3xx responses into NON_2XX.
NON_2XX=0
run_wrk() {
  local name=$1 path=$2 out="$TMP/wrk-$1.txt"
  echo "==> wrk -t$BENCH_THREADS -c$BENCH_CONNECTIONS -d$BENCH_DURATION --latency $URL$path"
  wrk -t"$BENCH_THREADS" -c"$BENCH_CONNECTIONS" -d"$BENCH_DURATION" --latency -H "$AUTH_HEADER" "$URL$path" | tee "$out" ||
    die "wrk failed on $path"

  local rps p50 p99 errors bad
  rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out")
  p50=$(awk '$1 == "50%" { print $2 }' "$out")
  p99=$(awk '$1 == "99%" { print $2 }' "$out")
  [ -n "$rps" ] && [ -n "$p50" ] && [ -n "$p99" ] || die "could not parse wrk's output for $path"
  printf -v "${name}_RPS" '%s' "$rps"
  printf -v "${name}_P50" '%s' "$(to_ms "$p50")"
  printf -v "${name}_P99" '%s' "$(to_ms "$p99")"

  # Socket errors (connect/read/write/timeout) are reported but tolerated:
  # with many connections on a loaded loopback a few are normal, and the
  # throughput figure already reflects them.
  errors=$(grep '^ *Socket errors:' "$out" || true)
  [ -z "$errors" ] || echo "note: $path: ${errors#"${errors%%[![:space:]]*}"}" >&2
  bad=$(awk -F': *' '/Non-2xx or 3xx responses/ { print $2 }' "$out")
  if [ -n "$bad" ] && [ "$bad" -gt 0 ]; then
    echo "error: $path answered $bad non-2xx/3xx responses" >&2
    NON_2XX=$((NON_2XX + bad))
  fi
}

run_wrk HEALTH /api/health
run_wrk STATS /api/stats

kill "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=
RSS_PEAK_KB=$(cat "$PEAK_FILE")
# VmHWM is the kernel's own peak, which catches spikes between two samples.
RSS_HWM_KB=$(status_kb VmHWM)
RSS_LOAD_KB=$((RSS_PEAK_KB > RSS_HWM_KB ? RSS_PEAK_KB : RSS_HWM_KB))
RSS_LOAD_MB=$(kb_to_mb "$RSS_LOAD_KB")

if [ "$NON_2XX" -gt 0 ]; then
  echo "--- last lines of the server log ---" >&2
  tail -n 20 "$LOG" >&2
  die "$NON_2XX non-2xx/3xx responses during the load test; no row appended to $RESULTS"
fi

# The server must still be up; a crash under load would make the figures moot.
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "--- last lines of the server log ---" >&2
  tail -n 20 "$LOG" >&2
  SERVER_PID=
  die "the server died during the load test"
fi
kill -TERM "$SERVER_PID"
if wait "$SERVER_PID"; then
  shutdown_note="exited 0 on SIGTERM"
else
  shutdown_note="exited with status $? on SIGTERM (expected 0)"
fi
SERVER_PID=

MACHINE=$(bench_machine)
DATE=$(date -u '+%Y-%m-%d %H:%M')

cat <<EOF

SecureVault data plane benchmark, $DATE UTC
  machine   $MACHINE
  revision  $REVISION
  load      wrk -t$BENCH_THREADS -c$BENCH_CONNECTIONS -d$BENCH_DURATION, loopback, same machine
  server    $shutdown_note

  GET /api/health   $HEALTH_RPS req/s   p50 $HEALTH_P50 ms   p99 $HEALTH_P99 ms
  GET /api/stats    $STATS_RPS req/s   p50 $STATS_P50 ms   p99 $STATS_P99 ms
  resident  idle $RSS_IDLE_MB MB, under load $RSS_LOAD_MB MB (sampled peak $(kb_to_mb "$RSS_PEAK_KB") MB, VmHWM $(kb_to_mb "$RSS_HWM_KB") MB)

Targets:
EOF
target "health throughput" "$HEALTH_RPS" ">=" 30000 "req/s"
target "health p99" "$HEALTH_P99" "<" 2 "ms"
target "stats throughput" "$STATS_RPS" ">=" 10000 "req/s"
target "resident, idle" "$RSS_IDLE_MB" "<" 30 "MB"
target "resident, under load" "$RSS_LOAD_MB" "<" 64 "MB"

# Append the row; add a newline first if the file does not end with one, or
# the row would be glued to the last line of the table.
if [ -n "$(tail -c 1 "$RESULTS")" ]; then
  echo >>"$RESULTS"
fi
printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
  "$DATE" "$MACHINE" "$REVISION" \
  "$HEALTH_RPS" "$HEALTH_P50" "$HEALTH_P99" \
  "$STATS_RPS" "$STATS_P50" "$STATS_P99" \
  "$RSS_IDLE_MB" "$RSS_LOAD_MB" >>"$RESULTS"
echo
echo "appended a row to $RESULTS"
