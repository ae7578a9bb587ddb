#!/usr/bin/env bash
# A real Kubernetes control plane for SecureVault's tests and local runs.
#
#   cluster.sh build       build and cache every binary (idempotent)
#   cluster.sh up          build, then start the cluster `securevault` (2 kwok
#                          nodes, the Prometheus Operator CRDs); a no-op when it
#                          already runs and answers
#   cluster.sh down        stop it and remove its state; a no-op when nothing runs
#   cluster.sh status      exit 0 when the API server answers /readyz
#   cluster.sh kubeconfig  print the kubeconfig's path
#   cluster.sh kubectl     print the path of the kubectl built here (for testkit)
#
# kube-apiserver, etcd, kube-controller-manager and kube-scheduler are the
# real programs, run as local processes bound to 127.0.0.1 by kwokctl's
# `binary` runtime; kwok's controller plays the kubelet of two fake nodes, so
# Deployments get Ready pods without a container runtime. kwokctl picks free
# ports itself: nothing here assumes 6443, 2379 or any other well-known port.
#
# Everything is built from the Go module proxy with the machine's Go (no
# prebuilt binary is downloaded) and kept outside the repository, under
# $SECUREVAULT_CACHE (default ~/.cache/securevault), keyed by version so a
# version bump builds afresh and an unchanged one is never rebuilt:
#
#   bin/kubernetes-v1.37.2/   kube-apiserver kube-controller-manager kube-scheduler kubectl
#   bin/etcd-v3.7.3/          etcd
#   bin/kwok-v0.8.0/          kwok kwokctl
#   crds/prometheus-operator-v0.85.0/   the ServiceMonitor, PrometheusRule, AlertmanagerConfig and Prometheus CRDs
#   crds/cert-manager-v1.21.2/          cert-manager's Certificate CRD
#   kwok/                     kwokctl's work directory (PKI, logs, pids, etcd data)
#   cluster/kubeconfig        the admin kubeconfig (context kwok-securevault)
#
# Use the cluster with the kubectl built here (the machine's /usr/bin/kubectl
# is an older client):
#
#   ~/.cache/securevault/bin/kubernetes-v1.37.2/kubectl \
#       --kubeconfig ~/.cache/securevault/cluster/kubeconfig get nodes
#
# The Go build cache and module cache are Go's defaults (~/.cache/go-build,
# ~/go/pkg/mod), also outside the repository. The versions of Kubernetes and
# etcd are those required in tests/cluster/{kube,etcd}/go.mod; the constants
# below must agree with them (checked before building).
set -euo pipefail

KUBE_VERSION=v1.37.2
ETCD_VERSION=v3.7.3
KWOK_VERSION=v0.8.0
PROMETHEUS_OPERATOR_VERSION=v0.85.0
# cert-manager's Certificate CRD (the operator creates Certificates with spec.tls.issuerRef).
CERT_MANAGER_VERSION=v1.21.2
CLUSTER_NAME=securevault
# NODE=real adds a real node (kubelet, kube-proxy, containerd) beside the
# kwok nodes: tests/cluster/node.sh. Needs root. NODE=kwok: kwok nodes only.
# Unset: a cluster that runs keeps what it has; a new one has kwok nodes only.
#
# KCM_API_QPS=N raises kube-controller-manager's client rate to N requests/s
# (burst 1.5 N; its default is 20, burst 30), for operator-benchmark.sh's
# second floor. A cluster that runs with another setting is recreated.
case "${NODE:-}" in
"") REAL_NODE= ;;
kwok) REAL_NODE=0 ;;
real) REAL_NODE=1 ;;
*)
  echo "cluster: NODE must be kwok or real (or unset), not '$NODE'" >&2
  exit 2
  ;;
esac
KCM_API_QPS=${KCM_API_QPS:-}
if [ -n "$KCM_API_QPS" ] && ! [[ $KCM_API_QPS =~ ^[1-9][0-9]*$ ]]; then
  echo "cluster: KCM_API_QPS must be a whole number of requests per second, not '$KCM_API_QPS'" >&2
  exit 2
