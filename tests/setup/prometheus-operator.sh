#!/usr/bin/env bash
# prometheus-operator.sh operator|prometheus: the Prometheus Operator and a
# Prometheus server with Kubernetes service discovery, built from their Go
# modules with the machine's Go (no prebuilt binary or image is downloaded)
# and cached under $SECUREVAULT_CACHE (default ~/.cache/securevault):
#
#   bin/prometheus-operator-v0.85.0/operator   and crds/, the five CRDs it
#                                              watches (it waits for each)
#   bin/prometheus-v3.16.0/prometheus
#
# Prints the path of the one asked for on stdout; the build's noise goes to
# stderr. Idempotent: a cached binary recording the right module version is
# kept. Used by the real-node test that has the Prometheus Operator turn our
# ServiceMonitor and PrometheusRule into a Prometheus configuration, which
# the Prometheus built here then loads and scrapes with.
#
# Where each comes from, and why:
# - The operator is built in tests/cluster/kube, the module that builds the
#   test control plane: its Kubernetes libraries are the cluster's own
#   (v0.37.2) and already compiled there. `go install` cannot build it: its
#   go.mod has replace directives.
# - Prometheus is built in tests/monitoring/prometheus (its go.mod says why
#   not Debian's package, and why a module of its own), with only the
#   Kubernetes and file service discoveries compiled in.
set -euo pipefail

PROMETHEUS_OPERATOR_VERSION=v0.85.0
PROMETHEUS_VERSION=v3.16.0
# Prometheus 3.x is published as Go module version v0.3MM.P.
PROMETHEUS_MODULE_VERSION=v0.316.0
CRDS=(prometheuses servicemonitors podmonitors probes prometheusrules)

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${SECUREVAULT_CACHE:-$HOME/.cache/securevault}

die() {
  echo "prometheus-operator.sh: $*" >&2
  exit 1
}

# recorded BIN MODULE VERSION: BIN was built with MODULE at VERSION.
recorded() {
  [ -x "$1" ] && go version -m "$1" 2>/dev/null |
    grep -Eq "^[[:space:]]+(mod|dep)[[:space:]]+$2[[:space:]]+$3([[:space:]]|$)"
}

# build NAME MODULE_DIR PACKAGE MODULE_VERSION VERSION TAGS: go build into a
# fresh directory beside the final one (renamed into place once complete),
# with the version the program reports set as its release build sets it.
build() {
  local name=$1 dir=$2 package=$3 module_version=$4 version=$5 tags=$6 tmp
  command -v go >/dev/null || die "go is needed to build $name"
  grep -Eq "^[[:space:]]*(require )?$MODULE $module_version\$" "$dir/go.mod" ||
    die "$dir/go.mod does not require $MODULE $module_version, the version this script pins"
  tmp=$(mktemp -d "$OUT.building.XXXXXX")
  (cd "$dir" && go build -trimpath -tags "$tags" \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=${version#v}" \
    -o "$tmp/$name" "$package") >&2 || {
    rm -rf "$tmp"
    die "building $name failed"
  }
  echo "$tmp"
}

case "${1:-}" in
operator)
  OUT=$CACHE/bin/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION
  BIN=$OUT/operator
  MODULE=github.com/prometheus-operator/prometheus-operator
  ok() {
    recorded "$BIN" "$MODULE" "$PROMETHEUS_OPERATOR_VERSION" &&
      for crd in "${CRDS[@]}"; do [ -s "$OUT/crds/$crd.yaml" ] || return 1; done
  }
  ;;
prometheus)
  OUT=$CACHE/bin/prometheus-$PROMETHEUS_VERSION
  BIN=$OUT/prometheus
  MODULE=github.com/prometheus/prometheus
  ok() { recorded "$BIN" "$MODULE" "$PROMETHEUS_MODULE_VERSION"; }
  ;;
*)
  echo "usage: $0 operator|prometheus" >&2
  exit 2
  ;;
esac

mkdir -p "$(dirname "$OUT")"
# Two first runs at once: the second waits, then finds the first one's build.
exec 9>"$OUT.lock"
flock 9
if ! ok; then
  rm -rf "$OUT".building.*
  case "$1" in
  operator)
    echo "prometheus-operator.sh: building the Prometheus Operator $PROMETHEUS_OPERATOR_VERSION (first run only)" >&2
    tmp=$(build operator "$HERE/../cluster/kube" "$MODULE/cmd/operator" \
      "$PROMETHEUS_OPERATOR_VERSION" "$PROMETHEUS_OPERATOR_VERSION" "")
    # The CRDs ship in the module zip, which the build has just fetched.
    src=$(cd "$HERE/../cluster/kube" && go list -m -f '{{.Dir}}' "$MODULE")
    mkdir -p "$tmp/crds"
    for crd in "${CRDS[@]}"; do
      cp "$src/example/prometheus-operator-crd/monitoring.coreos.com_$crd.yaml" "$tmp/crds/$crd.yaml"
    done
    chmod -R u+w "$tmp/crds"
    ;;
  prometheus)
    echo "prometheus-operator.sh: building Prometheus $PROMETHEUS_VERSION with Kubernetes service discovery (first run only)" >&2
    tmp=$(build prometheus "$HERE/../monitoring/prometheus" "$MODULE/cmd/prometheus" \
      "$PROMETHEUS_MODULE_VERSION" "$PROMETHEUS_VERSION" remove_all_sd,enable_kubernetes_sd)
    ;;
  esac
  chmod 755 "$tmp"
  rm -rf "$OUT"
  mv "$tmp" "$OUT"
  ok || die "the $1 built does not record $MODULE $([ "$1" = operator ] && echo "$PROMETHEUS_OPERATOR_VERSION" || echo "$PROMETHEUS_MODULE_VERSION")"
fi
echo "$BIN"
