#!/usr/bin/env bash
# A real node beside the kwok nodes of tests/cluster/cluster.sh: a kubelet
# and kube-proxy v1.37.2 (built from the same Kubernetes module as the
# control plane) over Debian's containerd, runc and CNI plugins, so that
# pods really run: images start, probes really hit the process, Service
# traffic really goes through kube-proxy.
#
#   node.sh up     start it and wait until the Node is Ready, with local
#                  volumes of the StorageClass real-node (idempotent)
#   node.sh down   stop everything it started and leave nothing mounted,
#                  running or routed (a no-op when nothing runs)
#   node.sh pull REF...   pull images into its containerd from a registry
#                  (plain HTTP: a registry on this host's loopback)
#   node.sh load IMAGE.tar...   import docker-saved images into its containerd
#                  (without a registry)
#   node.sh tag IMAGE NEW   give an imported image another name (a release
#                  of the same build under a new version, for upgrades)
#   node.sh ip     print the node's address
#   node.sh pause-binary   print the path of the sandbox program (a static
#                  binary that only waits for SIGTERM)
#
# Called by cluster.sh with NODE=real. Needs root (containers, iptables,
# mounts). Its state lives under $SECUREVAULT_CACHE/node; a few paths are
# fixed whatever the flags (/run/containerd/{fifo,s}, /var/lib/kubelet/
# device-plugins, /var/lib/cni/results) and are cleaned on `down`.
#
# The node is named `securevault-real`, labelled securevault.io/node=real
# and tainted securevault.io/node=real:NoSchedule: only pods that ask for it
# (a toleration and a node selector) land here; everything else stays on
# the kwok nodes, which run any image without pulling it.
#
# Traps of this sandbox, met when this recipe was worked out (see
# ../shared/spec/test-environment.md, "A real node"): cgroup v1 only and no
# systemd (kubelet failCgroupV1: false, cgroupfs driver, each daemon started
# here); no CAP_SYS_RESOURCE (containerd's restrict_oom_score_adj); no
# cluster DNS; a cluster IP kube-proxy does not know is answered by the
# sandbox's egress proxy with a 404, so kube-proxy must run.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${SECUREVAULT_CACHE:-$HOME/.cache/securevault}
KUBE_VERSION=v1.37.2
NODE_BIN=$CACHE/bin/kubernetes-node-$KUBE_VERSION
DIR=$CACHE/node
NODE_NAME=securevault-real
POD_CIDR=10.244.0.0/24
GATEWAY=10.244.0.1
BRIDGE=sv-cni0
KUBECONFIG_FILE=$CACHE/cluster/kubeconfig
KUBECTL=$CACHE/bin/kubernetes-$KUBE_VERSION/kubectl
PAUSE_IMAGE=securevault.local/pause:1
SOCK=$DIR/containerd/containerd.sock
PACKAGES=(containerd runc containernetworking-plugins iptables conntrack)