fi

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${SECUREVAULT_CACHE:-$HOME/.cache/securevault}
BIN=$CACHE/bin
KUBE_BIN=$BIN/kubernetes-$KUBE_VERSION
ETCD_BIN=$BIN/etcd-$ETCD_VERSION
KWOK_BIN=$BIN/kwok-$KWOK_VERSION
CRD_DIR=$CACHE/crds/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION
CRD_FILES=(monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml
  monitoring.coreos.com_alertmanagerconfigs.yaml monitoring.coreos.com_prometheuses.yaml)
CERT_MANAGER_CRD_DIR=$CACHE/crds/cert-manager-$CERT_MANAGER_VERSION
CERT_MANAGER_CRD_FILES=(cert-manager.io_certificates.yaml)
CLUSTER_DIR=$CACHE/cluster
KUBECONFIG_FILE=$CLUSTER_DIR/kubeconfig
# kwokctl keeps each cluster's state in $KWOK_WORKDIR/clusters/NAME (default
# ~/.kwok); ours lives in the cache with everything else.
export KWOK_WORKDIR=$CACHE/kwok
CLUSTER_WORKDIR=$KWOK_WORKDIR/clusters/$CLUSTER_NAME

# kwokctl runs `kubectl` from PATH (v0.8.0 has no flag for it), and the
# machine's own kubectl is too old for a 1.37 server: ours goes first.
export PATH="$KUBE_BIN:$KWOK_BIN:$PATH"

log() { printf 'cluster: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

now() { date +%s.%N; }
# step DESCRIPTION COMMAND...: runs COMMAND and prints how long it took, so a
# slow step (a cold Go build, a cluster slow to become Ready) shows. COMMAND
# runs as a plain command, not inside `if` or `||`: there bash would switch
# off `set -e` for everything the function runs. A failure therefore exits
# the script, and the EXIT trap names the step and its time.
CURRENT_STEP=
STEP_START=
step() {
  CURRENT_STEP=$1
  STEP_START=$(now)
  shift
  log "$CURRENT_STEP ..."
  "$@"
  log "$CURRENT_STEP: done in $(elapsed "$STEP_START") s"
  CURRENT_STEP=
}
on_exit() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ -n "$CURRENT_STEP" ]; then
    log "$CURRENT_STEP: FAILED (exit $rc) after $(elapsed "$STEP_START") s"
  fi
}
trap on_exit EXIT
elapsed() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.1f", e - s }'; }

# ---------------------------------------------------------------- build --

# version_is BINARY WANTED_LINE ARGS...: whether `BINARY ARGS...` prints
# WANTED_LINE as a whole line. The output is captured first: grep -q closing
# the pipe early would kill the writer with SIGPIPE, which pipefail reports.
version_is() {
  local bin=$1 want=$2 out
  shift 2
  [ -x "$bin" ] || return 1
  out=$("$bin" "$@" 2>&1) || return 1
  grep -qxF -- "$want" <<<"$out"
}

kube_ok() { # DIR
  local b
  for b in kube-apiserver kube-controller-manager kube-scheduler; do
    version_is "$1/$b" "Kubernetes $KUBE_VERSION" --version || return 1
  done
  version_is "$1/kubectl" "Client Version: $KUBE_VERSION" version --client
}
etcd_ok() { version_is "$1/etcd" "etcd Version: ${ETCD_VERSION#v}" --version; }
kwok_ok() { # kwok and kwokctl print "NAME version v0.8.0 go1.26.8 (linux/amd64)"
  local b out
  for b in kwok kwokctl; do
    [ -x "$1/$b" ] || return 1
    out=$("$1/$b" --version 2>&1) || return 1
    grep -q "^$b version $KWOK_VERSION " <<<"$out" || return 1
  done
}

