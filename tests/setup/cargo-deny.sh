#!/usr/bin/env bash
# cargo-deny, built from crates.io with `cargo install --locked` (no prebuilt
# binary is downloaded) and cached under $SECUREVAULT_CACHE (default
# ~/.cache/securevault) as bin/cargo-deny-VERSION/bin/cargo-deny. Idempotent:
# a cached binary that reports the right version is kept. Prints its path on
# stdout.
set -euo pipefail

CARGO_DENY_VERSION=0.20.2
CACHE=${SECUREVAULT_CACHE:-$HOME/.cache/securevault}
DIR=$CACHE/bin/cargo-deny-$CARGO_DENY_VERSION
DENY=$DIR/bin/cargo-deny

ok() { [ -x "$DENY" ] && [ "$("$DENY" --version 2>/dev/null)" = "cargo-deny $CARGO_DENY_VERSION" ]; }

mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9
if ! ok; then
  command -v cargo >/dev/null || {
    echo "cargo-deny.sh: cargo is needed to build cargo-deny $CARGO_DENY_VERSION" >&2
    exit 1
  }
  echo "cargo-deny.sh: building cargo-deny $CARGO_DENY_VERSION (first run only, about 10 minutes on 2 cores)" >&2
  # Its own target directory, removed afterwards: the workspace's
  # CARGO_TARGET_DIR is not cluttered with cargo-deny's dependencies.
  tmp=$(mktemp -d "$DIR/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  CARGO_TARGET_DIR=$tmp/target cargo install --quiet --locked "cargo-deny@$CARGO_DENY_VERSION" --root "$tmp/root" >&2
  mkdir -p "$DIR/bin"
  mv "$tmp/root/bin/cargo-deny" "$DENY"
  ok || {
    echo "cargo-deny.sh: the cargo-deny built does not report $CARGO_DENY_VERSION" >&2
    exit 1
  }
fi
echo "$DENY"
