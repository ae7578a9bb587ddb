#!/usr/bin/env bash
# go-install.sh NAME MODULE PACKAGE VERSION: a Go tool built from its module
# with the machine's Go (`go install PACKAGE@VERSION`; no prebuilt binary is
# downloaded) and cached under $SECUREVAULT_CACHE (default
# ~/.cache/securevault) as bin/NAME-VERSION/NAME. Idempotent: a cached binary
# recording MODULE at VERSION is kept. Prints its path on stdout; the build's
# noise goes to stderr.
#
# Only for modules without replace directives, which `go install pkg@version`
# refuses. Such a build has no release ldflags, so the tool's own `version`
# may say "dev" or only the minor version; the module version recorded in
# the binary (`go version -m`) is exact, and that is what is checked.
set -euo pipefail

[ $# -eq 4 ] || {
  echo "usage: $0 NAME MODULE PACKAGE VERSION" >&2
  exit 2
}
NAME=$1 MODULE=$2 PACKAGE=$3 VERSION=$4
CACHE=${SECUREVAULT_CACHE:-$HOME/.cache/securevault}
DIR=$CACHE/bin/$NAME-$VERSION
BIN=$DIR/$NAME

ok() { [ -x "$BIN" ] && go version -m "$BIN" 2>/dev/null | grep -Eq "^[[:space:]]+mod[[:space:]]+$MODULE[[:space:]]+$VERSION[[:space:]]"; }

mkdir -p "$DIR"
# Two first runs at once: the second waits, then finds the first one's build.
exec 9>"$DIR/.lock"
flock 9
if ! ok; then
  command -v go >/dev/null || {
    echo "go-install.sh: go is needed to build $NAME $VERSION" >&2
    exit 1
  }
  echo "go-install.sh: building $NAME $VERSION from $PACKAGE (first run only)" >&2
  tmp=$(mktemp -d "$DIR/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  GOBIN=$tmp go install -trimpath -ldflags "-s -w" "$PACKAGE@$VERSION" >&2
  # go names the binary after the package path's last element, or the one
  # before a major-version suffix (github.com/tsenart/vegeta/v12: vegeta).
  built=$(basename "$PACKAGE")
  if [[ $built =~ ^v[0-9]+$ ]]; then built=$(basename "$(dirname "$PACKAGE")"); fi
  mv "$tmp/$built" "$BIN"
  ok || {
    echo "go-install.sh: the $NAME built does not record $MODULE $VERSION" >&2
    exit 1
  }
fi
echo "$BIN"
