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
set -euo pipefail
cd "$(dirname "$0")/.."

MAILPIT_SMTP=${MAILPIT_SMTP:-127.0.0.1:1025}
MAILPIT_UI=${MAILPIT_UI:-127.0.0.1:8025}
DATA_DIR=${DATA_DIR:-./data}

die() {
  echo "run.sh: $*" >&2
  exit 1
}

# Free means nobody answers a TCP connection there.
port_free() { # HOST:PORT
  ! (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null
}

cargo build --quiet -p dataplane
dataplane=${CARGO_TARGET_DIR:-target}/debug/dataplane

if [ -z "${SMTP_HOST:-}" ]; then
  mailpit=$(tests/setup/mailpit.sh | tail -n 1)
  for addr in "$MAILPIT_SMTP" "$MAILPIT_UI"; do
    port_free "$addr" || die "$addr is in use; set MAILPIT_SMTP / MAILPIT_UI to free addresses, or SMTP_HOST to use your own SMTP server"
  done
  mkdir -p "$DATA_DIR"
  # No reverse DNS or release check: nothing here reaches for the network.
  "$mailpit" --smtp "$MAILPIT_SMTP" --listen "$MAILPIT_UI" \
    --database "$DATA_DIR/mailpit.db" --smtp-auth-accept-any \
    --smtp-auth-allow-insecure --smtp-disable-rdns --disable-version-check \
    --quiet &
  mailpit_pid=$!
  trap 'kill "$mailpit_pid" 2>/dev/null; wait "$mailpit_pid" 2>/dev/null || true' EXIT
  for _ in $(seq 100); do
    port_free "$MAILPIT_SMTP" || break
    kill -0 "$mailpit_pid" 2>/dev/null || die "mailpit exited at start"
    sleep 0.1
  done
  echo "mailpit: SMTP on $MAILPIT_SMTP; sent mail at http://$MAILPIT_UI" >&2
  export SMTP_HOST=${MAILPIT_SMTP%:*} SMTP_PORT=${MAILPIT_SMTP##*:} SMTP_TLS=none
  export SMTP_FROM=${SMTP_FROM:-SecureVault <noreply@securevault.localhost>}
fi

export DATA_DIR
# Not exec: the trap above stops mailpit once the data plane exits.
"$dataplane" serve
