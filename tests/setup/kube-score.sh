#!/usr/bin/env bash
# kube-score (static checks of Kubernetes objects: resources, probes,
# security contexts, network policies, disruption budgets, …), built from its
# Go module with the machine's Go (no prebuilt binary is downloaded) and
# cached under $SECUREVAULT_CACHE (default ~/.cache/securevault) as
# bin/kube-score-VERSION/kube-score. Idempotent: a cached binary recording the
# right module version is kept. Prints its path on stdout.
#
# Why not kube-linter: its module (golang.stackrox.io/kube-linter) is not
# served by the Go module proxy this project builds from, and it publishes no
# package in any other registry we reach. kube-score is the linter of the same
# kind that is: github.com/zegl/kube-score, whose go.mod has no replace
# directives, so `go install pkg@version` builds it as released.
set -euo pipefail

KUBE_SCORE_VERSION=v1.20.0
CACHE=${SECUREVAULT_CACHE:-$HOME/.cache/securevault}
DIR=$CACHE/bin/kube-score-$KUBE_SCORE_VERSION
BIN=$DIR/kube-score

# A binary built by `go install` has no release ldflags (`kube-score version`
# prints "dev"); the module version recorded in the binary is exact.
ok() { [ -x "$BIN" ] && go version -m "$BIN" 2>/dev/null | grep -Eq "^[[:space:]]+mod[[:space:]]+github.com/zegl/kube-score[[:space:]]+$KUBE_SCORE_VERSION[[:space:]]"; }

mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9
if ! ok; then
  command -v go >/dev/null || {
    echo "kube-score.sh: go is needed to build kube-score $KUBE_SCORE_VERSION" >&2
    exit 1
  }
  echo "kube-score.sh: building kube-score $KUBE_SCORE_VERSION (first run only, about a minute)" >&2
  tmp=$(mktemp -d "$DIR/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  GOBIN=$tmp go install -trimpath -ldflags "-s -w" "github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION" >&2
  mv "$tmp/kube-score" "$BIN"
  ok || {
    echo "kube-score.sh: the kube-score built does not report $KUBE_SCORE_VERSION" >&2
    exit 1
  }
fi
echo "$BIN"
