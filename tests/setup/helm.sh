#!/usr/bin/env bash
# Helm v4, built from its Go module with the machine's Go (no prebuilt
# binary is downloaded) and cached under $SECUREVAULT_CACHE (default
# ~/.cache/securevault) as bin/helm-VERSION/helm. Idempotent: a cached binary
# that reports the right version is kept. Prints its path on stdout.
set -euo pipefail

HELM_VERSION=v4.3.1
CACHE=${SECUREVAULT_CACHE:-$HOME/.cache/securevault}
DIR=$CACHE/bin/helm-$HELM_VERSION
HELM=$DIR/helm

# `helm version` prints only the minor version of a binary built without
# release ldflags; the module version recorded in the binary is exact.
ok() { [ -x "$HELM" ] && go version -m "$HELM" 2>/dev/null | grep -Eq "^[[:space:]]+mod[[:space:]]+helm.sh/helm/v4[[:space:]]+$HELM_VERSION[[:space:]]"; }

mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9
if ! ok; then
  command -v go >/dev/null || {
    echo "helm.sh: go is needed to build helm $HELM_VERSION" >&2
    exit 1
  }
  echo "helm.sh: building helm $HELM_VERSION (first run only, about 2 minutes)" >&2
  tmp=$(mktemp -d "$DIR/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  # helm has no replace directives: `go install pkg@version` builds it as
  # released, whatever module surrounds the current directory.
  GOBIN=$tmp go install -trimpath -ldflags "-s -w" "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" >&2
  mv "$tmp/helm" "$HELM"
  ok || {
    echo "helm.sh: the helm built does not report $HELM_VERSION" >&2
    exit 1
  }
fi
echo "$HELM"