log() { printf 'node: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
kubectl_() { "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" --request-timeout=10s "$@"; }

# The node's address: the host's, on the interface of its default route.
# The API server reaches the kubelet there (logs, exec) and pods reach the
# host's services (databases, SMTP, the model server) at $GATEWAY.
node_ip() {
  ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -1
}

need_root() {
  [ "$(id -u)" -eq 0 ] || die "a real node needs root (containers, iptables, mounts); run as root or without NODE=real"
}

# ------------------------------------------------------------ build --

node_bin_ok() {
  local b out
  for b in kubelet kube-proxy; do
    [ -x "$NODE_BIN/$b" ] || return 1
    out=$("$NODE_BIN/$b" --version 2>&1) || return 1
    grep -qxF "Kubernetes $KUBE_VERSION" <<<"$out" || return 1
  done
}

build() {
  node_bin_ok && return 0
  command -v go >/dev/null || die "go is needed to build the kubelet and kube-proxy"
  local minor tmp ldflags="-s -w" pkg
  minor=${KUBE_VERSION#v1.}
  minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  done
  log "building kubelet and kube-proxy $KUBE_VERSION (first run only, a few minutes)"
  mkdir -p "$CACHE/bin"
  tmp=$(mktemp -d "$NODE_BIN.building.XXXXXX")
  (cd "$HERE/kube" && GOWORK=off go build -trimpath -ldflags "$ldflags" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy) || {
    rm -rf "$tmp"
    die "building the kubelet and kube-proxy failed"
  }
  chmod 755 "$tmp"
  rm -rf "$NODE_BIN"
  mv "$tmp" "$NODE_BIN"
  node_bin_ok || die "the kubelet and kube-proxy built do not report $KUBE_VERSION"
}

# ----------------------------------------------------------- config --

write_configs() {
  local ip=$1
  mkdir -p "$DIR"/{containerd,cni/net.d,cni/ipam,kubelet,pod-logs,proxy,images}
  cat >"$DIR/containerd/config.toml" <<EOF
# Written by tests/cluster/node.sh.
version = 2
root = "$DIR/containerd/root"
state = "$DIR/containerd/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # No CAP_SYS_RESOURCE in this sandbox: a negative oom_score_adj fails
  # every sandbox with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$DIR/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$DIR/cni/net.d"
EOF
  cat >"$DIR/cni/net.d/10-securevault.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "securevault",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$DIR/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  cat >"$DIR/kubelet/config.yaml" <<EOF
# Written by tests/cluster/node.sh.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This sandbox: cgroup v1, no systemd, swap left as it is.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://$SOCK
podLogsDir: $DIR/pod-logs
address: $ip
readOnlyPort: 0
# kwokctl's API server presents no client certificate to kubelets; the
# kubelet answers it (logs, exec) on the node address only.
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
podCIDR: $POD_CIDR
resolvConf: ""
registerWithTaints:
- {key: securevault.io/node, value: real, effect: NoSchedule}
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
  cat >"$DIR/proxy/config.yaml" <<EOF
# Written by tests/cluster/node.sh.
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
clientConnection: {kubeconfig: $KUBECONFIG_FILE}
conntrack: {maxPerCore: 0}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
EOF
}

# ------------------------------------------------------------ daemons --

running() { # NAME
  [ -f "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null
}

start() { # NAME COMMAND...
  local name=$1
  shift
  running "$name" && return 0
  # 9>&-: cluster.sh holds its lock on fd 9; a daemon that kept it would
  # make the next cluster.sh wait for the lock as long as the node runs.
  setsid "$@" >"$DIR/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$DIR/$name.pid"
}

stop() { # NAME
  local pid i
  [ -f "$DIR/$1.pid" ] || return 0
  pid=$(cat "$DIR/$1.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/$1.pid"
}

ctr_() { ctr --address "$SOCK" -n k8s.io "$@"; }

wait_containerd() {
  local i
  for ((i = 0; i < 100; i++)); do
    ctr_ version >/dev/null 2>&1 && return 0
    running containerd || die "containerd stopped: $(tail -5 "$DIR/containerd.log")"
    sleep 0.1
  done
  die "containerd does not answer on $SOCK: $(tail -5 "$DIR/containerd.log")"
}

# The pod sandbox's program: any static program that waits for a signal,
# built once from a few lines of Go. Prints its path.
pause_binary() {
  local work=$DIR/images/pause
  if [ ! -x "$work/pause" ]; then
    rm -rf "$work"
    mkdir -p "$work/src"
    cat >"$work/src/main.go" <<'EOF'
// The pod sandbox process: holds the pod's namespaces until it is stopped.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
EOF
    printf 'module pause\n\ngo 1.22\n' >"$work/src/go.mod"
    (cd "$work/src" && CGO_ENABLED=0 GOWORK=off go build -trimpath -ldflags "-s -w" -o "$work/pause" .) >&2
  fi
  echo "$work/pause"
}

# The pod sandbox's image, imported as an OCI archive written here (no
# registry, no Docker needed).
pause_image() {
  ctr_ images ls -q | grep -qxF "$PAUSE_IMAGE" && return 0
  local bin
  bin=$(pause_binary)
  python3 "$HERE/oci-archive.py" "$bin" /pause "$PAUSE_IMAGE" "$DIR/images/pause.tar"
  ctr_ images import "$DIR/images/pause.tar" >/dev/null
}

# Pods reach the host's loopback services at $GATEWAY, the way Docker
# Desktop's host.docker.internal works: the tests' PostgreSQL, Redis, SMTP
# server and model server listen on 127.0.0.1 only, and a connection from a
# pod to $GATEWAY:PORT is rewritten to 127.0.0.1:PORT, with 127.0.0.1 as its
# source so that servers which trust loopback clients (PostgreSQL's
# pg_hba.conf, Redis' protected mode) accept it. This exposes every loopback
# port of the host to the pods of this node: it is a test node.
#
# The bridge is made here rather than by the CNI plugin (which adopts an
# existing one), so that the rules exist before the first pod does.
host_access() {
  ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
  ip addr replace "$GATEWAY/${POD_CIDR#*/}" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  sysctl -qw "net.ipv4.conf.$BRIDGE.route_localnet=1"
  local chain=SV-HOST-ACCESS hook
  for hook in PREROUTING OUTPUT INPUT; do
    iptables -t nat -N "$chain-$hook" 2>/dev/null || iptables -t nat -F "$chain-$hook"
    iptables -t nat -C "$hook" -j "$chain-$hook" 2>/dev/null || iptables -t nat -I "$hook" -j "$chain-$hook"
  done
  iptables -t nat -A "$chain-PREROUTING" -i "$BRIDGE" -d "$GATEWAY" -p tcp -j DNAT --to-destination 127.0.0.1
  # The same address from this host (an operator run here, as the tests
  # do, reading the bucket a spec names at the gateway) reaches the same
  # services: an address in a spec means one thing wherever it is used.
  iptables -t nat -A "$chain-OUTPUT" -d "$GATEWAY" -p tcp -j DNAT --to-destination 127.0.0.1
  iptables -t nat -A "$chain-INPUT" -s "$POD_CIDR" -d 127.0.0.1 -p tcp -j SNAT --to-source 127.0.0.1
}

# Storage on this node, as a cluster administrator provisions local disks
# (each embedded-store vault claims two: its store and its backups):
# a StorageClass `real-node` without a provisioner and VOLUMES local
# PersistentVolumes of it, each a directory under $DIR/volumes that any user
# may write (the data plane runs as nobody, and a local volume has no
# fsGroup ownership). The default class's host-path provisioner makes
# directories only root can write, fine for kwok's pods, not for these.
# A volume whose claim went (Released) is wiped and offered again.
VOLUMES=16
local_volumes() {
  local i name phase
  kubectl_ apply -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: real-node}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
EOF
  for ((i = 0; i < VOLUMES; i++)); do
    name=$NODE_NAME-volume-$i
    phase=$(kubectl_ get pv "$name" -o jsonpath='{.status.phase}' 2>/dev/null || true)
    case "$phase" in
      Available | Bound | Pending) continue ;;
      Released | Failed) kubectl_ delete pv "$name" --wait=true >/dev/null ;;
    esac
    rm -rf "${DIR:?}/volumes/$i"
    mkdir -p "$DIR/volumes/$i"
    chmod 0777 "$DIR/volumes/$i"
    kubectl_ apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolume
metadata: {name: $name}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: real-node
  local: {path: $DIR/volumes/$i}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {key: kubernetes.io/hostname, operator: In, values: [$NODE_NAME]}
EOF
  done
}

node_ready() {
  [ "$(kubectl_ get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

cmd_up() {
  need_root
  [ -s "$KUBECONFIG_FILE" ] || die "no cluster: run tests/cluster/cluster.sh up first"
  "$HERE/../setup/debian-packages.sh" "${PACKAGES[@]}"
  build
  local ip i
  ip=$(node_ip)
  [ -n "$ip" ] || die "no address on a default route for the node"
  host_access
  if running containerd && running kubelet && running kube-proxy && node_ready; then
    local_volumes
    log "node $NODE_NAME already runs ($ip)"
    return 0
  fi
  write_configs "$ip"
  sysctl -qw net.ipv4.ip_forward=1 || true
  modprobe br_netfilter 2>/dev/null || true
  sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
  start containerd containerd --config "$DIR/containerd/config.toml"
  wait_containerd
  pause_image
  start kubelet "$NODE_BIN/kubelet" \
    --config "$DIR/kubelet/config.yaml" \
    --kubeconfig "$KUBECONFIG_FILE" \
    --root-dir "$DIR/kubelet/root" \
    --cert-dir "$DIR/kubelet/pki" \
    --hostname-override "$NODE_NAME" \
    --node-ip "$ip" \
    --node-labels securevault.io/node=real
  start kube-proxy "$NODE_BIN/kube-proxy" --config "$DIR/proxy/config.yaml"
  for ((i = 0; i < 600; i++)); do
    node_ready && break
    running kubelet || die "the kubelet stopped: $(tail -20 "$DIR/kubelet.log")"
    running kube-proxy || die "kube-proxy stopped: $(tail -20 "$DIR/kube-proxy.log")"
    sleep 0.1
  done
  node_ready || die "node $NODE_NAME is not Ready after 60 s: $(tail -20 "$DIR/kubelet.log")"
  local_volumes
  log "node $NODE_NAME Ready ($ip; pods on $POD_CIDR reach the host at $GATEWAY; $VOLUMES local volumes of class real-node)"
}

# Drops a chain and every rule that jumps to it.
drop_chain() { # IPTABLES TABLE CHAIN
  local ipt=$1 table=$2 chain=$3 rule
  # Read first: a table without such a rule makes grep fail (pipefail).
  local rules
  rules=$("$ipt" -t "$table" -S 2>/dev/null | grep '^-A ' | grep -F -- "-j $chain" || true)
  while read -r rule; do
    [ -n "$rule" ] && eval "$ipt -t $table ${rule/#-A/-D}" 2>/dev/null || true
  done <<<"$rules"
  "$ipt" -t "$table" -F "$chain" 2>/dev/null || true
  "$ipt" -t "$table" -X "$chain" 2>/dev/null || true
}

# What kube-proxy --cleanup leaves: the kubelet's chains and its
# iptables-mode hint, the bridge plugin's masquerading chains (CNI-*, left
# when a pod's network was not torn down by the kubelet) and host_access'.
remove_chains() {
  local ipt table chain
  for ipt in iptables ip6tables; do
    for table in filter nat mangle; do
      for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do drop_chain "$ipt" "$table" "$chain"; done
    done
  done
  for chain in SV-HOST-ACCESS-PREROUTING SV-HOST-ACCESS-OUTPUT SV-HOST-ACCESS-INPUT; do drop_chain iptables nat "$chain"; done
  for chain in $(iptables -t nat -S 2>/dev/null | sed -n 's/^-N \(CNI-.*\)$/\1/p'); do
    drop_chain iptables nat "$chain"
  done
}

cmd_down() {
  [ -d "$DIR" ] || return 0
  need_root
  # Pods first, while the kubelet runs: it tears their networks down (CNI DEL).
  if running kubelet && [ -s "$KUBECONFIG_FILE" ]; then
    kubectl_ delete pods --all-namespaces --field-selector "spec.nodeName=$NODE_NAME" \
      --grace-period=1 --wait=true --timeout=30s >/dev/null 2>&1 || true
  fi
  stop kube-proxy
  [ -x "$NODE_BIN/kube-proxy" ] && "$NODE_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  stop kubelet
  # Containers the kubelet left (it was stopped first): their shims.
  if running containerd; then
    local task
    for task in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$task" >/dev/null 2>&1 || true; done
  fi
  stop containerd
  # Shims outlive containerd; theirs name its socket (-namespace k8s.io -id ID -address SOCK).
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $SOCK" 2>/dev/null || true
  # The kubelet's cgroups (cgroup v1: one tree per controller), empty by now;
  # rmdir, deepest first, removes only empty ones.
  find /sys/fs/cgroup/*/kubepods -depth -type d -exec rmdir {} + 2>/dev/null || true
  # What is still mounted under the node's directory, deepest first.
  awk -v d="$DIR/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  ip link delete "$BRIDGE" 2>/dev/null || true
  remove_chains
  rm -rf /run/containerd/fifo /run/containerd/s /var/lib/kubelet/device-plugins /var/lib/cni/results
  rm -rf "$DIR"
  if [ -s "$KUBECONFIG_FILE" ]; then
    kubectl_ delete node "$NODE_NAME" --ignore-not-found >/dev/null 2>&1 || true
    for ((i = 0; i < VOLUMES; i++)); do
      kubectl_ delete pv "$NODE_NAME-volume-$i" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    done
  fi
  log "node $NODE_NAME stopped"
}

cmd_load() {
  [ $# -gt 0 ] || die "usage: node.sh load IMAGE.tar..."
  running containerd || die "the node does not run (tests/cluster/cluster.sh up with NODE=real)"
  local f
  for f in "$@"; do
    ctr_ images import "$f" >/dev/null || die "importing $f failed"
    log "imported $f"
  done
}

cmd_pull() {
  [ $# -gt 0 ] || die "usage: node.sh pull REGISTRY/IMAGE:TAG..."
  running containerd || die "the node does not run (tests/cluster/cluster.sh up with NODE=real)"
  local ref
  for ref in "$@"; do
    # The kubelet's pulls need no flag for a loopback registry (containerd
    # speaks HTTP to it by itself); ctr does.
    ctr_ images pull --plain-http "$ref" >/dev/null || die "pulling $ref failed"
    log "pulled $ref"
  done
}

cmd_tag() {
  [ $# -eq 2 ] || die "usage: node.sh tag IMAGE NEW"
  running containerd || die "the node does not run (tests/cluster/cluster.sh up with NODE=real)"
  # --force: a second test process of the same run tags it again.
  ctr_ images tag --force "$1" "$2" >/dev/null || die "tagging $1 as $2 failed"
  log "tagged $1 as $2"
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
load)
  shift
  cmd_load "$@"
  ;;
pull)
  shift
  cmd_pull "$@"
  ;;
tag)
  shift
  cmd_tag "$@"
  ;;
ip) node_ip ;;
pause-binary) pause_binary ;;
build) build ;;
*)
  echo "usage: $0 up|down|pull REF...|load IMAGE.tar...|tag IMAGE NEW|ip|pause-binary|build" >&2
  exit 2
  ;;
esac
