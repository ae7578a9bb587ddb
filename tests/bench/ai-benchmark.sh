#!/usr/bin/env bash
# Measures what SecureVault adds to a generation, beside LiteLLM's proxy, and
# adds one dated row to the "AI" table of docs/benchmarks.md (`make
# benchmark` runs it; docs/benchmarks.md explains what is measured):
# tests/bench/ai_latency.py sends the same small chat request, interleaved,
# to one llama.cpp server (SmolLM2-135M) directly, through a release data
# plane, and through LiteLLM's proxy; the median of each minus the direct
# one is what that path adds. Then 32 requests at once to each, four times,
# counting failures.
#
# A measurement, not a test: a missed target prints MISS. It fails when a
# server does not start.
#
# Environment:
#   BENCH_AI_ROUNDS       requests per path for the medians (default 200)
#   BENCH_AI_CONCURRENCY  requests at once (default 32)
#   CARGO_TARGET_DIR      defaults to ~/.cache/securevault/target
set -euo pipefail

BENCH_AI_ROUNDS=${BENCH_AI_ROUNDS:-200}
BENCH_AI_CONCURRENCY=${BENCH_AI_CONCURRENCY:-32}
LITELLM='litellm[proxy]==1.106.12'
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/securevault/target}
export PATH="$HOME/.cargo/bin:$PATH"

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=tests/bench/lib.sh
source tests/bench/lib.sh
TABLE_HEADER='| Date (UTC) | Machine | Revision | direct median ms |'

grep -qF "$TABLE_HEADER" "$RESULTS" || die "$RESULTS lacks the AI table ($TABLE_HEADER ...)"

REVISION=$(bench_revision)
echo "==> building the release data plane, llama.cpp's server and LiteLLM (cached after the first run)"
cargo build --release --locked -p dataplane
BIN="$CARGO_TARGET_DIR/release/dataplane"
{ read -r LLAMA_PYTHON; read -r MODEL; } < <(tests/setup/llama-server.sh | tail -n 2)
LITELLM_PYTHON=$(VENV_NAME=venv-litellm tests/setup/python-venv.sh "$LITELLM" | tail -n 1)

bench_scratch securevault-ai-bench

LLAMA_PORT=$(free_port)
"$LLAMA_PYTHON" -m llama_cpp.server --model "$MODEL" --host 127.0.0.1 --port "$LLAMA_PORT" \
  --model_alias smollm2 --n_ctx 2048 --interrupt_requests false >"$TMP/llama.log" 2>&1 &
PIDS+=($!)
wait_until "llama.cpp's server answering http://127.0.0.1:$LLAMA_PORT/v1/models" 120 curl -sf "http://127.0.0.1:$LLAMA_PORT/v1/models"

SV_ADDR="127.0.0.1:$(free_port)"
mkdir -p "$TMP/data"
# AI_MAX_CONCURRENCY at the load's concurrency: the default (16) would answer
# half of 32 simultaneous requests 503, by design.
env -i PATH="$PATH" HOME="$HOME" LISTEN_ADDR="$SV_ADDR" METRICS_ADDR="127.0.0.1:$(free_port)" DATA_DIR="$TMP/data" LOG_LEVEL=warn \
  OPENAI_BASE_URL="http://127.0.0.1:$LLAMA_PORT/v1" OPENAI_MODEL=smollm2 \
  AI_MAX_CONCURRENCY="$BENCH_AI_CONCURRENCY" "${BENCH_AUTH_ENV[@]}" \
  "$BIN" serve >"$TMP/dataplane.log" 2>&1 &
PIDS+=($!)
wait_until "the data plane answering http://$SV_ADDR/api/health/ready" 30 curl -sf "http://$SV_ADDR/api/health/ready"
BENCH_SV_KEY=$(bench_api_key "http://$SV_ADDR") || die "could not create an API key"
export BENCH_SV_KEY

