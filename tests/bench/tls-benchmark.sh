#!/usr/bin/env bash
# What HTTPS costs: the same release binary serving /api/health over plain
# HTTP and over HTTPS (rustls, an ECDSA P-256 certificate), loaded by wrk
# twice each: with keep-alive connections (the handshake amortised, as an
# SDK or an ingress controller talks) and with a new connection per request
# (`Connection: close`: one full TLS handshake per request, the worst case).
# Appends one dated row to the "TLS" table of docs/benchmarks.md.
#
# A measurement, not a test: it fails only when the measurement itself is not
# trustworthy (a server does not start, or wrk sees non-2xx answers).
set -euo pipefail

BENCH_DURATION=${BENCH_DURATION:-10s}
BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-64}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/securevault/target}
export PATH="$HOME/.cargo/bin:$PATH"
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=tests/bench/lib.sh
source tests/bench/lib.sh

die() {
  echo "tls-benchmark: $*" >&2
  exit 1
}
for tool in wrk curl openssl python3; do
  command -v "$tool" >/dev/null || die "$tool not found (make benchmark installs wrk and curl)"
done
TABLE='| Date (UTC) | Machine | Revision | HTTP req/s | HTTPS req/s | HTTPS / HTTP | HTTP req/s, new connection each | HTTPS req/s, new connection each | HTTPS / HTTP, new connection each |'
grep -qF "$TABLE" "$RESULTS" || die "$RESULTS lacks the TLS table header"

REVISION=$(bench_revision)
echo "==> building the release binary"
cargo build --release --locked -p dataplane
BIN="$CARGO_TARGET_DIR/release/dataplane"

bench_scratch securevault-tls-bench
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$TMP/tls.key" -out "$TMP/tls.crt" 2>/dev/null || die "openssl could not make a certificate"

# start SCHEME: starts the binary on a free port; sets URL and SERVER_PID.
start() {
  local scheme=$1 port dir log env=()
  port=$(free_port)
  dir="$TMP/$scheme"
  mkdir -p "$dir"
  log="$dir/log"
  if [ "$scheme" = https ]; then
    env=(TLS_CERT_FILE="$TMP/tls.crt" TLS_KEY_FILE="$TMP/tls.key")
  fi
  env -i PATH="$PATH" HOME="$HOME" LISTEN_ADDR="127.0.0.1:$port" METRICS_ADDR="127.0.0.1:$(free_port)" DATA_DIR="$dir" \
    LOG_LEVEL=warn "${BENCH_AUTH_ENV[@]}" "${env[@]}" "$BIN" serve >"$log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  URL="$scheme://127.0.0.1:$port"
  wait_until "the $scheme server answering" 30 curl -sfk -o /dev/null "$URL/api/health"
  for _ in 1 2 3; do curl -sfk -o /dev/null "$URL/api/health"; done
}

# rps NAME [HEADER]: wrk on /api/health; prints requests per second.
rps() {
  local out="$TMP/wrk-$1.txt" extra=()
  [ -z "${2:-}" ] || extra=(-H "$2")
  echo "==> wrk -t2 -c$BENCH_CONNECTIONS -d$BENCH_DURATION ${extra[*]} $URL/api/health" >&2
  wrk -t2 -c"$BENCH_CONNECTIONS" -d"$BENCH_DURATION" "${extra[@]}" "$URL/api/health" >"$out" ||
    die "wrk failed"
  cat "$out" >&2
  ! grep -q 'Non-2xx or 3xx responses' "$out" || die "non-2xx answers: no row appended"
  awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out"
}

start http
HTTP_KEEP=$(rps http-keepalive)
HTTP_CLOSE=$(rps http-close "Connection: close")
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
start https
HTTPS_KEEP=$(rps https-keepalive)
HTTPS_CLOSE=$(rps https-close "Connection: close")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
KEEP_RATIO=$(ratio "$HTTPS_KEEP" "$HTTP_KEEP")
CLOSE_RATIO=$(ratio "$HTTPS_CLOSE" "$HTTP_CLOSE")
DATE=$(date -u '+%Y-%m-%d %H:%M')
MACHINE=$(bench_machine)
cat <<EOF

TLS overhead, $DATE UTC ($MACHINE, $REVISION), GET /api/health, wrk -c$BENCH_CONNECTIONS -d$BENCH_DURATION
  keep-alive        HTTP $HTTP_KEEP req/s   HTTPS $HTTPS_KEEP req/s   ratio $KEEP_RATIO
  new connection    HTTP $HTTP_CLOSE req/s   HTTPS $HTTPS_CLOSE req/s   ratio $CLOSE_RATIO
EOF
target "HTTPS / HTTP, keep-alive" "$KEEP_RATIO" ">=" 0.8 ""
insert_row "$TABLE" "| $DATE | $MACHINE | $REVISION | $HTTP_KEEP | $HTTPS_KEEP | $KEEP_RATIO | $HTTP_CLOSE | $HTTPS_CLOSE | $CLOSE_RATIO |"
echo "appended a row to $RESULTS"
