#!/usr/bin/env bash
# Builds mailpit, the SMTP server SecureVault's tests send real mail to, and
# prints the path of the binary as the last line of stdout (testkit's
# `Mailpit::start` runs this script when $TESTKIT_MAILPIT is not set).
#
# mailpit is pure Go with no replace directives, so `go install pkg@version`
# builds it straight from the Go module proxy with the machine's Go; no
# prebuilt binary is downloaded. The result is kept outside the repository,
# under $SECUREVAULT_CACHE (default ~/.cache/securevault), in a directory named
# after the version: a version bump builds afresh, an unchanged one is never
# rebuilt.
#
#   bin/mailpit-v1.27.11/mailpit
#   bin/mailpit-v1.27.11.lock     serialises concurrent first runs
#
# Everything but the final path goes to stderr, so callers can take the last
# stdout line without filtering build noise.
set -euo pipefail

MAILPIT_VERSION=v1.27.11
MODULE=github.com/axllent/mailpit

CACHE=${SECUREVAULT_CACHE:-$HOME/.cache/securevault}
BIN_DIR=$CACHE/bin/mailpit-$MAILPIT_VERSION
BINARY=$BIN_DIR/mailpit

die() {
  echo "mailpit.sh: $*" >&2
  exit 1
}

# Whether DIR/mailpit is a working mailpit of the pinned version. The version
# is compiled in with -X below (a plain `go install` would report "dev"), so a
# binary that says something else is not ours. `mailpit version` prints its
# version first and then asks GitHub for a newer release; without network
# that lookup fails at once and makes it exit 1, so its status is ignored
# and only the version line counts (`timeout` bounds a lookup that hangs
# instead). It names itself by the path it was run as.
mailpit_ok() { # DIR
  local out
  [ -x "$1/mailpit" ] || return 1
  out=$(timeout 30 "$1/mailpit" version 2>&1) || true
  [[ $out == "$1/mailpit $MAILPIT_VERSION compiled with "* ]]
}

if mailpit_ok "$BIN_DIR"; then
  echo "$BINARY"
  exit 0
fi

# Two test processes starting at once must not both build and then swap the
# directory under each other: the second waits here, then finds the first
# one's build.
mkdir -p "$(dirname "$BIN_DIR")"
exec 9>"$BIN_DIR.lock"
flock 9
if mailpit_ok "$BIN_DIR"; then
  echo "$BINARY"
  exit 0
fi

command -v go >/dev/null || die "go is not installed (needed to build mailpit)"
# `go install pkg@version` builds the module as published, whatever module
# surrounds the current directory; GOWORK=off keeps a workspace named in the
# environment out of it too.
export GOWORK=off

# Built into a temporary directory beside the final one and renamed into place
# only once the binary reports the right version, so an interrupted build
# never looks like a cached one.
tmp=$(mktemp -d "$BIN_DIR.building.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "building mailpit $MAILPIT_VERSION into $BIN_DIR (first run only)" >&2
# -X sets the version the release builds set, so `mailpit version` (and the
# check above) can tell which build this is.
GOBIN=$tmp go install -trimpath \
  -ldflags "-s -w -X $MODULE/config.Version=$MAILPIT_VERSION" \
  "$MODULE@$MAILPIT_VERSION" >&2

mailpit_ok "$tmp" || die "the mailpit built in $tmp does not report $MAILPIT_VERSION"

chmod 755 "$tmp" # mktemp made it 0700
rm -rf "$BIN_DIR"
mv "$tmp" "$BIN_DIR"
trap - EXIT

echo "$BINARY"