LITELLM_PORT=$(free_port)
cat >"$TMP/litellm.yaml" <<YAML
model_list:
  - model_name: smollm2
    litellm_params:
      model: openai/smollm2
      api_base: http://127.0.0.1:$LLAMA_PORT/v1
      api_key: none
YAML
# The local copy of its model cost map: no fetch from GitHub (no network here,
# and none should be needed).
# Its proxy refuses to start without a master key; clients present it.
export BENCH_API_KEY=sk-securevault-benchmark-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
LITELLM_MASTER_KEY=$BENCH_API_KEY LITELLM_LOCAL_MODEL_COST_MAP=True "$(dirname "$LITELLM_PYTHON")/litellm" \
  --config "$TMP/litellm.yaml" --host 127.0.0.1 --port "$LITELLM_PORT" \
  >"$TMP/litellm.log" 2>&1 &
PIDS+=($!)
wait_until "LiteLLM's proxy answering http://127.0.0.1:$LITELLM_PORT/health/liveliness" 180 curl -sf "http://127.0.0.1:$LITELLM_PORT/health/liveliness"

echo "==> $BENCH_AI_ROUNDS interleaved requests per path, then $BENCH_AI_CONCURRENCY at once"
RESULT=$("$LITELLM_PYTHON" tests/bench/ai_latency.py \
  "http://127.0.0.1:$LLAMA_PORT/v1/chat/completions" \
  "http://$SV_ADDR/api/generate-content" \
  "http://127.0.0.1:$LITELLM_PORT/v1/chat/completions" \
  "$BENCH_AI_ROUNDS" "$BENCH_AI_CONCURRENCY")
field() { python3 -c 'import json, sys; d = json.loads(sys.argv[1]); print(eval("d" + sys.argv[2]))' "$RESULT" "$1"; }
DIRECT=$(field '["median_ms"]["direct"]')
SV=$(field '["median_ms"]["securevault"]')
LL=$(field '["median_ms"]["litellm"]')
SV_OVER=$(field '["overhead_ms"]["securevault"]')
LL_OVER=$(field '["overhead_ms"]["litellm"]')
SV_FAIL=$(field '["failures"]["securevault"]')
LL_FAIL=$(field '["failures"]["litellm"]')
DIRECT_FAIL=$(field '["failures"]["direct"]')
RATIO=$(awk -v s="$SV_OVER" -v l="$LL_OVER" 'BEGIN { printf "%.1f", (s > 0.05 ? l / s : l / 0.05) }')
MACHINE=$(bench_machine)
DATE=$(date -u '+%Y-%m-%d %H:%M')

cat <<REPORT

SecureVault AI benchmark, $DATE UTC
  machine    $MACHINE
  revision   $REVISION
  model      SmolLM2-135M on llama.cpp's server (llama-cpp-python), max_tokens 1, temperature 0
  medians    direct $DIRECT ms, SecureVault $SV ms (+$SV_OVER), LiteLLM $LL ms (+$LL_OVER) over $BENCH_AI_ROUNDS rounds
  failures   of $((BENCH_AI_ROUNDS + 4 * BENCH_AI_CONCURRENCY)): direct $DIRECT_FAIL, SecureVault $SV_FAIL, LiteLLM $LL_FAIL
  raw        $RESULT

Targets:
REPORT
target "SecureVault overhead, median" "$SV_OVER" "<" 1 "ms"
target "LiteLLM overhead / SecureVault's" "$RATIO" ">=" 10 "x"
target "SecureVault added failures" "$((SV_FAIL - DIRECT_FAIL))" "<=" 0 ""

insert_row "$TABLE_HEADER" "$(printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |' \
  "$DATE" "$MACHINE" "$REVISION" "$DIRECT" "$SV_OVER" "$LL_OVER" "$RATIO" \
  "$DIRECT_FAIL" "$SV_FAIL" "$LL_FAIL")"
echo
echo "added a row to $RESULTS (AI)"