# The helper modules' go.mod files decide what `go build` compiles; a version
# constant above that disagreed with them would cache binaries under a wrong
# name.
check_pins() {
  grep -qE "^[[:space:]]*k8s.io/kubernetes $KUBE_VERSION\$|^require k8s.io/kubernetes $KUBE_VERSION\$" "$HERE/kube/go.mod" ||
    die "tests/cluster/kube/go.mod does not require k8s.io/kubernetes $KUBE_VERSION"
  grep -qE "^[[:space:]]*go.etcd.io/etcd/server/v3 $ETCD_VERSION\$|^require go.etcd.io/etcd/server/v3 $ETCD_VERSION\$" "$HERE/etcd/go.mod" ||
    die "tests/cluster/etcd/go.mod does not require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
}

need_go() {
  command -v go >/dev/null || die "go is not installed (needed to build the control plane)"
  # Build exactly what the helper modules say, whatever go.work lies above.
  export GOWORK=off
}

# Each group is built into a temporary directory beside its final one and
# renamed into place only once every binary reports the right version, so an
# interrupted build never looks like a cached one.
fresh_dir() { # FINAL -> prints a new empty temporary directory
  mkdir -p "$BIN"
  mktemp -d "$1.building.XXXXXX"
}
install_dir() { # TMP FINAL
  chmod 755 "$1" # mktemp made it 0700
  rm -rf "$2"
  mv "$1" "$2"
}

build_kube() {
  local tmp minor ldflags="-s -w" pkg
  minor=${KUBE_VERSION#v1.}
  minor=${minor%%.*}
  # Without these /version reports v0.0.0-master+$Format:%H$, which kubectl
  # (and kwokctl, which reads `--version` to pick flags) cannot parse. Both
  # the server side (component-base) and the client side (client-go, what
  # kubectl prints as its own version) carry one.
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  done
  tmp=$(fresh_dir "$KUBE_BIN")
  # One `go build` for the four commands: they share most packages, and go
  # compiles each shared package once.
  (cd "$HERE/kube" && go build -trimpath -ldflags "$ldflags" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl) || {
    rm -rf "$tmp"
    return 1
  }
  kube_ok "$tmp" || {
    rm -rf "$tmp"
    die "the Kubernetes binaries built do not report $KUBE_VERSION"
  }
  install_dir "$tmp" "$KUBE_BIN"
}

build_etcd() {
  local tmp
  tmp=$(fresh_dir "$ETCD_BIN")
  (cd "$HERE/etcd" && go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3) || {
    rm -rf "$tmp"
    return 1
  }
  etcd_ok "$tmp" || {
    rm -rf "$tmp"
    die "the etcd binary built does not report $ETCD_VERSION"
  }
  install_dir "$tmp" "$ETCD_BIN"
}

build_kwok() {
  local tmp
  tmp=$(fresh_dir "$KWOK_BIN")
  # kwok has no replace directives, so plain `go install pkg@version` works
  # (it ignores any module around the current directory). kwok's version is
  # a constant in its source, so no ldflags are needed.
  GOBIN=$tmp go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" \
    "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION" || {
    rm -rf "$tmp"
    return 1
  }
  kwok_ok "$tmp" || {
    rm -rf "$tmp"
    die "the kwok binaries built do not report $KWOK_VERSION"
  }
  install_dir "$tmp" "$KWOK_BIN"
}

