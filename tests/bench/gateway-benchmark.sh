#!/usr/bin/env bash
# The AI gateway at load, as TensorZero measures its own: a fixed instant
# OpenAI-compatible upstream (tests/bench/servers: the same short completion
# at once), and a constant request rate from vegeta. The same chat request
# goes straight to the upstream, through a bare pass-through proxy of ours
# (`bench-servers proxy`: the least a gateway does, so what it adds is the
# floor of a gateway's overhead on this machine), through a release data plane
# (`/v1/chat/completions` with an API key, every generation recorded in its
# store with its audit row), and through LiteLLM's proxy, at each rate of
# BENCH_GATEWAY_RATES, one after the other; what a gateway adds is its
# percentile minus the direct one. Then `/api/health` through the data
# plane's whole middleware stack against a bare axum server answering the
# same JSON (wrk, as many requests as they take). Adds one row per rate to
# the "AI gateway at load" table of docs/benchmarks.md.
#
# A measurement, not a test: a missed target prints MISS. It fails when a
# server does not start.
#
# Environment:
#   BENCH_GATEWAY_RATES     requests per second (default "1000 2000")
#   BENCH_GATEWAY_SECONDS   seconds per rate and path (default 15)
#   DATAPLANE_BIN           another data plane binary to measure (such as an
#                           earlier revision's release build); its rows then
#                           name that file instead of a revision
#   CARGO_TARGET_DIR        defaults to ~/.cache/securevault/target
set -euo pipefail

BENCH_GATEWAY_RATES=${BENCH_GATEWAY_RATES:-1000 2000}
BENCH_GATEWAY_SECONDS=${BENCH_GATEWAY_SECONDS:-15}
LITELLM='litellm[proxy]==1.106.12'
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/securevault/target}
export PATH="$HOME/.cargo/bin:$PATH"

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=tests/bench/lib.sh
source tests/bench/lib.sh
TABLE_HEADER='| Date (UTC) | Machine | Revision | rate/s | direct p50/p99 ms |'
HEALTH_HEADER='| Date (UTC) | Machine | Revision | bare axum req/s |'

grep -qF "$TABLE_HEADER" "$RESULTS" || die "$RESULTS lacks the gateway table ($TABLE_HEADER ...)"
grep -qF "$HEALTH_HEADER" "$RESULTS" || die "$RESULTS lacks the health table ($HEALTH_HEADER ...)"
command -v wrk >/dev/null || tests/setup/debian-packages.sh wrk >&2

REVISION=$(bench_revision)
echo "==> building the release data plane, the bench servers, vegeta and LiteLLM (cached after the first run)"
cargo build --release --locked -p dataplane -p bench-servers
BIN=${DATAPLANE_BIN:-$CARGO_TARGET_DIR/release/dataplane}
[ -z "${DATAPLANE_BIN:-}" ] || REVISION="$(basename "$DATAPLANE_BIN")"
SERVERS="$CARGO_TARGET_DIR/release/bench-servers"
VEGETA=$(tests/setup/vegeta.sh | tail -n 1)
LITELLM_PYTHON=$(VENV_NAME=venv-litellm tests/setup/python-venv.sh "$LITELLM" | tail -n 1)

bench_scratch securevault-gateway-bench

UPSTREAM_PORT=$(free_port)
"$SERVERS" upstream "$UPSTREAM_PORT" >"$TMP/upstream.log" 2>&1 &
PIDS+=($!)
wait_until "the instant upstream answering" 10 curl -sf "http://127.0.0.1:$UPSTREAM_PORT/v1/models"
PROXY_PORT=$(free_port)
"$SERVERS" proxy "$PROXY_PORT" "http://127.0.0.1:$UPSTREAM_PORT/v1" >"$TMP/proxy.log" 2>&1 &
PIDS+=($!)
wait_until "the bare proxy listening" 10 curl -s -o /dev/null "http://127.0.0.1:$PROXY_PORT/"

SV_ADDR="127.0.0.1:$(free_port)"
mkdir -p "$TMP/data"
# Generations at once up to what the load holds in flight.
env -i PATH="$PATH" HOME="$HOME" LISTEN_ADDR="$SV_ADDR" METRICS_ADDR="127.0.0.1:$(free_port)" DATA_DIR="$TMP/data" LOG_LEVEL=warn \
  OPENAI_BASE_URL="http://127.0.0.1:$UPSTREAM_PORT/v1" OPENAI_MODEL=instant \
  AI_MAX_CONCURRENCY=1024 "${BENCH_AUTH_ENV[@]}" \
  "$BIN" serve >"$TMP/dataplane.log" 2>&1 &
