#!/usr/bin/env bash
# `make k8s-deploy`: installs (or upgrades) the operator's Helm chart into the
# cluster of KUBECONFIG (default: the local cluster of `make cluster-up`) and
# applies the minimal SecureVault sample, then waits until it is Ready.
#
# The local cluster's nodes are kwok's: they report pods Running without
# starting a container, so the operator pods the chart creates never really
# run there. On such a cluster this script also runs the operator on this
# host, as the chart's ServiceAccount (a token from `kubectl create token`),
# so that it has exactly the rights the chart grants. Its log is
# $STATE/operator.log; `make cluster-down` or `make k8s-undeploy` stops it.
#
#   RELEASE    Helm release name                 (securevault-operator)
#   NAMESPACE  the operator's namespace          (securevault-system)
#   SAMPLE     SecureVault manifest to apply     (config/samples/minimal.yaml)
#   SAMPLE_NAMESPACE  where it goes, and the namespace the operator
#                     watches                     (default)
#   HELM_ARGS  more `helm upgrade --install` arguments, e.g.
#              "--set watchNamespaces={team-a,team-b}" or, to give the
#              operator every namespace (and every Secret),
#              "--set clusterWide=true"; when they name watchNamespaces or
#              clusterWide, the script leaves the choice of namespaces to them
#              (it does not look inside a values file given with -f: set
#              them with --set there)
#   LOCAL_OPERATOR_DIR   state of the operator run on this host
#                        ($SECUREVAULT_CACHE/cluster/local-operator)
#   LOCAL_METRICS_ADDR   its metrics address           (127.0.0.1:8081)
#   OPERATOR_BIN         its binary (default: built by cargo)
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${SECUREVAULT_CACHE:-$HOME/.cache/securevault}
RELEASE=${RELEASE:-securevault-operator}
NAMESPACE=${NAMESPACE:-securevault-system}
SAMPLE=${SAMPLE:-config/samples/minimal.yaml}
SAMPLE_NAMESPACE=${SAMPLE_NAMESPACE:-default}
STATE=${LOCAL_OPERATOR_DIR:-$CACHE/cluster/local-operator}
LOCAL_METRICS_ADDR=${LOCAL_METRICS_ADDR:-127.0.0.1:8081}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}

log() { echo "k8s-deploy: $*" >&2; }
die() {
  log "$*"
  exit 1
}

# Whether process $1 runs (an exited one nobody has reaped yet does not).
alive() { [ -r "/proc/$1/stat" ] && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]; }

stop_local_operator() {
  if [ -f "$STATE/pid" ]; then
    local pid
    pid=$(cat "$STATE/pid")
    if alive "$pid"; then
      kill -TERM "$pid"
      for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.2; done
      log "stopped the operator running on this host (pid $pid)"
    fi
    rm -f "$STATE/pid"
  fi
}

if [ "${1:-}" = "undeploy" ]; then
  stop_local_operator
  exit 0
fi

if [ -z "${KUBECONFIG:-}" ]; then
  KUBECONFIG=$CACHE/cluster/kubeconfig
  [ -f "$KUBECONFIG" ] || die "no KUBECONFIG set and no local cluster: run \`make cluster-up\` first, or set KUBECONFIG to your cluster's"
fi
export KUBECONFIG
KUBECTL=$(command -v kubectl || true)
[ -n "$KUBECTL" ] || KUBECTL=$(SECUREVAULT_CACHE="$CACHE" tests/cluster/cluster.sh kubectl)
[ -x "$KUBECTL" ] || die "kubectl not found: run \`make cluster-build\` (it builds one) or install kubectl"
HELM=$(SECUREVAULT_CACHE="$CACHE" tests/setup/helm.sh)

"$KUBECTL" version >/dev/null 2>&1 || die "the cluster of $KUBECONFIG does not answer"
# The chart's rights reach only the namespaces it watches (its own by
# default), and the sample goes in SAMPLE_NAMESPACE: watch that one, unless
# HELM_ARGS chose (the chart refuses both a list and clusterWide at once).
scope=()
case "${HELM_ARGS:-}" in
*watchNamespaces* | *clusterWide*) ;;
*) scope=(--set "watchNamespaces={$SAMPLE_NAMESPACE}") ;;
esac
# The chart installs and upgrades the SecureVault CRD, unless the cluster's
# belongs to something else (kubectl apply of crds/, GitOps, another
# release): then that owner keeps it and the chart leaves it alone, rather
# than fail on it or take it over.
crd_owner=$("$KUBECTL" get crd securevaults.securevault.io --ignore-not-found \
  -o jsonpath='{.metadata.annotations.meta\.helm\.sh/release-namespace}/{.metadata.annotations.meta\.helm\.sh/release-name}' 2>/dev/null || true)
case "$crd_owner" in
"" | "$NAMESPACE/$RELEASE") ;;
*)
  owner="release $crd_owner"
  [ "$crd_owner" != / ] || owner="applied without Helm"
  log "the cluster's SecureVault CRD is managed outside this release ($owner); leaving it (crds.enabled=false)"
  scope+=(--set crds.enabled=false)
  ;;