# The Prometheus Operator's and cert-manager's CRDs ship in their Go
# modules; `go mod download` fetches the module zip from the proxy into the
# module cache and prints where it put it.
# fetch_module_files MODULE VERSION SUBDIR DEST FILE...
fetch_module_files() {
  local module=$1 version=$2 subdir=$3 dest=$4 json dir tmp f
  shift 4
  json=$(go mod download -json "$module@$version") ||
    die "go mod download $module@$version failed: $json"
  # Go prints indented JSON, one field a line; no jq needed for one string.
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")
  [ -d "$dir" ] || die "go mod download printed no module directory: $json"
  mkdir -p "$(dirname "$dest")"
  tmp=$(mktemp -d "$dest.building.XXXXXX")
  for f in "$@"; do
    cp "$dir/$subdir/$f" "$tmp/$f" || {
      rm -rf "$tmp"
      die "$module@$version has no $subdir/$f"
    }
  done
  install_dir "$tmp" "$dest"
}
fetch_crds() {
  fetch_module_files github.com/prometheus-operator/prometheus-operator \
    "$PROMETHEUS_OPERATOR_VERSION" example/prometheus-operator-crd "$CRD_DIR" "${CRD_FILES[@]}"
}
fetch_cert_manager_crds() {
  fetch_module_files github.com/cert-manager/cert-manager \
    "$CERT_MANAGER_VERSION" deploy/crds "$CERT_MANAGER_CRD_DIR" "${CERT_MANAGER_CRD_FILES[@]}"
}
# files_ok DIR FILE...
files_ok() {
  local dir=$1 f
  shift
  for f in "$@"; do [ -s "$dir/$f" ] || return 1; done
}
crds_ok() { files_ok "$CRD_DIR" "${CRD_FILES[@]}"; }
cert_manager_crds_ok() { files_ok "$CERT_MANAGER_CRD_DIR" "${CERT_MANAGER_CRD_FILES[@]}"; }

