#!/usr/bin/env bash
# Argo CD, built from its Go module with the machine's Go (no prebuilt binary
# or image is downloaded) and cached under $SECUREVAULT_CACHE (default
# ~/.cache/securevault) as bin/argocd-VERSION/. Idempotent: a cached binary
# recording the right module versions is kept. Prints the path of the
# `argocd` binary on stdout; beside it are the component names the one binary
# answers to (argocd-application-controller, argocd-repo-server) and crds/
# (Application and AppProject).
#
# Why a helper module and not `go install argo-cd@version`: Argo CD's go.mod
# has replace directives, which `go install pkg@version` refuses. v3.2.11 is
# the newest release that builds here, with the two dependency pins v3.2.12
# made (v3.2.12 itself does not compile as a module; v3.3+ need a nested
# gitops-engine directory the module zip lacks). See
# ../shared/spec/test-environment.md, "Argo CD".
set -euo pipefail

ARGOCD_VERSION=v3.2.11
GITOPS_ENGINE=v0.7.1-0.20260512161450-ff8d2f5207dc
SPDYSTREAM=v0.5.1
CACHE=${SECUREVAULT_CACHE:-$HOME/.cache/securevault}
DIR=$CACHE/bin/argocd-$ARGOCD_VERSION
BIN=$DIR/argocd

ok() {
  [ -x "$BIN" ] && [ -f "$DIR/crds/application-crd.yaml" ] &&
    go version -m "$BIN" 2>/dev/null | grep -Eq "^[[:space:]]+(mod|dep)[[:space:]]+github.com/argoproj/argo-cd/v3[[:space:]]+$ARGOCD_VERSION[[:space:]]" &&
    go version -m "$BIN" 2>/dev/null | grep -Eq "github.com/argoproj/gitops-engine[[:space:]]+$GITOPS_ENGINE"
}

mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9
if ! ok; then
  command -v go >/dev/null || {
    echo "argocd.sh: go is needed to build Argo CD $ARGOCD_VERSION" >&2
    exit 1
  }
  echo "argocd.sh: building Argo CD $ARGOCD_VERSION (first run only, about 4 minutes, 2.6 GB at link)" >&2
  src=$(go mod download -json "github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION" |
    python3 -c 'import json,sys; m=json.load(sys.stdin); print(m["GoMod"]); print(m["Dir"])')
  gomod=$(sed -n 1p <<<"$src")
  moddir=$(sed -n 2p <<<"$src")
  mod=$DIR/module
  rm -rf "$mod"
  mkdir -p "$mod"
  # Argo CD's own replace block, taken from its go.mod as released: the
  # Kubernetes staging modules it pins must resolve the same way here.
  {
    echo "module securevault.io/argocd-build"
    echo
    echo "go 1.25.5"
    echo
    echo "require ("
    echo "	github.com/argoproj/argo-cd/v3 $ARGOCD_VERSION"
    echo "	github.com/argoproj/gitops-engine $GITOPS_ENGINE"
    echo "	github.com/moby/spdystream $SPDYSTREAM"
    echo ")"
    echo
    awk '/^replace \(/{f=1} f{print} f&&/^\)/{exit}' "$gomod"
  } >"$mod/go.mod"
  cat >"$mod/tools.go" <<'EOF'
//go:build tools

package tools

import _ "github.com/argoproj/argo-cd/v3/cmd"
EOF
  (cd "$mod" && go mod tidy >&2 && go build -trimpath -ldflags "-s -w" -o "$BIN.tmp" github.com/argoproj/argo-cd/v3/cmd >&2)
  mv "$BIN.tmp" "$BIN"
  rm -rf "$DIR/crds"
  mkdir -p "$DIR/crds"
  cp "$moddir"/manifests/crds/application-crd.yaml "$moddir"/manifests/crds/appproject-crd.yaml "$DIR/crds/"
  chmod u+w "$DIR"/crds/*
  # One binary serves every component, chosen by the name it runs under.
  ln -sf argocd "$DIR/argocd-application-controller"
  ln -sf argocd "$DIR/argocd-repo-server"
  ok || {
    echo "argocd.sh: the binary built does not record Argo CD $ARGOCD_VERSION with gitops-engine $GITOPS_ENGINE" >&2
    exit 1
  }
fi
echo "$BIN"