SV_PID=$!
PIDS+=("$SV_PID")
wait_until "the data plane answering http://$SV_ADDR/api/health/ready" 30 curl -sf "http://$SV_ADDR/api/health/ready"
SV_KEY=$(bench_api_key "http://$SV_ADDR") || die "could not create an API key"

LITELLM_PORT=$(free_port)
cat >"$TMP/litellm.yaml" <<YAML
model_list:
  - model_name: instant
    litellm_params:
      model: openai/instant
      api_base: http://127.0.0.1:$UPSTREAM_PORT/v1
      api_key: none
YAML
LITELLM_KEY=sk-securevault-benchmark-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
LITELLM_MASTER_KEY=$LITELLM_KEY LITELLM_LOCAL_MODEL_COST_MAP=True "$(dirname "$LITELLM_PYTHON")/litellm" \
  --config "$TMP/litellm.yaml" --host 127.0.0.1 --port "$LITELLM_PORT" \
  >"$TMP/litellm.log" 2>&1 &
PIDS+=($!)
wait_until "LiteLLM's proxy answering" 180 curl -sf "http://127.0.0.1:$LITELLM_PORT/health/liveliness"

printf '%s' '{"model":"instant","messages":[{"role":"user","content":"Say hello."}],"max_tokens":8}' >"$TMP/body.json"
# One vegeta run: prints "p50_ms p99_ms throughput success_ratio".
attack() { # NAME URL KEY RATE
  local name=$1 url=$2 key=$3 rate=$4
  printf 'POST %s\nContent-Type: application/json\nAuthorization: Bearer %s\n@%s\n' "$url" "$key" "$TMP/body.json" |
    "$VEGETA" attack -rate="$rate" -duration="${BENCH_GATEWAY_SECONDS}s" -timeout=10s \
      -max-workers=4096 -keepalive=true >"$TMP/$name-$rate.bin"
  "$VEGETA" report -type=json <"$TMP/$name-$rate.bin" | python3 -c '
import json, sys
r = json.load(sys.stdin)
l = r["latencies"]
print("%.2f %.2f %.0f %.4f" % (l["50th"] / 1e6, l["99th"] / 1e6, r["throughput"], r["success"]))'
}
# Warm each path (connections, caches, the JIT-less Python's imports).
attack direct "http://127.0.0.1:$UPSTREAM_PORT/v1/chat/completions" none 100 >/dev/null
attack proxy "http://127.0.0.1:$PROXY_PORT/v1/chat/completions" none 100 >/dev/null
attack securevault "http://$SV_ADDR/v1/chat/completions" "$SV_KEY" 100 >/dev/null
attack litellm "http://127.0.0.1:$LITELLM_PORT/v1/chat/completions" "$LITELLM_KEY" 100 >/dev/null

MACHINE=$(bench_machine)
DATE=$(date -u '+%Y-%m-%d %H:%M')
echo
echo "SecureVault AI gateway at load, $DATE UTC ($MACHINE, $REVISION)"
echo "  ${BENCH_GATEWAY_SECONDS} s per rate and path; p50/p99 ms, requests/s reached, share succeeded"
echo
echo "Targets:"
# LiteLLM last: a proxy that does not hold the rate keeps working off its
# backlog after the client gave up, and would take the CPU from whatever
# ran next on these two cores.
declare -A D50 D99 DTHR DOK P50 P99 PTHR POK S50 S99 STHR SOK L50 L99 LTHR LOK
for rate in $BENCH_GATEWAY_RATES; do
  read -r "D50[$rate]" "D99[$rate]" "DTHR[$rate]" "DOK[$rate]" < <(attack direct "http://127.0.0.1:$UPSTREAM_PORT/v1/chat/completions" none "$rate")
  read -r "P50[$rate]" "P99[$rate]" "PTHR[$rate]" "POK[$rate]" < <(attack proxy "http://127.0.0.1:$PROXY_PORT/v1/chat/completions" none "$rate")
  read -r "S50[$rate]" "S99[$rate]" "STHR[$rate]" "SOK[$rate]" < <(attack securevault "http://$SV_ADDR/v1/chat/completions" "$SV_KEY" "$rate")
