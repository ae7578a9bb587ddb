#!/usr/bin/env bash
# cargo-cyclonedx, built from crates.io with `cargo install --locked` (no
# prebuilt binary is downloaded) and cached under $SECUREVAULT_CACHE (default
# ~/.cache/securevault) as bin/cargo-cyclonedx-VERSION/bin/cargo-cyclonedx.
# Idempotent: a cached binary that reports the right version is kept. Prints
# its path on stdout.
#
# It writes the CycloneDX SBOM of each binary from `cargo metadata` (the
# resolved Cargo.lock), which scripts/publish.sh attests onto its image.
set -euo pipefail

CARGO_CYCLONEDX_VERSION=0.5.9
CACHE=${SECUREVAULT_CACHE:-$HOME/.cache/securevault}
DIR=$CACHE/bin/cargo-cyclonedx-$CARGO_CYCLONEDX_VERSION
BIN=$DIR/bin/cargo-cyclonedx

# As a cargo subcommand it is run with `cyclonedx` first, and it then calls
# itself "cargo-cyclonedx-cyclonedx 0.5.9".
ok() { [ -x "$BIN" ] && [[ $("$BIN" cyclonedx --version 2>/dev/null) == cargo-cyclonedx*" $CARGO_CYCLONEDX_VERSION" ]]; }

mkdir -p "$DIR"
# Two first runs at once: the second waits, then finds the first one's build.
exec 9>"$DIR/.lock"
flock 9
if ! ok; then
  command -v cargo >/dev/null || {
    echo "cargo-cyclonedx.sh: cargo is needed to build cargo-cyclonedx $CARGO_CYCLONEDX_VERSION" >&2
    exit 1
  }
  echo "cargo-cyclonedx.sh: building cargo-cyclonedx $CARGO_CYCLONEDX_VERSION (first run only)" >&2
  # Its own target directory, removed afterwards: the workspace's
  # CARGO_TARGET_DIR is not cluttered with the tool's dependencies.
  # --debug: a cold `make test` builds this, and an unoptimised build takes
  # half the CPU (81 s against 157 s on 2 cores) while the tool, reading
  # `cargo metadata`, still takes under a second (0.9 s against 0.5 s for
  # this workspace) and writes the same document.
  tmp=$(mktemp -d "$DIR/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  CARGO_TARGET_DIR=$tmp/target cargo install --quiet --locked --debug \
    "cargo-cyclonedx@$CARGO_CYCLONEDX_VERSION" --root "$tmp/root" >&2
  mkdir -p "$DIR/bin"
  mv "$tmp/root/bin/cargo-cyclonedx" "$BIN"
  ok || {
    echo "cargo-cyclonedx.sh: the cargo-cyclonedx built does not report $CARGO_CYCLONEDX_VERSION" >&2
    exit 1
  }
fi
echo "$BIN"
