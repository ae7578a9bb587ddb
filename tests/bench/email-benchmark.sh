#!/usr/bin/env bash
# Measures email end to end and adds one dated row to the "Email" table of
# docs/benchmarks.md (`make benchmark` runs it; docs/benchmarks.md explains
# what is measured and why):
#
#   1. the accept path: wrk POSTs /api/send-email (tests/bench/send-email.lua)
#      to a release data plane on SQLite for BENCH_EMAIL_DURATION; each 202
#      is an email written to the outbox. Accepted per second, p50 and p99;
#   2. delivery: the same process's worker sends every accepted email over
#      SMTP to a real mailpit on loopback; the clock runs from the start of
#      the load to the moment mailpit holds them all. Delivered per second,
#      end to end, and after the load stopped (the worker alone);
#   3. the data plane's peak resident memory over both;
#   4. the ceiling: tests/bench/smtp_ceiling.py sends the same email straight
#      into the same mailpit over BENCH_EMAIL_CONNECTIONS persistent SMTP
#      connections, no SecureVault; delivered/s is read as a share of it.
#
# As in production: every email is signed with DKIM (an RSA-2048 key, made
# here with openssl) and its contents are sealed at rest under SECRET_KEY.
#
# A measurement, not a test: a missed target prints MISS and the script still
# succeeds. It fails when the measurement breaks: a server does not start,
# wrk sees a non-2xx answer, or not every accepted email arrives within
# BENCH_EMAIL_DRAIN_TIMEOUT.
#
# Environment:
#   BENCH_EMAIL_DURATION       wrk's -d (default 10s)
#   BENCH_EMAIL_CONNECTIONS    wrk's -c (default 16)
#   BENCH_EMAIL_DRAIN_TIMEOUT  seconds allowed for delivery (default 600)
#   CARGO_TARGET_DIR           defaults to ~/.cache/securevault/target
set -euo pipefail

BENCH_EMAIL_DURATION=${BENCH_EMAIL_DURATION:-10s}
BENCH_EMAIL_CONNECTIONS=${BENCH_EMAIL_CONNECTIONS:-16}
BENCH_EMAIL_DRAIN_TIMEOUT=${BENCH_EMAIL_DRAIN_TIMEOUT:-600}
BENCH_THREADS=2
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/securevault/target}
export PATH="$HOME/.cargo/bin:$PATH"

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=tests/bench/lib.sh
source tests/bench/lib.sh
TABLE_HEADER='| Date (UTC) | Machine | Revision | accepted |'
CEILING_HEADER='| Date (UTC) | Machine | Revision | SecureVault delivered/s |'

die() {
  echo "email-benchmark: $*" >&2
  if [ -s "${TMP:-}/dataplane.log" ]; then
    echo "--- the data plane's warnings and errors (last 20) ---" >&2
    tail -n 20 "$TMP/dataplane.log" >&2
  fi
  exit 1
}

for tool in wrk curl python3 awk openssl; do
  command -v "$tool" >/dev/null || die "$tool not found (make benchmark installs wrk and curl)"
done
grep -qF "$TABLE_HEADER" "$RESULTS" || die "$RESULTS lacks the Email table ($TABLE_HEADER ...)"
grep -qF "$CEILING_HEADER" "$RESULTS" || die "$RESULTS lacks the direct SMTP table ($CEILING_HEADER ...)"

REVISION=$(bench_revision)
echo "==> building the release binary and mailpit"
cargo build --release --locked -p dataplane
BIN="$CARGO_TARGET_DIR/release/dataplane"
MAILPIT=$(tests/setup/mailpit.sh | tail -n 1)

bench_scratch securevault-email-bench

SMTP_PORT=$(free_port)
MAILPIT_URL="http://127.0.0.1:$(free_port)"
# --max 0: mailpit keeps every message (it prunes to 500 by default).
"$MAILPIT" --smtp "127.0.0.1:$SMTP_PORT" --listen "${MAILPIT_URL#http://}" \
  --database "$TMP/mailpit.db" --max 0 --smtp-disable-rdns --disable-version-check \
  --quiet >"$TMP/mailpit.log" 2>&1 &
