#!/usr/bin/env bash
# `make run`: the data plane on embedded defaults (SQLite in ./data, the
# in-process cache) with a local SMTP server to send to, so a newcomer can
# post an email and read it in a browser.
#
# mailpit (built once from Go modules by tests/setup/mailpit.sh and cached)
# listens on 127.0.0.1:1025 for SMTP and serves its web page on
# http://127.0.0.1:8025; it keeps what arrived in ./data/mailpit.db, beside
# the data plane's SQLite file, so both survive a restart. It stops when the
# data plane does.
#
# With SMTP_HOST already set, no mailpit is started: the data plane sends to
# that server instead. MAILPIT_SMTP and MAILPIT_UI move mailpit's addresses.
#
# Likewise a local model server answers /api/generate-content: llama.cpp's
# server with SmolLM2-135M (tests/setup/llama-server.sh; the first run
# compiles llama.cpp, a few minutes) on 127.0.0.1:8090, unless
# OPENAI_BASE_URL or OPENAI_API_KEY is set. LLAMA_ADDR moves it.
#
# Every API route but health, metrics and OpenAPI needs a sign-in. Without
# ADMIN_PASSWORD, the first start creates the administrator `admin` with a
# random password in ./data/admin-password (mode 0600). The session cookie is
# not marked Secure here, since this is plain HTTP on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

MAILPIT_SMTP=${MAILPIT_SMTP:-127.0.0.1:1025}
MAILPIT_UI=${MAILPIT_UI:-127.0.0.1:8025}
LLAMA_ADDR=${LLAMA_ADDR:-127.0.0.1:8090}
DATA_DIR=${DATA_DIR:-./data}

die() {
  echo "run.sh: $*" >&2
  exit 1
}

# Free means nobody answers a TCP connection there.
port_free() { # HOST:PORT
  ! (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null
}

# The servers started for the data plane stop when it does (or this fails).
children=()
stop_children() {
  for pid in "${children[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
trap stop_children EXIT

cargo build --quiet -p dataplane
dataplane=${CARGO_TARGET_DIR:-target}/debug/dataplane

mkdir -p "$DATA_DIR"
if [ -z "${SMTP_HOST:-}" ]; then
  mailpit=$(tests/setup/mailpit.sh | tail -n 1)
  for addr in "$MAILPIT_SMTP" "$MAILPIT_UI"; do
    port_free "$addr" || die "$addr is in use; set MAILPIT_SMTP / MAILPIT_UI to free addresses, or SMTP_HOST to use your own SMTP server"
  done
  # No reverse DNS or release check: nothing here reaches for the network.
  "$mailpit" --smtp "$MAILPIT_SMTP" --listen "$MAILPIT_UI" \
    --database "$DATA_DIR/mailpit.db" --smtp-auth-accept-any \
    --smtp-auth-allow-insecure --smtp-disable-rdns --disable-version-check \
    --quiet &
  children+=($!)
  for _ in $(seq 100); do
    port_free "$MAILPIT_SMTP" || break
    kill -0 "${children[-1]}" 2>/dev/null || die "mailpit exited at start"
    sleep 0.1
  done
  echo "mailpit: SMTP on $MAILPIT_SMTP; sent mail at http://$MAILPIT_UI" >&2
  export SMTP_HOST=${MAILPIT_SMTP%:*} SMTP_PORT=${MAILPIT_SMTP##*:} SMTP_TLS=none
  export SMTP_FROM=${SMTP_FROM:-SecureVault <noreply@securevault.localhost>}
fi

if [ -z "${OPENAI_BASE_URL:-}" ] && [ -z "${OPENAI_API_KEY:-}" ]; then
  port_free "$LLAMA_ADDR" || die "$LLAMA_ADDR is in use; set LLAMA_ADDR to a free address, or OPENAI_BASE_URL to use your own model server"
  { read -r python; read -r model; } < <(tests/setup/llama-server.sh | tail -n 2)
  "$python" -m llama_cpp.server --model "$model" --host "${LLAMA_ADDR%:*}" \
    --port "${LLAMA_ADDR##*:}" --model_alias smollm2 --n_ctx 2048 --interrupt_requests false \
    >"$DATA_DIR/llama-server.log" 2>&1 &
  children+=($!)
  for _ in $(seq 300); do
    curl -sf "http://$LLAMA_ADDR/v1/models" >/dev/null && break
    kill -0 "${children[-1]}" 2>/dev/null || die "the model server exited at start; see $DATA_DIR/llama-server.log"
    sleep 0.2
  done
  echo "model server: SmolLM2-135M on http://$LLAMA_ADDR/v1 (log in $DATA_DIR/llama-server.log)" >&2
  export OPENAI_BASE_URL="http://$LLAMA_ADDR/v1" OPENAI_MODEL=${OPENAI_MODEL:-smollm2}
fi

export DATA_DIR
export SESSION_COOKIE_SECURE=${SESSION_COOKIE_SECURE:-false}
if [ -z "${ADMIN_PASSWORD:-}" ]; then
  echo "sign in as admin with the password in $DATA_DIR/admin-password (made on the first start)" >&2
fi
echo "web console: http://127.0.0.1:8080/console (LISTEN_ADDR moves it)" >&2
# Not exec: the trap above stops the servers once the data plane exits.
"$dataplane" serve