esac
log "installing chart charts/securevault-operator as release $RELEASE in namespace $NAMESPACE"
"$HELM" upgrade --install "$RELEASE" charts/securevault-operator \
  --namespace "$NAMESPACE" --create-namespace --wait --timeout 5m "${scope[@]}" ${HELM_ARGS:-}

# Nodes kwok simulates carry this annotation (kwokctl scale node). The
# chart's pods really run only on another node without taints: the real node
# of `make cluster-up NODE=real` is tainted for the tests that ask for it.
real_nodes=$("$KUBECTL" get nodes -o jsonpath='{range .items[*]}{.metadata.annotations.kwok\.x-k8s\.io/node}{"|"}{.spec.taints}{"\n"}{end}' | grep -c '^|$' || true)
if [ "$real_nodes" = 0 ]; then
  # Run it as the chart's pod would: its ServiceAccount, its settings.
  deployment=$("$KUBECTL" get deployment -n "$NAMESPACE" -l "app.kubernetes.io/instance=$RELEASE" -o name)
  [ -n "$deployment" ] || die "the chart created no operator Deployment in $NAMESPACE"
  account=$("$KUBECTL" get -n "$NAMESPACE" "$deployment" -o jsonpath='{.spec.template.spec.serviceAccountName}')
  setting() { "$KUBECTL" get -n "$NAMESPACE" "$deployment" -o jsonpath="{.spec.template.spec.containers[0].env[?(@.name==\"$1\")].value}"; }
  log "no node runs the chart's pods for real (kwok nodes, or tainted ones): running the operator on this host as ServiceAccount $NAMESPACE/$account"
  stop_local_operator
  if [ -z "${OPERATOR_BIN:-}" ]; then
    cargo build --quiet --workspace --locked --bins
    OPERATOR_BIN=$CARGO_TARGET_DIR/debug/operator
  fi
  mkdir -p "$STATE"
  token=$("$KUBECTL" create token "$account" -n "$NAMESPACE" --duration=24h)
  server=$("$KUBECTL" config view --minify -o jsonpath='{.clusters[0].cluster.server}')
  ca=$("$KUBECTL" config view --raw --minify --flatten -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
  umask 077
  cat >"$STATE/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: '$server', certificate-authority-data: '$ca'}
users:
- name: $account
  user: {token: '$token'}
contexts:
- name: local
  context: {cluster: local, user: $account}
current-context: local
EOF
  # Unset in the chart's cluster-wide mode: the operator then watches every
  # namespace, as the chart's pod would.
  watch=$(setting WATCH_NAMESPACE)
  level=$(setting LOG_LEVEL)
  lease=$(setting LEASE_DURATION_SECS)
  renew=$(setting LEASE_RENEW_SECS)
  # Emptied here, not by the background job's redirection: that runs
  # later, in the forked shell, and the wait below would first find the
  # replaced operator's "became the leader" in the old log.
  : >"$STATE/operator.log"
  KUBECONFIG=$STATE/kubeconfig POD_NAMESPACE=$NAMESPACE POD_NAME=local-$(hostname) \
    WATCH_NAMESPACE=$watch LOG_LEVEL=${level:-info} \
    LEASE_DURATION_SECS=${lease:-15} LEASE_RENEW_SECS=${renew:-5} \
    METRICS_ADDR=$LOCAL_METRICS_ADDR \
    setsid "$OPERATOR_BIN" run >>"$STATE/operator.log" 2>&1 </dev/null &
  echo $! >"$STATE/pid"
  for _ in $(seq 1 150); do
    grep -q "became the leader" "$STATE/operator.log" && break
    alive "$(cat "$STATE/pid")" || die "the operator stopped: $(tail -5 "$STATE/operator.log")"
    sleep 0.2
  done
  grep -q "became the leader" "$STATE/operator.log" || die "the operator did not become the leader in 30 s; see $STATE/operator.log"
  log "operator running (pid $(cat "$STATE/pid"), log $STATE/operator.log, metrics on $LOCAL_METRICS_ADDR), watching ${watch:-every namespace}"
fi

name=$("$KUBECTL" create --dry-run=client -o jsonpath='{.metadata.name}' -f "$SAMPLE")
log "applying $SAMPLE (SecureVault $name) in namespace $SAMPLE_NAMESPACE"
"$KUBECTL" apply -n "$SAMPLE_NAMESPACE" -f "$SAMPLE"
# `kubectl wait` gives up at once on an object with no status yet: poll.
for _ in $(seq 1 240); do
  ready=$("$KUBECTL" get -n "$SAMPLE_NAMESPACE" "securevault/$name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')
  [ "$ready" = True ] && break
  sleep 0.5
done
[ "$ready" = True ] || die "SecureVault $name is not Ready after 2 minutes: kubectl describe -n $SAMPLE_NAMESPACE securevault/$name says why"
"$KUBECTL" get -n "$SAMPLE_NAMESPACE" securevaults