PIDS+=($!)
wait_until "mailpit's start" 15 curl -sf "$MAILPIT_URL/readyz"
arrived() { curl -sf "$MAILPIT_URL/api/v1/messages?limit=1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["total"])'; }

ADDR="127.0.0.1:$(free_port)"
METRICS_ADDR="127.0.0.1:$(free_port)"
URL="http://$ADDR"
mkdir -p "$TMP/data" "$TMP/dkim"
# Signed as production mail is: one RSA-2048 key for the sender's domain.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
  -out "$TMP/dkim/bench._domainkey.securevault.test" 2>/dev/null || die "openssl could not make a DKIM key"
SECRET_KEY=$(openssl rand -hex 32)
# A clean environment, as in benchmark.sh, so rows stay comparable.
env -i PATH="$PATH" HOME="$HOME" LISTEN_ADDR="$ADDR" METRICS_ADDR="$METRICS_ADDR" DATA_DIR="$TMP/data" LOG_LEVEL=warn \
  SMTP_HOST=127.0.0.1 SMTP_PORT="$SMTP_PORT" SMTP_TLS=none \
  SMTP_FROM="SecureVault <noreply@securevault.test>" "${BENCH_AUTH_ENV[@]}" \
  DKIM_KEYS_DIR="$TMP/dkim" DKIM_ALLOW_UNSIGNED=false SECRET_KEY="$SECRET_KEY" \
  "$BIN" serve >"$TMP/dataplane.log" 2>&1 &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
wait_until "the data plane's start" 30 curl -sf "$URL/api/health/ready"

# Warm-up: one email through the whole path (the SMTP pool's first
# connection), so the load measures the steady state.
API_KEY=$(bench_api_key "$URL") || die "could not create an API key"
AUTH_HEADER="Authorization: Bearer $API_KEY"
curl -sf -o /dev/null -H 'Content-Type: application/json' -H "$AUTH_HEADER" \
  -d '{"to":"bench@example.com","subject":"warm-up","text":"t"}' "$URL/api/send-email?wait=10"
[ "$(arrived)" = 1 ] || die "the warm-up email did not arrive"

PEAK_FILE="$TMP/rss-peak-kb"
echo 0 >"$PEAK_FILE"
(
  peak=0
  while rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$SERVER_PID/status" 2>/dev/null) && [ -n "$rss" ]; do
    if [ "$rss" -gt "$peak" ]; then
      peak=$rss
      echo "$peak" >"$PEAK_FILE"
    fi
    sleep 0.2
  done
) &
PIDS+=($!)

echo "==> wrk -t$BENCH_THREADS -c$BENCH_EMAIL_CONNECTIONS -d$BENCH_EMAIL_DURATION --latency -s tests/bench/send-email.lua $URL/api/send-email"
START=$(now)
wrk -t"$BENCH_THREADS" -c"$BENCH_EMAIL_CONNECTIONS" -d"$BENCH_EMAIL_DURATION" --latency \
  -H "$AUTH_HEADER" -s tests/bench/send-email.lua "$URL/api/send-email" | tee "$TMP/wrk.txt" || die "wrk failed"
LOAD_END=$(now)
AT_LOAD_END=$(arrived)

grep -q 'Non-2xx or 3xx responses' "$TMP/wrk.txt" && die "the data plane refused some emails; no row added"
# wrk counts the answers it read, but requests in flight when it stopped
# were stored too (some answered after wrk had gone). The outbox itself says
# how many emails were accepted, the warm-up one included.
outbox_rows() {
  python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT COUNT(*) FROM emails").fetchone()[0])' \
    "$TMP/data/securevault.db"
}
ACCEPT_RPS=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$TMP/wrk.txt")
ACCEPT_P50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$TMP/wrk.txt")")
ACCEPT_P99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$TMP/wrk.txt")")
[ -n "$ACCEPT_RPS" ] || die "could not parse wrk's output"

# Every accepted email, the warm-up one included, must arrive once. (A
# second lets the requests wrk left in flight finish.)
sleep 1
EXPECTED=$(outbox_rows)
ACCEPTED=$((EXPECTED - 1))
echo "==> waiting for $EXPECTED emails in mailpit ($AT_LOAD_END there when the load stopped)"
deadline=$((SECONDS + BENCH_EMAIL_DRAIN_TIMEOUT))
while n=$(arrived) && [ "$n" -lt "$EXPECTED" ]; do
  [ "$SECONDS" -lt "$deadline" ] || die "only $n of $EXPECTED emails arrived within $BENCH_EMAIL_DRAIN_TIMEOUT s"
  kill -0 "$SERVER_PID" 2>/dev/null || die "the data plane died"
  sleep 0.2
