#!/usr/bin/env bash
# The web console with a full outbox: the release data plane (SQLite) with
# 100,000 emails of the last 24 hours in its store, signed in as the
# administrator. Measures the server's own time to render the overview
# (health, hourly charts, outbox) and the email list (first page, a status
# filter, a recipient search), from the data plane's request-duration
# histogram (sum / count per route), and the total size of the console's
# assets as served with gzip. Appends one dated row to the "Web console"
# table of docs/benchmarks.md.
#
# A measurement, not a test: it fails only when the measurement itself is
# not trustworthy (the server does not start, a page does not answer 200).
set -euo pipefail

EMAILS=${BENCH_EMAILS:-100000}
REQUESTS=${BENCH_REQUESTS:-50}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/securevault/target}
export PATH="$HOME/.cargo/bin:$PATH"
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=tests/bench/lib.sh
source tests/bench/lib.sh

die() {
  echo "console-benchmark: $*" >&2
  exit 1
}
for tool in curl python3 gzip; do
  command -v "$tool" >/dev/null || die "$tool not found (make benchmark installs curl)"
done
TABLE='| Date (UTC) | Machine | Revision | emails in store | overview ms | email list ms | list filtered by status ms | list by recipient ms | assets gzip KB |'
grep -qF "$TABLE" "$RESULTS" || die "$RESULTS lacks the Web console table header"

REVISION=$(bench_revision)
echo "==> building the release binary"
cargo build --release --locked -p dataplane
BIN="$CARGO_TARGET_DIR/release/dataplane"

bench_scratch securevault-console-bench
port=$(free_port)
METRICS_ADDR="127.0.0.1:$(free_port)"
env -i PATH="$PATH" HOME="$HOME" LISTEN_ADDR="127.0.0.1:$port" METRICS_ADDR="$METRICS_ADDR" DATA_DIR="$TMP" \
  LOG_LEVEL=warn "${BENCH_AUTH_ENV[@]}" "$BIN" serve >"$TMP/log" 2>&1 &
PIDS+=($!)
URL="http://127.0.0.1:$port"
wait_until "the data plane answering" 30 curl -sf -o /dev/null "$URL/api/health"

echo "==> storing $EMAILS emails of the last 24 hours"
python3 tests/bench/seed_emails.py "$TMP/securevault.db" "$EMAILS"

# Sign in through the console's own form, as a person would.
jar="$TMP/cookies"
csrf=$(curl -sf -c "$jar" "$URL/console/login" | grep -o 'name="csrf" value="[^"]*"' | cut -d'"' -f4)
curl -sf -b "$jar" -c "$jar" -o /dev/null --data-urlencode "csrf=$csrf" \
  --data-urlencode "username=admin" --data-urlencode "password=$BENCH_ADMIN_PASSWORD" "$URL/console/login" ||
  die "signing in failed"

# server_ms ROUTE PATH: REQUESTS requests of PATH; the server's mean time
# for ROUTE (from its histogram) in ms, one decimal.
metric_sum() { curl -sf "http://$METRICS_ADDR/metrics" | awk -v r="$1" -v k="$2" 'index($0, "http_request_duration_seconds_" k "{method=\"GET\",route=\"" r "\"}") == 1 { print $2 }'; }
server_ms() {
  local route=$1 path=$2 sum0 count0 sum1 count1 code
  curl -sf -b "$jar" -o /dev/null "$URL$path" # warm the caches once
  sum0=$(metric_sum "$route" sum); count0=$(metric_sum "$route" count)
  for _ in $(seq "$REQUESTS"); do
    code=$(curl -s -b "$jar" -o /dev/null -w '%{http_code}' "$URL$path")
    [ "$code" = 200 ] || die "GET $path answered $code"
  done
  sum1=$(metric_sum "$route" sum); count1=$(metric_sum "$route" count)
  awk -v s0="${sum0:-0}" -v c0="${count0:-0}" -v s1="$sum1" -v c1="$count1" \
    'BEGIN { printf "%.1f", (s1 - s0) / (c1 - c0) * 1000 }'
}

echo "==> $REQUESTS requests of each page"
OVERVIEW=$(server_ms /console /console)
LIST=$(server_ms /console/emails /console/emails)
BY_STATUS=$(server_ms /console/emails '/console/emails?status=failed')
BY_RECIPIENT=$(server_ms /console/emails '/console/emails?recipient=user1234%40')

# The assets as a browser gets them: gzip-encoded bytes on the wire.
ASSET_BYTES=0
for asset in $(curl -sf -b "$jar" "$URL/console" | grep -o '/console/assets/[^"]*'); do
  bytes=$(curl -sf -H 'Accept-Encoding: gzip' -o "$TMP/asset" -w '%{size_download}' "$URL$asset")
  ASSET_BYTES=$((ASSET_BYTES + bytes))
done
ASSETS_KB=$(awk -v b="$ASSET_BYTES" 'BEGIN { printf "%.1f", b / 1024 }')

DATE=$(date -u '+%Y-%m-%d %H:%M')
MACHINE=$(bench_machine)
cat <<EOF

Web console, $DATE UTC ($MACHINE, $REVISION), $EMAILS emails in SQLite, server time per page (mean of $REQUESTS)
  overview                 $OVERVIEW ms
  email list               $LIST ms
  list, status=failed      $BY_STATUS ms
  list, recipient search   $BY_RECIPIENT ms
  assets (gzip)            $ASSETS_KB KB
EOF
target "overview render" "$OVERVIEW" "<" 50 ms
target "email list render" "$LIST" "<" 50 ms
target "assets, gzip" "$ASSETS_KB" "<" 200 KB
insert_row "$TABLE" "| $DATE | $MACHINE | $REVISION | $EMAILS | $OVERVIEW | $LIST | $BY_STATUS | $BY_RECIPIENT | $ASSETS_KB |"
echo "appended a row to $RESULTS"
