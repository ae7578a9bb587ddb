#!/usr/bin/env bash
# Builds SeaweedFS's `weed`, the S3-compatible server the backup tests store
# into, and prints the path of the binary as the last line of stdout
# (testkit's `SeaweedFs::start` runs this script when $TESTKIT_WEED is not
# set). SeaweedFS is Apache-2.0; MinIO (AGPL) is not used.
#
# SeaweedFS's go.mod has a replace directive, so `go install pkg@version`
# refuses it; the helper module tests/setup/seaweedfs pins the version and
# repeats the directive, and `go build` compiles it from the Go module proxy
# with the machine's Go (no prebuilt binary is downloaded). The result is
# kept under $SECUREVAULT_CACHE (default ~/.cache/securevault), in a
# directory named after the version, and never rebuilt while it records it:
#
#   bin/seaweedfs-<version>/weed
#   bin/seaweedfs-<version>.lock     serialises concurrent first runs
#
# Everything but the final path goes to stderr.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
MODULE=github.com/seaweedfs/seaweedfs
VERSION=$(sed -n "s|^require $MODULE \(v[^ ]*\)\$|\1|p" "$HERE/seaweedfs/go.mod")
CACHE=${SECUREVAULT_CACHE:-$HOME/.cache/securevault}
BIN_DIR=$CACHE/bin/seaweedfs-$VERSION
BINARY=$BIN_DIR/weed

die() {
  echo "seaweedfs.sh: $*" >&2
  exit 1
}
[ -n "$VERSION" ] || die "tests/setup/seaweedfs/go.mod has no \`require $MODULE vX\` line"

# `weed version` names no module version; the build records it exactly.
weed_ok() { # DIR
  [ -x "$1/weed" ] &&
    go version -m "$1/weed" 2>/dev/null | grep -Eq "^[[:space:]]+mod[[:space:]]+$MODULE[[:space:]]+$VERSION[[:space:]]"
}

if weed_ok "$BIN_DIR"; then
  echo "$BINARY"
  exit 0
fi

mkdir -p "$(dirname "$BIN_DIR")"
exec 9>"$BIN_DIR.lock"
flock 9
if weed_ok "$BIN_DIR"; then
  echo "$BINARY"
  exit 0
fi

command -v go >/dev/null || die "go is not installed (needed to build SeaweedFS)"
export GOWORK=off

tmp=$(mktemp -d "$BIN_DIR.building.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "building SeaweedFS $VERSION into $BIN_DIR (first run only, a few minutes)" >&2
(cd "$HERE/seaweedfs" && go build -trimpath -ldflags "-s -w" -o "$tmp/weed" "$MODULE/weed") >&2
weed_ok "$tmp" || die "the weed built in $tmp does not record $MODULE $VERSION"

chmod 755 "$tmp"
rm -rf "$BIN_DIR"
mv "$tmp" "$BIN_DIR"
trap - EXIT

echo "$BINARY"