done
DONE=$(now)
[ "$n" -eq "$EXPECTED" ] || die "$n emails arrived for $EXPECTED accepted: some twice"
SENT_METRIC=$(curl -sf "http://$METRICS_ADDR/metrics" | awk '$1 == "emails_sent_total" { print $2 }')
[ "$SENT_METRIC" = "$EXPECTED" ] || die "emails_sent_total is $SENT_METRIC for $EXPECTED arrived"
UNSIGNED_METRIC=$(curl -sf "http://$METRICS_ADDR/metrics" | awk '$1 == "emails_unsigned_total" { print $2 }')
[ "${UNSIGNED_METRIC:-0}" = 0 ] || die "emails_unsigned_total is $UNSIGNED_METRIC: some emails went out unsigned"
LAST_RAW=$(curl -sf "$MAILPIT_URL/api/v1/message/latest/raw") || die "could not read mailpit's last message"
grep -q '^DKIM-Signature: v=1;' <<<"$LAST_RAW" && grep -q 'a=rsa-sha256;' <<<"$LAST_RAW" ||
  die "the last email in mailpit carries no RSA-SHA256 DKIM signature"

# The ceiling: the same mailpit, nothing else running against it.
kill "$SERVER_PID" 2>/dev/null || true
wait "$SERVER_PID" 2>/dev/null || true
CEILING_SECS=${BENCH_EMAIL_DURATION%s}
echo "==> direct SMTP: $BENCH_EMAIL_CONNECTIONS connections into the same mailpit for ${CEILING_SECS}s"
BEFORE_CEILING=$(arrived)
read -r DIRECT_SENT DIRECT_SECS < <(python3 tests/bench/smtp_ceiling.py 127.0.0.1 "$SMTP_PORT" \
  "$BENCH_EMAIL_CONNECTIONS" "$CEILING_SECS") || die "the direct SMTP client failed"
sleep 1
[ "$(arrived)" -eq $((BEFORE_CEILING + DIRECT_SENT)) ] ||
  die "mailpit holds $(arrived) emails, $BEFORE_CEILING + $DIRECT_SENT expected"
DIRECT_RPS=$(awk -v n="$DIRECT_SENT" -v s="$DIRECT_SECS" 'BEGIN { printf "%.0f", n / s }')

TOTAL_SECS=$(since "$START" "$DONE")
DRAIN_SECS=$(since "$LOAD_END" "$DONE")
DELIVERED_RPS=$(awk -v n="$ACCEPTED" -v s="$TOTAL_SECS" 'BEGIN { printf "%.0f", n / s }')
DRAIN_RPS=$(awk -v n="$((EXPECTED - AT_LOAD_END))" -v s="$DRAIN_SECS" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
RSS_PEAK_MB=$(kb_to_mb "$(cat "$PEAK_FILE")")
SHARE=$(awk -v d="$DELIVERED_RPS" -v c="$DIRECT_RPS" 'BEGIN { printf "%.0f", 100 * d / c }')
MACHINE=$(bench_machine)
DATE=$(date -u '+%Y-%m-%d %H:%M')

cat <<REPORT

SecureVault email benchmark, $DATE UTC
  machine    $MACHINE
  revision   $REVISION
  load       wrk -t$BENCH_THREADS -c$BENCH_EMAIL_CONNECTIONS -d$BENCH_EMAIL_DURATION POST /api/send-email, SQLite outbox, mailpit on loopback

  accepted   $ACCEPTED emails, $ACCEPT_RPS/s, p50 $ACCEPT_P50 ms, p99 $ACCEPT_P99 ms
  delivered  all $EXPECTED in mailpit $TOTAL_SECS s after the load began: $DELIVERED_RPS/s end to end
             ($AT_LOAD_END delivered during the load; the rest at $DRAIN_RPS/s once it stopped)
             emails_sent_total $SENT_METRIC, every one DKIM-signed, contents sealed at rest
  ceiling    $DIRECT_SENT emails straight into mailpit over $BENCH_EMAIL_CONNECTIONS SMTP connections in $DIRECT_SECS s: $DIRECT_RPS/s
             SecureVault delivered $SHARE % of it
  resident   peak $RSS_PEAK_MB MB

Targets:
REPORT
target "delivered per second, end to end" "$DELIVERED_RPS" ">=" 300 "emails/s"
target "accept p99" "$ACCEPT_P99" "<" 20 "ms"
target "delivered, share of direct SMTP" "$SHARE" ">=" 50 "%"

insert_row "$TABLE_HEADER" "$(printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |' \
  "$DATE" "$MACHINE" "$REVISION" "$ACCEPTED" "$ACCEPT_RPS" "$ACCEPT_P50" "$ACCEPT_P99" \
  "$DELIVERED_RPS" "$DRAIN_RPS" "$RSS_PEAK_MB")"
insert_row "$CEILING_HEADER" "$(printf '| %s | %s | %s | %s | %s | %s |' \
  "$DATE" "$MACHINE" "$REVISION" "$DELIVERED_RPS" "$DIRECT_RPS" "$SHARE")"
echo
echo "added a row to $RESULTS (Email)"