done

# /api/health through the whole stack against the bare floor, same client.
HEALTH_PORT=$(free_port)
"$SERVERS" health "$HEALTH_PORT" >"$TMP/health.log" 2>&1 &
PIDS+=($!)
wait_until "the bare axum server answering" 10 curl -sf "http://127.0.0.1:$HEALTH_PORT/api/health"
wrk_rps() { wrk -t2 -c64 -d10s "$1" | awk '/^Requests\/sec/ { printf "%.0f", $2 }'; }
BARE=$(wrk_rps "http://127.0.0.1:$HEALTH_PORT/api/health")
FULL=$(wrk_rps "http://$SV_ADDR/api/health")
SHARE=$(awk -v f="$FULL" -v b="$BARE" 'BEGIN { printf "%.0f", f / b * 100 }')

for rate in $BENCH_GATEWAY_RATES; do
  read -r "L50[$rate]" "L99[$rate]" "LTHR[$rate]" "LOK[$rate]" < <(attack litellm "http://127.0.0.1:$LITELLM_PORT/v1/chat/completions" "$LITELLM_KEY" "$rate")
done

over() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }
percent() { awk -v s="$1" 'BEGIN { printf "%.1f %%", s * 100 }'; }
ROWS=()
for rate in $BENCH_GATEWAY_RATES; do
  PA50=$(over "${P50[$rate]}" "${D50[$rate]}") PA99=$(over "${P99[$rate]}" "${D99[$rate]}")
  SA50=$(over "${S50[$rate]}" "${D50[$rate]}") SA99=$(over "${S99[$rate]}" "${D99[$rate]}")
  LA50=$(over "${L50[$rate]}" "${D50[$rate]}") LA99=$(over "${L99[$rate]}" "${D99[$rate]}")
  # LiteLLM's overhead over ours at p99; when LiteLLM does not hold the rate
  # its latencies are a queue's (or the client's timeout), and its
  # requests/s and share answered say how far it got.
  RATIO=$(awk -v s="$SA99" -v l="$LA99" 'BEGIN { printf "%.0f", (s > 0.05 ? l / s : l / 0.05) }')
  echo "  at $rate/s: direct ${D50[$rate]}/${D99[$rate]} (${DTHR[$rate]}/s, ${DOK[$rate]}), bare proxy ${P50[$rate]}/${P99[$rate]} (${PTHR[$rate]}/s, ${POK[$rate]}), SecureVault ${S50[$rate]}/${S99[$rate]} (${STHR[$rate]}/s, ${SOK[$rate]}), LiteLLM ${L50[$rate]}/${L99[$rate]} (${LTHR[$rate]}/s, ${LOK[$rate]})"
  target "SecureVault holds $rate/s" "${STHR[$rate]}" ">=" "$(awk -v r="$rate" 'BEGIN { print r * 0.99 }')" "req/s"
  target "SecureVault p99 overhead at $rate/s" "$SA99" "<" 1 "ms"
  echo "    (the bare proxy's p99 overhead at $rate/s, the floor here: $PA99 ms)"
  target "LiteLLM / SecureVault p99 overhead" "$RATIO" ">=" 10 "x"
  ROWS+=("$(printf '| %s | %s | %s | %s | %s / %s | %s / %s | %s | %s / %s | %s | %s / %s | %s | %s |' \
    "$DATE" "$MACHINE" "$REVISION" "$rate" "${D50[$rate]}" "${D99[$rate]}" "$PA50" "$PA99" "${STHR[$rate]}" "$SA50" "$SA99" \
    "${LTHR[$rate]}" "$LA50" "$LA99" "$(percent "${SOK[$rate]}")" "$(percent "${LOK[$rate]}")")")
done
echo "  /api/health: data plane $FULL req/s, bare axum $BARE req/s ($SHARE %)"
target "/api/health share of bare axum" "$SHARE" ">=" 50 "%"

for row in "${ROWS[@]}"; do
  insert_row "$TABLE_HEADER" "$row"
done
insert_row "$HEALTH_HEADER" "$(printf '| %s | %s | %s | %s | %s | %s %% |' "$DATE" "$MACHINE" "$REVISION" "$BARE" "$FULL" "$SHARE")"
echo
echo "added rows to $RESULTS (AI gateway at load)"