cmd_build() {
  local t0
  t0=$(now)
  lock
  # What an interrupted build left (never renamed into place).
  rm -rf "$BIN"/*.building.* "$CACHE"/crds/*.building.*
  if kube_ok "$KUBE_BIN"; then
    log "kubernetes $KUBE_VERSION: cached in $KUBE_BIN"
  else
    need_go
    check_pins
    step "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $KUBE_VERSION" build_kube
  fi
  if etcd_ok "$ETCD_BIN"; then
    log "etcd $ETCD_VERSION: cached in $ETCD_BIN"
  else
    need_go
    check_pins
    step "building etcd $ETCD_VERSION" build_etcd
  fi
  if kwok_ok "$KWOK_BIN"; then
    log "kwok $KWOK_VERSION: cached in $KWOK_BIN"
  else
    need_go
    step "building kwok and kwokctl $KWOK_VERSION" build_kwok
  fi
  if crds_ok; then
    log "Prometheus Operator CRDs $PROMETHEUS_OPERATOR_VERSION: cached in $CRD_DIR"
  else
    need_go
    step "fetching the Prometheus Operator CRDs $PROMETHEUS_OPERATOR_VERSION" fetch_crds
  fi
  if cert_manager_crds_ok; then
    log "cert-manager CRDs $CERT_MANAGER_VERSION: cached in $CERT_MANAGER_CRD_DIR"
  else
    need_go
    step "fetching the cert-manager Certificate CRD $CERT_MANAGER_VERSION" fetch_cert_manager_crds
  fi
  log "binaries ready in $(elapsed "$t0") s"
}

# ------------------------------------------------------------- up / down --

kubectl_() { "$KUBE_BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" --request-timeout=10s "$@"; }

answers() {
  [ -s "$KUBECONFIG_FILE" ] && [ -x "$KUBE_BIN/kubectl" ] &&
    [ "$(kubectl_ get --raw /readyz 2>/dev/null)" = ok ]
}

kwokctl_() { "$KWOK_BIN/kwokctl" "$@" 9>&-; }
# The real node's daemons must not hold this script's lock either.
node_() { "$HERE/node.sh" "$@" 9>&-; }

# kwokctl lists the clusters that have a work directory, running or not.
cluster_exists() {
  [ -x "$KWOK_BIN/kwokctl" ] && kwokctl_ get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"
}

# The kwokctl configuration: what its flags cannot say. kwokctl defaults to
# binding etcd, the API server, the controller manager, the scheduler and
# kwok's controller on 0.0.0.0; a test cluster answers on loopback only.
# The API server's default Service range (10.0.0.0/24) holds 254 ClusterIPs,
# too few for the operator benchmark's 500 SecureVaults (one Service each);
# a /16 keeps 10.0.0.1 as the `kubernetes` Service's address. (No
# `override: true`: kwokctl only overrides flags it already sets, and it sets
# none for the range.)
#
# Then kwok's stages: how its fake kubelet moves pods along. kwokctl uses
# kwok's defaults only when the configuration names no stage, so all of them
# are here: the node stages and pod-delete as kwok ships them (read from the
# Go module the kwok binaries were built from), and pod-ready and
# pod-complete with conditions a test steers through what it deploys:
#
#   image tag ending in -unready     a Deployment's pods never become Ready
#                                    (a release that does not start); Job
#                                    pods run as usual
#   image tag ending in -job-fails   Job pods fail with exit code 1 (a
#                                    migration that cannot complete)
#   pod annotation pod-ready.stage.kwok.x-k8s.io/delay: 3s
#   pod annotation pod-complete.stage.kwok.x-k8s.io/delay: 3s
#                                    the step waits that long (so that a
#                                    test can act while a pod starts or a
#                                    Job runs)
write_config() { # FILE
  local stages
  stages=$(kwok_stage_dir)
  [ "$REAL_NODE" = 0 ] || HOST_IP=$(node_ ip)
  {
    cat <<'EOF'
# Written by tests/cluster/cluster.sh; passed as `kwokctl -c`.
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  bindAddress: 127.0.0.1
EOF
    if [ "$REAL_NODE" = 1 ]; then
      # Pods reach the API server through the `kubernetes` Service
      # (10.0.0.1), which kube-proxy sends to the advertised address: the
      # certificate names both.
      echo "  kubeApiserverCertSANs: [\"10.0.0.1\", \"$HOST_IP\"]"
    fi
    # kwok's controller plays the kubelet only of the nodes `kwokctl scale
    # node` makes (annotated kwok.x-k8s.io/node=fake), so that a real node
    # (NODE=real, tests/cluster/node.sh) keeps its own kubelet.
    cat <<'EOF'
componentsPatches:
- name: kwok-controller
  extraArgs:
  - key: manage-all-nodes
    value: "false"
    override: true
  - key: manage-nodes-with-annotation-selector
    value: kwok.x-k8s.io/node=fake
# Claims bind: kube-controller-manager's own HostPath provisioner (for
# development clusters of one machine, which this is) makes a directory
# under /tmp/hostpath_pv on this host for each claim of the default
# StorageClass (install_storage_class).
- name: kube-controller-manager
  extraArgs:
  - key: enable-hostpath-provisioner
    value: "true"
EOF
    if [ -n "$KCM_API_QPS" ]; then
      # How fast kube-controller-manager's controllers may talk to the API
      # server (default 20/s, burst 30): the benchmark's second floor.
      cat <<EOF
  - key: kube-api-qps
    value: "$KCM_API_QPS"
  - key: kube-api-burst
    value: "$((KCM_API_QPS * 3 / 2))"
EOF
    fi
    cat <<'EOF'
- name: kube-apiserver
  extraArgs:
  - key: service-cluster-ip-range
    value: 10.0.0.0/16
  # The kubelet's address, not its name (nothing resolves node names here).
  - key: kubelet-preferred-address-types
    value: InternalIP
EOF
    if [ "$REAL_NODE" = 1 ]; then
      # ...and the API server listens on that address too.
      cat <<EOF
  - key: bind-address
    value: 0.0.0.0
    override: true
  - key: advertise-address
    value: $HOST_IP
EOF
    fi
    printf -- '---\n'
    cat "$stages/node/fast/node-initialize.yaml"
    printf -- '---\n'
    cat "$stages/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml"
    printf -- '---\n'
    cat "$stages/pod/fast/pod-delete.yaml"
    printf -- '---\n'
    steer "$stages/pod/fast/pod-ready.yaml" pod-ready \
      '(.metadata.ownerReferences // [] | any(.kind == "Job")) or (.spec.containers | all(.image | endswith("-unready") | not))'
    printf -- '---\n'
    steer "$stages/pod/fast/pod-complete.yaml" pod-complete \
      '.spec.containers | all(.image | endswith("-job-fails") | not)'
    printf -- '---\n'
    # pod-fail: pod-complete's transition, with a failed container.
    steer "$stages/pod/fast/pod-complete.yaml" pod-complete \
      '.spec.containers | any(.image | endswith("-job-fails"))' |
      sed -e 's/^  name: pod-complete$/  name: pod-fail/' \
        -e 's/exitCode: 0/exitCode: 1/' -e 's/reason: Completed/reason: Error/' \
        -e 's/phase: Succeeded/phase: Failed/'
  } >"$1"
}

# kwok's stage definitions, in the module source `go install` fetched.
kwok_stage_dir() {
  local dir
  dir="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage"
  if [ ! -d "$dir" ]; then
    # Binaries cached from an earlier build, module cache cleaned since.
    (cd "$(mktemp -d)" && GOFLAGS=-mod=mod go mod download "sigs.k8s.io/kwok@$KWOK_VERSION") >&2 ||
      die "could not fetch sigs.k8s.io/kwok@$KWOK_VERSION for its stage definitions"
  fi
  [ -f "$dir/pod/fast/pod-ready.yaml" ] || die "kwok's stages are not in $dir"
  echo "$dir"
}

# steer STAGE_FILE NAME JQ: the stage with one more selector (JQ must be
# true of the pod) and a delay read from the pod annotation
# NAME.stage.kwok.x-k8s.io/delay (none without it).
steer() {
  local file=$1 name=$2 jq=$3
  { grep -q '^    matchExpressions:$' "$file" && grep -q '^  next:$' "$file"; } ||
    die "$file no longer has the shape cluster.sh edits"
  awk -v jq="$jq" -v name="$name" '
    /^  next:$/ {
      print "  delay:"
      print "    durationMilliseconds: 0"
      print "    durationFrom:"
      print "      jq:"
      print "        expression: '\''.metadata.annotations[\"" name ".stage.kwok.x-k8s.io/delay\"]'\''"
    }
    { print }
    /^    matchExpressions:$/ {
      print "    - key: '\''" jq "'\''"
      print "      operator: In"
      print "      values: [\"true\"]"
    }
  ' "$file"
}

create_cluster() {
  # A fresh kubeconfig: kwokctl merges its context into an existing file,
  # and a stale context of an earlier cluster would only confuse.
  rm -f "$KUBECONFIG_FILE"
  kwokctl_ -c "$CLUSTER_DIR/kwokctl.yaml" create cluster \
    --name "$CLUSTER_NAME" \
    --runtime binary \
    --kube-apiserver-binary "$KUBE_BIN/kube-apiserver" \
    --kube-controller-manager-binary "$KUBE_BIN/kube-controller-manager" \
    --kube-scheduler-binary "$KUBE_BIN/kube-scheduler" \
    --etcd-binary "$ETCD_BIN/etcd" \
    --kwok-controller-binary "$KWOK_BIN/kwok" \
    --kubeconfig "$KUBECONFIG_FILE" \
    --wait 2m
}

scale_nodes() {
  kwokctl_ scale node --replicas 2 --name "$CLUSTER_NAME"
}

install_crds() {
  local f args=()
  for f in "${CRD_FILES[@]}"; do args+=(-f "$CRD_DIR/$f"); done
  for f in "${CERT_MANAGER_CRD_FILES[@]}"; do args+=(-f "$CERT_MANAGER_CRD_DIR/$f"); done
  # Server-side apply: these CRDs are too large for the annotation that
  # client-side apply stores (262144 bytes).
  kubectl_ apply --server-side --force-conflicts "${args[@]}"
  # A CRD the API server has not yet given a status makes `kubectl wait`
  # fail at once ("conditions ... is of the type <nil>") instead of waiting:
  # try again until the deadline (as testkit's Cluster::wait_established).
  local deadline=$((SECONDS + 60))
  until kubectl_ wait --for=condition=Established --timeout=60s \
    crd/servicemonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com \
    crd/alertmanagerconfigs.monitoring.coreos.com crd/prometheuses.monitoring.coreos.com \
    crd/certificates.cert-manager.io 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "the CRDs were not Established within 60 s" >&2; return 1; }
    sleep 1
  done
}

# The default StorageClass, served by the provisioner above; a volume goes
# (and its directory with it) when its claim is deleted.
install_storage_class() {
  kubectl_ apply -f - <<'EOF'
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: hostpath
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
EOF
}

nodes_ready() {
  local ready
  kubectl_ wait --for=condition=Ready node --all --timeout=60s >/dev/null
  ready=$(kubectl_ get nodes --no-headers | awk '$2 == "Ready"' | wc -l)
  [ "$ready" -eq 2 ] || {
    kubectl_ get nodes >&2 || true
    die "expected 2 Ready nodes, found $ready"
  }
  kubectl_ get nodes -o wide >&2
}

# One build, `up` or `down` at a time: two test processes may ask at once,
# and the second then finds the binaries cached and the cluster answering.
# The lock is fd 9, which every child inherits: kwokctl's daemons (etcd, the
# API server...) would hold it for as long as the cluster runs, so kwokctl
# always runs with fd 9 closed (see kwokctl_).
LOCKED=
lock() {
  [ -z "$LOCKED" ] || return 0
  mkdir -p "$CLUSTER_DIR"
  exec 9>"$CLUSTER_DIR/lock"
  if ! flock -n 9; then
    log "waiting for another cluster.sh to finish (lock $CLUSTER_DIR/lock)"
    flock -w 1800 9 || die "gave up waiting for $CLUSTER_DIR/lock"
  fi
  LOCKED=1
}

cmd_up() {
  local t0
  t0=$(now)
  lock
  cmd_build
  if [ -z "$REAL_NODE" ]; then
    REAL_NODE=0
    # The running cluster's configuration says whether it has the real node.
    answers && grep -q kubeApiserverCertSANs "$CLUSTER_DIR/kwokctl.yaml" 2>/dev/null && REAL_NODE=1
  fi
  write_config "$CLUSTER_DIR/kwokctl.yaml.new"
  if answers && cmp -s "$CLUSTER_DIR/kwokctl.yaml.new" "$CLUSTER_DIR/kwokctl.yaml"; then
    rm -f "$CLUSTER_DIR/kwokctl.yaml.new"
    # Idempotent, and brings a cluster made before a CRD was added up to date.
    install_crds >/dev/null
    install_storage_class >/dev/null
    [ "$REAL_NODE" = 0 ] || step "starting the real node" node_ up
    log "cluster $CLUSTER_NAME already runs and answers; nothing else to do"
    log "kubeconfig: $KUBECONFIG_FILE"
    echo "$KUBECONFIG_FILE"
    return 0
  fi
  rm -f "$CLUSTER_DIR/kwokctl.yaml.new"
  if answers; then
    # Made by an older cluster.sh: its nodes would not behave as tests expect.
    log "cluster $CLUSTER_NAME runs with another configuration; recreating it"
    node_ down
    stop_cluster
  fi
  if cluster_exists; then
    # State left by a cluster that no longer answers (its processes died,
    # the machine restarted): start from scratch rather than reuse it.
    log "cluster $CLUSTER_NAME exists but does not answer; recreating it"
    stop_cluster
  fi
  write_config "$CLUSTER_DIR/kwokctl.yaml"
  step "creating cluster $CLUSTER_NAME (kwokctl, binary runtime)" create_cluster
  step "adding 2 kwok nodes" scale_nodes
  step "installing the Prometheus Operator and cert-manager CRDs" install_crds
  step "installing the default StorageClass (host-path provisioner)" install_storage_class
  step "checking that both nodes are Ready" nodes_ready
  [ "$REAL_NODE" = 0 ] || step "starting the real node" node_ up
  log "cluster $CLUSTER_NAME up in $(elapsed "$t0") s; API server $(kubectl_ config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
  log "kubeconfig: $KUBECONFIG_FILE"
  echo "$KUBECONFIG_FILE"
}

# Whether pid $1 is a process of this cluster: an executable from our cache
# (kwokctl links the binaries into its work directory, so /proc/PID/exe
# resolves to $BIN) whose command line names the cluster's work directory
# (every component gets its config, certificates or data there). Both are
# checked, every time, because pids get recycled: a user's `tail -f` on a log
# there, or an unrelated process that got an old pid, is never touched.
ours() {
  local exe
  exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
  case "$exe" in "$BIN"/* | "$CLUSTER_WORKDIR"/*) ;; *) return 1 ;; esac
  tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$CLUSTER_WORKDIR/"
}

# The pids of the cluster's processes: those in the pid files kwokctl writes
# ($CLUSTER_WORKDIR/pids/NAME.pid), and any other process `ours` recognises
# (one whose pid file is gone, e.g. after an interrupted create).
cluster_pids() {
  local f pid
  {
    for f in "$CLUSTER_WORKDIR"/pids/*.pid /proc/[0-9]*; do
      [ -e "$f" ] || continue # the pattern itself, when there is no pid file
      case "$f" in
      */pids/*.pid) pid=$(tr -dc 0-9 <"$f" 2>/dev/null || true) ;;
      *) pid=${f#/proc/} ;;
      esac
      if [ -n "$pid" ] && ours "$pid"; then echo "$pid"; fi
    done
  } | sort -un
}

stop_cluster() {
  local pids pid i
  pids=$(cluster_pids)
  if [ -x "$KWOK_BIN/kwokctl" ]; then
    kwokctl_ delete cluster --name "$CLUSTER_NAME" || log "kwokctl delete cluster failed; stopping its processes by pid"
  fi
  # kwokctl signals the components and returns; wait for them to be gone,
  # then make sure of it: a leftover etcd or apiserver would hold its port
  # and memory until the machine stops.
  for pid in $pids; do
    for ((i = 0; i < 100; i++)); do
      ours "$pid" || break
      sleep 0.1
    done
    if ours "$pid"; then
      log "pid $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" | cut -c1-80)) still runs; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$CLUSTER_WORKDIR"
  rm -f "$KUBECONFIG_FILE"
  # SIGKILL is delivered asynchronously: give the kernel a moment.
  for ((i = 0; i < 50; i++)); do
    pids=$(cluster_pids)
    [ -n "$pids" ] || return 0
    sleep 0.1
  done
  die "processes of cluster $CLUSTER_NAME still run: $pids"
}

cmd_down() {
  local t0
  t0=$(now)
  lock
  # The operator `make k8s-deploy` runs on this host for a kwok-only cluster.
  "$(dirname "$0")/../../scripts/k8s-deploy.sh" undeploy
  # A real node (NODE=real) goes before the control plane it reports to.
  node_ down
  if ! cluster_exists && [ -z "$(cluster_pids)" ]; then
    rm -f "$KUBECONFIG_FILE"
    log "cluster $CLUSTER_NAME is not running; nothing to do"
    return 0
  fi
  step "deleting cluster $CLUSTER_NAME" stop_cluster
  log "cluster $CLUSTER_NAME down in $(elapsed "$t0") s"
}

cmd_status() {
  if answers; then
    log "cluster $CLUSTER_NAME answers /readyz ($(kubectl_ config view --minify -o jsonpath='{.clusters[0].cluster.server}'))"
  else
    log "cluster $CLUSTER_NAME does not answer"
    return 1
  fi
}

case "${1:-}" in
build) cmd_build ;;
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
kubeconfig) echo "$KUBECONFIG_FILE" ;;
kubectl) echo "$KUBE_BIN/kubectl" ;;
*)
  echo "usage: $0 build|up|down|status|kubeconfig|kubectl" >&2
  exit 2
  ;;
esac
