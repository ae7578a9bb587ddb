#!/usr/bin/env bash
# Measures the operator at scale on the real control plane (kwok nodes) and
# adds one dated row to the "Operator at scale" table of docs/benchmarks.md
# (`make benchmark` runs it after tests/bench/benchmark.sh; docs/benchmarks.md
# explains what is measured and why):
#
#   1. BENCH_OBJECTS SecureVaults (500) created in one `kubectl apply`: seconds
#      until the first and until every one is Ready (condition Ready=True and
#      status.observedGeneration == metadata.generation), polled every second;
#   2. the operator's resident memory: VmRSS sampled every 0.5 s (the peak)
#      and at rest, once every object is Ready and reconciles have stopped,
#      and again in the restarted process of 3 once it is idle;
#   3. a standby taking over: a second operator process waits beside the
#      first, which is stopped (SIGTERM hands the Lease back); seconds from
#      the stop until the standby leads and until it is idle, every
#      SecureVault reconciled. Its API requests beside its watches (and the
#      Lease) per reconcile, and its writes per reconcile, should be 0: the
#      SecureVaults have not changed. The resourceVersions of the
#      SecureVaults and of every kind of child are compared before and after;
#   4. the control plane's floor: the same children, as `operator render`
#      prints them for the same SecureVaults, applied by one
#      `kubectl apply --server-side` in a second namespace with no operator;
#      seconds until every Deployment there is available, and the ratio of
#      the operator's time to all Ready to it.
#
# It is a measurement, not a test: a missed target is printed as MISS and the
# script still succeeds. It fails only when the measurement itself breaks:
# the cluster or the operator does not start, the operator dies, the objects
# cannot be created, not every SecureVault is Ready within
# BENCH_READY_TIMEOUT, or the restarted operator does not reconcile them all.
#
# The cluster is tests/cluster/cluster.sh's. One that already runs is used and
# left running (with its node count restored); one this script starts is
# stopped at the end. kwok's nodes take 110 pods each, so nodes are added
# (kwokctl scale node) until the pods of every SecureVault fit; and, should
# the Service ranges be too small for one Service per SecureVault, a
# ServiceCIDR is added for the run.
#
# Environment:
#   BENCH_OBJECTS        SecureVaults created (default 500)
#   BENCH_READY_TIMEOUT  seconds allowed for all of them to become Ready, and
#                        for the floor's Deployments (default 600, or 0.6 s
#                        per SecureVault when that is more)
#   SECUREVAULT_CACHE    the cluster's cache, as for cluster.sh (default ~/.cache/securevault)
#   CARGO_TARGET_DIR     defaults to ~/.cache/securevault/target, like the Makefile
#   KCM_API_QPS          raise kube-controller-manager's client rate to this
#                        many requests/s (tests/cluster/cluster.sh; a running
#                        cluster with another setting is recreated, and left
#                        running so): the second floor. The row says the rate
#   BENCH_KEEP           1: leave the SecureVaults, their namespace and the
#                        added nodes in a cluster that ran already, to look
#                        at afterwards (delete the namespace by hand)
set -euo pipefail

BENCH_OBJECTS=${BENCH_OBJECTS:-500}
BENCH_READY_TIMEOUT=${BENCH_READY_TIMEOUT:-$(((BENCH_OBJECTS * 6 / 10) > 600 ? BENCH_OBJECTS * 6 / 10 : 600))}
export SECUREVAULT_CACHE=${SECUREVAULT_CACHE:-$HOME/.cache/securevault}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/securevault/target}
export PATH="$HOME/.cargo/bin:$PATH"
# How long the operator must have been idle (no reconcile started or in
# flight) before the figures "at rest" are taken, and the least time waited
# after the last SecureVault turned Ready.
IDLE_SECS=5
SETTLE_MIN_SECS=10
SETTLE_MAX_SECS=180

# Work from the repository root whatever the caller's directory is.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=tests/bench/lib.sh
source tests/bench/lib.sh
CLUSTER_SH=tests/cluster/cluster.sh
# The header of our table; the row goes right after its last row. (The
# data-plane script appends its rows at the end of the file, so this table
# must not be the last one there.)
TABLE_HEADER='| Date (UTC) | Machine | Revision | SecureVaults |'

log() { printf '==> %s\n' "$*"; }
die() {
  echo "operator-benchmark: $*" >&2
  exit 1
}

case "$BENCH_OBJECTS" in '' | *[!0-9]*) die "BENCH_OBJECTS must be a number" ;; esac
case "$BENCH_READY_TIMEOUT" in '' | *[!0-9]*) die "BENCH_READY_TIMEOUT must be a number of seconds" ;; esac
[ "$BENCH_OBJECTS" -ge 1 ] || die "BENCH_OBJECTS must be at least 1"
for tool in curl python3 awk flock; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
# Fail before spending a build and a cluster on a file we cannot update.
grep -qF "$TABLE_HEADER" "$RESULTS" 2>/dev/null ||
  die "$RESULTS is missing or lacks the 'Operator at scale' table header ($TABLE_HEADER ...)"

# Read before building: what the binary is made of (lib.sh says more).
REVISION=$(bench_revision)

log "building the release operator"
cargo build --release --locked -p operator
OP_BIN="$CARGO_TARGET_DIR/release/operator"
[ -x "$OP_BIN" ] || die "$OP_BIN was not built"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/securevault-operator-bench.XXXXXX")


# ------------------------------------------------------------ cleanup --

STARTED_CLUSTER=
NS=
FLOOR_NS=
NODES_BEFORE=
SCALED=
ADDED_CIDR=
APPLY_PID=
FLOOR_APPLY_PID=
OP_PID=
OP_LOG=
SAMPLER_PID=

stop_sampler() {
  if [ -n "$SAMPLER_PID" ]; then
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=
  fi
}

# SIGTERMs the operator (the one started last, or the process $1) and waits
# for it (30 s, then SIGKILL); sets OP_EXIT to its exit status.
OP_EXIT=
stop_operator() {
  local pid=${1:-$OP_PID}
  OP_EXIT=
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  local i
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "operator-benchmark: the operator ignored SIGTERM for 30 s; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  OP_EXIT=0
  wait "$pid" 2>/dev/null || OP_EXIT=$?
  if [ "$pid" = "$OP_PID" ]; then OP_PID=; fi
  if [ "$pid" = "$FIRST_PID" ]; then FIRST_PID=; fi
}
FIRST_PID=

# Whatever happens, stop what we started and put the cluster back as we
# found it: a cluster that ran already keeps running, with its node count;
# one we started is stopped.
cleanup() {
  local status=$?
  set +e
  stop_sampler
  if [ -n "$APPLY_PID" ]; then
    kill "$APPLY_PID" 2>/dev/null
    wait "$APPLY_PID" 2>/dev/null
  fi
  if [ "$status" -ne 0 ] && [ -n "$OP_LOG" ] && [ -s "$OP_LOG" ]; then
    echo "--- last lines of the operator's log ($OP_LOG) ---" >&2
    tail -n 20 "$OP_LOG" >&2
  fi
  stop_operator
  stop_operator "$FIRST_PID"
  if [ -n "$FLOOR_APPLY_PID" ]; then
    kill "$FLOOR_APPLY_PID" 2>/dev/null
    wait "$FLOOR_APPLY_PID" 2>/dev/null
  fi
  if [ -n "$STARTED_CLUSTER" ]; then
    echo "==> stopping the cluster this script started"
    "$CLUSTER_SH" down
  else
    if [ "${BENCH_KEEP:-}" = 1 ]; then
      echo "==> BENCH_KEEP=1: leaving namespace $NS (and the nodes) as they are"
      k delete namespace "$FLOOR_NS" --wait=false --ignore-not-found >/dev/null
      SCALED= ADDED_CIDR= NS=
    fi
    if [ -n "$NS" ]; then
      echo "==> deleting namespaces $NS and $FLOOR_NS (in the background)"
      k delete namespace "$NS" "$FLOOR_NS" --wait=false --ignore-not-found >/dev/null
    fi
    if [ -n "$ADDED_CIDR" ]; then
      # Held by its finalizer until the namespace's Services free their IPs.
      k delete servicecidr "$BENCH_CIDR_NAME" --wait=false >/dev/null
    fi
    if [ -n "$SCALED" ]; then
      echo "==> scaling the kwok nodes back to $NODES_BEFORE"
      kwokctl_ scale node --replicas "$NODES_BEFORE" --name securevault >/dev/null 2>&1 ||
        echo "operator-benchmark: could not scale the nodes back to $NODES_BEFORE" >&2
    fi
  fi
  rm -rf "$TMP"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------ cluster --

if "$CLUSTER_SH" status 2>/dev/null; then
  log "using the running cluster"
else
  log "starting the cluster (stopped again at the end)"
  STARTED_CLUSTER=1
fi
"$CLUSTER_SH" up >/dev/null
KUBECONFIG_FILE=$("$CLUSTER_SH" kubeconfig)
KUBECTL_BIN=$("$CLUSTER_SH" kubectl)
[ -s "$KUBECONFIG_FILE" ] && [ -x "$KUBECTL_BIN" ] || die "cluster.sh up left no kubeconfig or kubectl"
KWOK_VERSION=$(sed -n 's/^KWOK_VERSION=//p' "$CLUSTER_SH")
# kube-controller-manager's client rate, as the running cluster was made.
KCM_QPS=$(awk '/key: kube-api-qps/ { getline; gsub(/[^0-9]/, ""); print }' \
  "$SECUREVAULT_CACHE/cluster/kwokctl.yaml" 2>/dev/null)
KCM_QPS=${KCM_QPS:-20}
KWOKCTL_BIN=$SECUREVAULT_CACHE/bin/kwok-$KWOK_VERSION/kwokctl
[ -x "$KWOKCTL_BIN" ] || die "$KWOKCTL_BIN not found"

k() { "$KUBECTL_BIN" --kubeconfig "$KUBECONFIG_FILE" --request-timeout=30s "$@"; }
# As cluster.sh runs it: its work directory in the cache, our kubectl first
# on PATH (kwokctl runs `kubectl`).
kwokctl_() {
  KWOK_WORKDIR="$SECUREVAULT_CACHE/kwok" PATH="$(dirname "$KUBECTL_BIN"):$PATH" "$KWOKCTL_BIN" "$@"
}

# Right after another run (or the tests), namespaces are still being deleted
# and their claims' volumes released: work the control plane would do
# during the operator's part and not during the floor, which comes later.
# Wait for it to end (at most 10 minutes, then go on and say so).
quiet_wait=0
while :; do
  terminating=$(k get namespaces --no-headers 2>/dev/null | awk '$2 == "Terminating"' | wc -l)
  # A volume being released: one no longer Bound or Available, or one
  # still Bound to a claim whose namespace is gone (the volume controller
  # gets to it later).
  releasing=$({
    k get namespaces -o jsonpath='{range .items[*]}namespace {.metadata.name}{"\n"}{end}'
    k get pv -o jsonpath='{range .items[*]}volume {.status.phase} {.spec.claimRef.namespace}{"\n"}{end}'
  } 2>/dev/null | awk '
    $1 == "namespace" { live[$2] = 1; next }
    $1 == "volume" && (($2 != "Bound" && $2 != "Available") || ($3 != "" && !($3 in live))) { n++ }
    END { print n + 0 }')
  [ "$terminating" -eq 0 ] && [ "$releasing" -eq 0 ] && break
  if [ "$quiet_wait" -ge 600 ]; then
    log "the cluster is still busy after 600 s ($terminating namespaces terminating, $releasing volumes released); measuring anyway"
    break
  fi
  [ $((quiet_wait % 30)) -eq 0 ] &&
    log "waiting for the cluster to be quiet: $terminating namespaces terminating, $releasing volumes released"
  sleep 5
  quiet_wait=$((quiet_wait + 5))
done

# Enough kwok nodes for every pod: each takes `allocatable.pods` (110); we
# fill them to 90 % at most, counting the pods already there.
NODES_BEFORE=$(k get nodes --no-headers | wc -l)
PODS_PER_NODE=$(k get nodes -o jsonpath='{.items[0].status.allocatable.pods}')
case "$PODS_PER_NODE" in '' | *[!0-9]*) die "cannot read the nodes' allocatable pods (got '$PODS_PER_NODE')" ;; esac
PODS_BEFORE=$(k get pods --all-namespaces --no-headers 2>/dev/null | wc -l)
usable=$((PODS_PER_NODE * 9 / 10))
# Twice the SecureVaults: the floor's pods run beside the operator's.
NODES=$(((2 * BENCH_OBJECTS + PODS_BEFORE + usable - 1) / usable))
if [ "$NODES" -gt "$NODES_BEFORE" ]; then
  log "scaling the kwok nodes from $NODES_BEFORE to $NODES ($PODS_PER_NODE pods each; $PODS_BEFORE pods already run)"
  SCALED=1
  kwokctl_ scale node --replicas "$NODES" --name securevault >"$TMP/kwokctl.log" 2>&1 ||
    {
      cat "$TMP/kwokctl.log" >&2
      die "kwokctl scale node failed"
    }
else
  NODES=$NODES_BEFORE
fi
k wait --for=condition=Ready node --all --timeout=120s >/dev/null
ready_nodes=$(k get nodes --no-headers | awk '$2 == "Ready"' | wc -l)
[ "$ready_nodes" -ge "$NODES" ] || die "expected $NODES Ready nodes, found $ready_nodes"

# One Service per SecureVault, each with a cluster IP: the ranges of the
# ServiceCIDRs (networking.k8s.io/v1) must hold them, besides the Services
# already there. cluster.sh gives the API server a /16; a cluster started
# with kube-apiserver's default, 10.0.0.0/24 (253 addresses after the
# `kubernetes` Service), gets one more range for the run, deleted at the end
# (its finalizer keeps it until the namespace's Services free their IPs).
BENCH_CIDR_NAME=securevault-bench
BENCH_CIDR=10.1.0.0/16
if CIDR_CAPACITY=$(k get servicecidrs -o json 2>/dev/null | python3 -c '
import ipaddress, json, sys
nets = [ipaddress.ip_network(c) for i in json.load(sys.stdin)["items"] if not i["metadata"].get("deletionTimestamp") for c in i["spec"]["cidrs"]]
print(sum(n.num_addresses - 2 for n in nets if n.version == 4))'); then
  SERVICES_BEFORE=$(k get services --all-namespaces --no-headers 2>/dev/null | wc -l)
  if [ $((SERVICES_BEFORE + 2 * BENCH_OBJECTS)) -gt "$CIDR_CAPACITY" ]; then
    log "adding ServiceCIDR $BENCH_CIDR_NAME ($BENCH_CIDR): the ranges hold $CIDR_CAPACITY Services, $SERVICES_BEFORE exist"
    k create -f - >/dev/null <<EOF
apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata:
  name: $BENCH_CIDR_NAME
spec:
  cidrs: [$BENCH_CIDR]
EOF
    ADDED_CIDR=1
    k wait --for=condition=Ready --timeout=60s "servicecidr/$BENCH_CIDR_NAME" >/dev/null
  fi
else
  echo "note: cannot read the ServiceCIDRs; if the Service range is too small, Services will fail with 'range is full'" >&2
fi

log "installing the CRD"
k apply --server-side --force-conflicts -f crds/securevault.yaml >/dev/null
k wait --for=condition=Established --timeout=60s crd/securevaults.securevault.io >/dev/null

NS=bench-$(date -u +%Y%m%d%H%M%S)
k create namespace "$NS" >/dev/null
log "namespace $NS"
FLOOR_NS=$NS-floor

# ----------------------------------------------------------- operator --

OP_ADDR=
# Starts the release operator on NS (its Lease there too) and waits for it
# to lead; then samples its VmRSS every 0.5 s, keeping the peak in
# $TMP/peak-$1 (the sampler is a separate process). With `standby`, it
# returns once the process waits for the Lease (see wait_leader).
start_operator() {
  local n=$1 mode=${2:-}
  OP_ADDR=127.0.0.1:$(free_port)
  OP_LOG=$TMP/operator-$n.log
  # A clean environment, so nothing in the caller's shell changes what is
  # measured. LOG_LEVEL: warnings, plus the operator's own few info lines
  # (the leader line); a log line per reconcile would cost time and memory.
  env -i PATH="$PATH" HOME="$HOME" KUBECONFIG="$KUBECONFIG_FILE" \
    METRICS_ADDR="$OP_ADDR" LOG_LEVEL="warn,operator=info" \
    WATCH_NAMESPACE="$NS" POD_NAMESPACE="$NS" POD_NAME="bench-operator-$n" \
    "$OP_BIN" run >"$OP_LOG" 2>&1 &
  OP_PID=$!
  if [ "$mode" = standby ]; then
    wait_log 'waiting to become the leader'
  else
    wait_leader "$n"
  fi
}

# Waits until the operator's log has a line with $1 (60 s at most).
wait_log() {
  local deadline=$((SECONDS + 60))
  until grep -q "\"$1" "$OP_LOG"; do
    if ! kill -0 "$OP_PID" 2>/dev/null; then
      OP_PID=
      die "the operator exited before logging '$1'"
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "the operator did not log '$1' within 60 s"
    sleep 0.1
  done
}

# Waits until operator $1 (the one started last) leads, then samples its
# memory.
wait_leader() {
  local n=$1
  wait_log 'became the leader'
  local pid=$OP_PID peak_file=$TMP/peak-$n
  echo 0 >"$peak_file"
  (
    peak=0
    while rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status" 2>/dev/null) && [ -n "$rss" ]; do
      if [ "$rss" -gt "$peak" ]; then
        peak=$rss
        echo "$peak" >"$peak_file"
      fi
      sleep 0.5
    done
  ) &
  SAMPLER_PID=$!
}

operator_alive() {
  kill -0 "$OP_PID" 2>/dev/null || {
    OP_PID=
    die "the operator died"
  }
}

status_kb() { # FIELD (VmRSS, VmHWM) of the running operator
  awk -v field="$1:" '$1 == field { print $2 }' "/proc/$OP_PID/status"
}

# Reads /metrics into $TMP/metrics; the sums below read that file.
scrape() {
  curl -sS --fail --max-time 10 -o "$TMP/metrics" "http://$OP_ADDR/metrics" ||
    die "could not read http://$OP_ADDR/metrics"
}
# The sum of every series of one metric (0 when it has none yet, as a
# counter vector before its first increment).
msum() {
  awk -v n="$1" -v fmt="${2:-%.0f}" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf fmt, s }' "$TMP/metrics"
}
# "kind=count, ..." for one metric with a `kind` label; "none" when empty.
by_kind() {
  awk -v n="$1" 'index($1, n "{") == 1 {
      k = $1; sub(/.*kind="/, "", k); sub(/".*/, "", k); out = out sep k "=" $NF; sep = ", "
    } END { print (out == "" ? "none" : out) }' "$TMP/metrics"
}

# Waits until the operator is idle: every reconcile started has finished and
# none started for IDLE_SECS, after at least SETTLE_MIN_SECS and at least
# $1 reconciles in all. Sets LAST_RECONCILE_AT (when the count last moved)
# and SETTLED (empty when SETTLE_MAX_SECS ran out first).
settle() {
  local want=$1 start=$SECONDS last=-1 idle=0 started done_
  LAST_RECONCILE_AT=$(now)
  SETTLED=
  while :; do
    operator_alive
    scrape
    started=$(msum securevault_reconciles_total)
    done_=$(msum securevault_reconcile_duration_seconds_count)
    if [ "$started" != "$last" ]; then
      LAST_RECONCILE_AT=$(now)
      idle=0
    elif [ "$started" = "$done_" ]; then
      idle=$((idle + 1))
    fi
    last=$started
    if [ "$idle" -ge "$IDLE_SECS" ] && [ "$started" -ge "$want" ] &&
      [ $((SECONDS - start)) -ge "$SETTLE_MIN_SECS" ]; then
      SETTLED=1
      return 0
    fi
    [ $((SECONDS - start)) -lt "$SETTLE_MAX_SECS" ] || return 0
    sleep 1
  done
}

# One line per SecureVault and per object of each kind the operator writes:
# KIND/NAME RESOURCEVERSION, sorted.
snapshot() {
  k get securevaults,deployments,services,configmaps,serviceaccounts,secrets,poddisruptionbudgets \
    -n "$NS" -o jsonpath='{range .items[*]}{.kind}/{.metadata.name} {.metadata.resourceVersion}{"\n"}{end}' |
    sort >"$1"
}

# SecureVaults Ready for their current generation; empty output when
# kubectl failed (a slow API server under load), so the caller retries.
ready_count() {
  if k get securevaults -n "$NS" --no-headers --request-timeout=20s \
    -o 'custom-columns=G:.metadata.generation,O:.status.observedGeneration,R:.status.conditions[?(@.type=="Ready")].status' \
    >"$TMP/ready" 2>"$TMP/ready.err"; then
    awk '$1 == $2 && $3 == "True"' "$TMP/ready" | wc -l
  fi
}

log "starting the operator (release build, LOG_LEVEL=warn)"
start_operator 1

# ------------------------------------------------- 1. create them all --

MANIFEST=$TMP/securevaults.yaml
width=${#BENCH_OBJECTS}
[ "$width" -ge 3 ] || width=3
for ((i = 1; i <= BENCH_OBJECTS; i++)); do
  printf -- '---\napiVersion: securevault.io/v1alpha1\nkind: SecureVault\nmetadata:\n  name: sv-%0*d\n  namespace: %s\nspec:\n  version: 0.1.0\n  replicas: 1\n' "$width" "$i" "$NS"
done >"$MANIFEST"

log "creating $BENCH_OBJECTS SecureVaults in one kubectl apply; polling every second until all are Ready (at most $BENCH_READY_TIMEOUT s)"
T0=$(now)
# In the background: the first objects may turn Ready while kubectl is
# still creating the last ones.
(
  k apply --server-side -n "$NS" -f "$MANIFEST" >"$TMP/apply.out" 2>&1
  echo $? >"$TMP/apply.rc"
  now >"$TMP/apply.end"
) &
APPLY_PID=$!

FIRST_READY=
ALL_READY=
failures=0
next_report=10
while :; do
  operator_alive
  n=$(ready_count)
  t=$(since "$T0")
  if [ -z "$n" ]; then
    failures=$((failures + 1))
    [ "$failures" -lt 10 ] || die "kubectl get securevaults failed 10 times in a row: $(cat "$TMP/ready.err")"
  else
    failures=0
    [ -n "$FIRST_READY" ] || [ "$n" -eq 0 ] || FIRST_READY=$t
    if [ "$n" -ge "$BENCH_OBJECTS" ]; then
      ALL_READY=$t
      break
    fi
  fi
  if [ -s "$TMP/apply.rc" ] && [ "$(cat "$TMP/apply.rc")" != 0 ]; then
    tail -n 20 "$TMP/apply.out" >&2
    die "kubectl apply of the SecureVaults failed"
  fi
  if awk -v t="$t" -v r="$next_report" 'BEGIN { exit !(t >= r) }'; then
    echo "    +${t} s: ${n:-?}/$BENCH_OBJECTS Ready"
    next_report=$((next_report + 10))
  fi
  if awk -v t="$t" -v l="$BENCH_READY_TIMEOUT" 'BEGIN { exit !(t >= l) }'; then
    echo "--- what is not Ready after $BENCH_READY_TIMEOUT s ---" >&2
    echo "SecureVaults Ready: ${n:-?}/$BENCH_OBJECTS ($(k get securevaults -n "$NS" --no-headers 2>/dev/null | wc -l) exist)" >&2
    k get deployments -n "$NS" --no-headers 2>/dev/null |
      awk '{ split($2, r, "/"); if (r[1] == r[2]) ok++; else not_ok++ } END { printf "Deployments: %d ready, %d not\n", ok, not_ok }' >&2 || true
    k get pods -n "$NS" --no-headers 2>/dev/null | awk '{ print $3 }' | sort | uniq -c >&2 || true
    k get events -n "$NS" --field-selector type=Warning --sort-by=.lastTimestamp 2>/dev/null | tail -n 5 >&2 || true
    die "not every SecureVault was Ready within $BENCH_READY_TIMEOUT s"
  fi
  sleep 1
done
wait "$APPLY_PID" || true
APPLY_PID=
[ "$(cat "$TMP/apply.rc")" = 0 ] || die "kubectl apply of the SecureVaults failed: $(tail -n 5 "$TMP/apply.out")"
APPLY_SECS=$(since "$T0" "$(cat "$TMP/apply.end")")
log "all $BENCH_OBJECTS Ready after $ALL_READY s (first after $FIRST_READY s; kubectl apply took $APPLY_SECS s)"

# Where the time went, from the objects' own timestamps (whole seconds).
k get deployments -n "$NS" -o json >"$TMP/deployments.json"
k get replicasets -n "$NS" -o json >"$TMP/replicasets.json"
k get pods -n "$NS" -o json >"$TMP/pods.json"
k get securevaults -n "$NS" -o json >"$TMP/securevaults.json"
TIMELINE=$(python3 - "$T0" "$TMP" <<'EOF'
import json, statistics, sys
from datetime import datetime, timezone

t0, tmp = float(sys.argv[1]), sys.argv[2]

def items(kind):
    with open(f"{tmp}/{kind}.json") as f:
        return json.load(f)["items"]

def ts(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp() - t0

def condition(obj, kind):
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == kind and c["status"] == "True":
            return ts(c["lastTransitionTime"])
    return None

def line(label, values, what="last"):
    # Timestamps are whole seconds, truncated: the first may fall before t0.
    values = [max(v, 0.0) for v in values if v is not None]
    if values:
        print(f"             {label:<40} median +{statistics.median(values):.0f} s, {what} +{max(values):.0f} s ({len(values)})")

deployments, replicasets, pods, vaults = (items(k) for k in ("deployments", "replicasets", "pods", "securevaults"))
line("Deployment created (operator)", [ts(d["metadata"]["creationTimestamp"]) for d in deployments])
line("ReplicaSet created (Deployment ctrl)", [ts(r["metadata"]["creationTimestamp"]) for r in replicasets])
line("Pod created (ReplicaSet ctrl)", [ts(p["metadata"]["creationTimestamp"]) for p in pods])
line("Pod scheduled (scheduler)", [condition(p, "PodScheduled") for p in pods])
line("Pod Ready (kwok)", [condition(p, "Ready") for p in pods])

def rolled_out(d):
    # When the Deployment controller recorded the rollout as complete.
    for c in (d.get("status") or {}).get("conditions") or []:
        if c["type"] == "Progressing" and c.get("reason") == "NewReplicaSetAvailable":
            return ts(c["lastUpdateTime"])
    return None

line("Deployment rolled out (Deployment ctrl)", [rolled_out(d) for d in deployments])
line("SecureVault Ready (operator)", [condition(v, "Ready") for v in vaults])
# The operator's own lag: from its Deployment's status saying "rolled out"
# to the SecureVault's status saying Ready.
done = {d["metadata"]["name"]: rolled_out(d) for d in deployments}
lags = []
for v in vaults:
    ready, deployment = condition(v, "Ready"), done.get(v["metadata"]["name"])
    if ready is not None and deployment is not None:
        lags.append(ready - deployment)
line("  SecureVault Ready after its Deployment", lags, "max")
EOF
)

# ------------------------------------------------- 2. memory at rest --

log "waiting for the operator to be idle (no reconcile for $IDLE_SECS s, at least $SETTLE_MIN_SECS s)"
settle "$BENCH_OBJECTS"
[ -n "$SETTLED" ] || echo "note: the operator still reconciled after $SETTLE_MAX_SECS s; figures taken anyway" >&2
RSS_REST_KB=$(status_kb VmRSS)
HWM1_KB=$(status_kb VmHWM)
RECONCILES_CREATE=$(msum securevault_reconciles_total)
WRITES_CREATE=$(msum securevault_api_writes_total)
WRITES_CREATE_KINDS=$(by_kind securevault_api_writes_total)
ERRORS_CREATE=$(msum securevault_reconcile_errors_total)
CPU_CREATE=$(msum process_cpu_seconds_total %.1f)
MEAN_MS_CREATE=$(awk -v s="$(msum securevault_reconcile_duration_seconds_sum %.6f)" -v c="$(msum securevault_reconcile_duration_seconds_count)" \
  'BEGIN { printf "%.1f", (c > 0 ? 1000 * s / c : 0) }')

# ------------------------------------------------ 3. a standby takes over --

snapshot "$TMP/before"
log "starting a standby, then stopping the leader: the standby takes over $BENCH_OBJECTS unchanged SecureVaults"
stop_sampler
FIRST_PID=$OP_PID
start_operator 2 standby
T_RESTART=$(now)
stop_operator "$FIRST_PID"
[ "$OP_EXIT" = 0 ] || echo "note: the first operator exited with status $OP_EXIT on SIGTERM (expected 0)" >&2
wait_leader 2
LEADER_SECS=$(since "$T_RESTART")
settle "$BENCH_OBJECTS"
[ -n "$SETTLED" ] || die "the standby did not finish $BENCH_OBJECTS reconciles within $SETTLE_MAX_SECS s ($(msum securevault_reconciles_total) started)"
WAVE_SECS=$(since "$T_RESTART" "$LAST_RECONCILE_AT")
RECONCILES_RESTART=$(msum securevault_reconciles_total)
UNCHANGED_RESTART=$(msum securevault_reconciles_unchanged_total)
WRITES_RESTART=$(msum securevault_api_writes_total)
WRITES_RESTART_KINDS=$(by_kind securevault_api_writes_total)
ERRORS_RESTART=$(msum securevault_reconcile_errors_total)
# Requests beside the watches (list, watch) and the Lease, by verb and
# resource: what reconciling the unchanged SecureVaults cost.
REQUESTS_RESTART=$(awk 'index($1, "securevault_api_requests_total{") == 1 && $1 !~ /verb="(list|watch)"/ && $1 !~ /resource="leases"/ { s += $NF } END { printf "%.0f", s }' "$TMP/metrics")
REQUESTS_RESTART_WHAT=$(awk 'index($1, "securevault_api_requests_total{") == 1 && $1 !~ /verb="(list|watch)"/ && $1 !~ /resource="leases"/ {
    v = $1; sub(/.*verb="/, "", v); sub(/".*/, "", v); r = $1; sub(/.*resource="/, "", r); sub(/".*/, "", r)
    out = out sep v " " r "=" $NF; sep = ", " } END { print (out == "" ? "none" : out) }' "$TMP/metrics")
WATCH_REQUESTS_RESTART=$(awk 'index($1, "securevault_api_requests_total{") == 1 && $1 ~ /verb="(list|watch)"/ { s += $NF } END { printf "%.0f", s }' "$TMP/metrics")
RSS_REST2_KB=$(status_kb VmRSS)
HWM2_KB=$(status_kb VmHWM)
snapshot "$TMP/after"
OBJECTS_SEEN=$(wc -l <"$TMP/before")
# An object whose resourceVersion moved shows in both columns of comm -3;
# one created or deleted in one only.
CHANGED=$(comm -3 "$TMP/before" "$TMP/after" | awk '{ print $1 }' | sort -u | wc -l)
CHANGED_LIST=$(comm -3 "$TMP/before" "$TMP/after" | awk '{ print $1 }' | sort -u | head -n 5 | paste -sd ' ' -)
WRITES_PER_RECONCILE=$(awk -v w="$WRITES_RESTART" -v r="$RECONCILES_RESTART" 'BEGIN { printf "%.3g", (r > 0 ? w / r : 0) }')
REQUESTS_PER_RECONCILE=$(awk -v q="$REQUESTS_RESTART" -v r="$RECONCILES_RESTART" 'BEGIN { printf "%.3g", (r > 0 ? q / r : 0) }')

stop_sampler
stop_operator
[ "$OP_EXIT" = 0 ] || echo "note: the restarted operator exited with status $OP_EXIT on SIGTERM (expected 0)" >&2

# Peak: the larger of the sampled VmRSS and the kernel's high-water mark, over both processes.
PEAK_KB=$(cat "$TMP/peak-1" "$TMP/peak-2")
PEAK_KB=$(printf '%s\n' "$PEAK_KB" "$HWM1_KB" "$HWM2_KB" | sort -n | tail -n 1)
RSS_REST_MB=$(kb_to_mb "$RSS_REST_KB")
RSS_REST2_MB=$(kb_to_mb "$RSS_REST2_KB")
# The target is judged on the larger: both processes hold every object, and
# a restarted operator (a new pod, a new leader) is as normal as one that saw
# them created.
RSS_REST_MAX_MB=$(awk -v a="$RSS_REST_MB" -v b="$RSS_REST2_MB" 'BEGIN { print (a > b ? a : b) }')
PEAK_MB=$(kb_to_mb "$PEAK_KB")

# ------------------------------------------ 4. the control plane's floor --

# The same children the operator made, as `operator render` prints them for
# the same SecureVaults (without their owner reference: there is no
# SecureVault here), in a namespace of their own, applied by one
# `kubectl apply --server-side`; no operator. Kinds the API server does not
# serve (the Prometheus Operator's, when absent) are left out, as the
# operator leaves them out.
log "the floor: rendering the children of $BENCH_OBJECTS SecureVaults for namespace $FLOOR_NS"
k create namespace "$FLOOR_NS" >/dev/null
SERVED_KINDS=$(k api-resources --namespaced -o name 2>/dev/null | paste -sd ' ' -)
FLOOR=$TMP/floor.yaml
for ((i = 1; i <= BENCH_OBJECTS; i++)); do
  printf 'apiVersion: securevault.io/v1alpha1\nkind: SecureVault\nmetadata:\n  name: sv-%0*d\n  namespace: %s\nspec:\n  version: 0.1.0\n  replicas: 1\n' "$width" "$i" "$FLOOR_NS" >"$TMP/one.yaml"
  "$OP_BIN" render "$TMP/one.yaml" || die "operator render failed"
done | python3 -c '
import sys
served = set(sys.argv[1].split())
docs = sys.stdin.read().split("\n---\n")
def plural(doc):
    kind = next((l.split(":", 1)[1].strip() for l in doc.splitlines() if l.startswith("kind:")), "")
    return {"ServiceMonitor": "servicemonitors.monitoring.coreos.com", "PrometheusRule": "prometheusrules.monitoring.coreos.com"}.get(kind)
def unowned(doc):
    # Owned by a SecureVault that does not exist here, the garbage
    # collector would delete each child at once.
    out, skipping = [], False
    for l in doc.splitlines():
        if l == "  ownerReferences:":
            skipping = True
            continue
        if skipping and (l.startswith("  - ") or l.startswith("    ")):
            continue
        skipping = False
        out.append(l)
    return "\n".join(out)
kept = [unowned(d.strip("-\n")) for d in docs if d.strip("-\n") and (plural(d) is None or plural(d) in served)]
print("\n---\n".join(kept))
' "$SERVED_KINDS" >"$FLOOR"
FLOOR_OBJECTS=$(grep -c '^kind:' "$FLOOR")
log "the floor: applying $FLOOR_OBJECTS objects in one kubectl apply; polling every second until every Deployment is available"
T_FLOOR=$(now)
(
  k apply --server-side -n "$FLOOR_NS" -f "$FLOOR" >"$TMP/floor-apply.out" 2>&1
  echo $? >"$TMP/floor-apply.rc"
) &
FLOOR_APPLY_PID=$!
FLOOR_READY=
failures=0
while :; do
  t=$(since "$T_FLOOR")
  if n=$(k get deployments -n "$FLOOR_NS" --no-headers --request-timeout=20s \
    -o 'custom-columns=A:.status.availableReplicas,W:.spec.replicas,G:.metadata.generation,O:.status.observedGeneration' 2>"$TMP/floor.err" |
    awk '$1 == $2 && $3 == $4' | wc -l); then
    failures=0
    if [ "$n" -ge "$BENCH_OBJECTS" ]; then
      FLOOR_READY=$t
      break
    fi
  else
    failures=$((failures + 1))
    [ "$failures" -lt 10 ] || die "kubectl get deployments failed 10 times in a row: $(cat "$TMP/floor.err")"
  fi
  if [ -s "$TMP/floor-apply.rc" ] && [ "$(cat "$TMP/floor-apply.rc")" != 0 ]; then
    tail -n 20 "$TMP/floor-apply.out" >&2
    die "kubectl apply of the floor's children failed"
  fi
  awk -v t="$t" -v l="$BENCH_READY_TIMEOUT" 'BEGIN { exit !(t >= l) }' &&
    die "not every floor Deployment was available within $BENCH_READY_TIMEOUT s ($n of $BENCH_OBJECTS)"
  sleep 1
done
wait "$FLOOR_APPLY_PID" || true
FLOOR_APPLY_PID=
RATIO=$(awk -v o="$ALL_READY" -v f="$FLOOR_READY" 'BEGIN { printf "%.2f", (f > 0 ? o / f : 0) }')
log "the floor: every Deployment available after $FLOOR_READY s (the operator: all Ready after $ALL_READY s; ratio $RATIO)"

# ---------------------------------------------------------- report --

MACHINE=$(bench_machine)
DATE=$(date -u '+%Y-%m-%d %H:%M')
SERVER_VERSION=$(k get --raw /version 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["gitVersion"])' 2>/dev/null || echo '?')

cat <<EOF

SecureVault operator at scale, $DATE UTC
  machine    $MACHINE
  revision   $REVISION
  cluster    Kubernetes $SERVER_VERSION, $NODES kwok nodes, namespace $NS,
             kube-controller-manager's client at $KCM_QPS requests/s

  create     $BENCH_OBJECTS SecureVaults in one kubectl apply (returned after $APPLY_SECS s)
             first Ready after $FIRST_READY s, all Ready after $ALL_READY s
$TIMELINE
             $RECONCILES_CREATE reconciles (mean $MEAN_MS_CREATE ms), $WRITES_CREATE writes ($WRITES_CREATE_KINDS),
             $ERRORS_CREATE failed reconciles, $CPU_CREATE s of operator CPU
  resident   at rest with $BENCH_OBJECTS objects: $RSS_REST_MB MB (saw them created), $RSS_REST2_MB MB (restarted: listed them at start),
             peak $PEAK_MB MB (sampled every 0.5 s, and VmHWM $(kb_to_mb "$HWM1_KB") / $(kb_to_mb "$HWM2_KB") MB)
  takeover   the standby led $LEADER_SECS s after the leader was stopped, idle after $WAVE_SECS s:
             $RECONCILES_RESTART reconciles ($UNCHANGED_RESTART answered from the caches), $WRITES_RESTART writes ($WRITES_RESTART_KINDS), $ERRORS_RESTART failed
             API requests beside $WATCH_REQUESTS_RESTART for the watches and the Lease's: $REQUESTS_RESTART ($REQUESTS_RESTART_WHAT)
             $CHANGED of $OBJECTS_SEEN objects changed (SecureVaults and every child kind)${CHANGED_LIST:+: $CHANGED_LIST}
  floor      $FLOOR_OBJECTS children applied directly: every Deployment available after $FLOOR_READY s; operator / floor = $RATIO

Targets:
EOF
target "$BENCH_OBJECTS created to all Ready" "$ALL_READY" "<" 60 "s"
target "operator / floor, time to all Ready" "$RATIO" "<=" 1.2 ""
target "API requests per unchanged reconcile" "$REQUESTS_PER_RECONCILE" "<=" 0 ""
target "writes per unchanged reconcile" "$WRITES_PER_RECONCILE" "<=" 0 ""
target "objects changed by a restart" "$CHANGED" "<=" 0 ""
# 50 MB for 500, 100 MB for 2,000: what grows with the objects is their
# trimmed metadata.
RSS_LIMIT=$(awk -v n="$BENCH_OBJECTS" 'BEGIN { print (n > 500 ? 100 : 50) }')
target "resident at rest, $BENCH_OBJECTS objects" "$RSS_REST_MAX_MB" "<" "$RSS_LIMIT" "MB"

# A raised controller-manager rate is said in the row (20/s is the default).
OBJECTS_CELL=$BENCH_OBJECTS
[ "$KCM_QPS" = 20 ] || OBJECTS_CELL="$BENCH_OBJECTS (controller-manager at $KCM_QPS/s)"
ROW=$(printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |' \
  "$DATE" "$MACHINE" "$REVISION" "$OBJECTS_CELL" "$ALL_READY" "$FIRST_READY" \
  "$FLOOR_READY" "$RATIO" "$REQUESTS_PER_RECONCILE" \
  "$WRITES_PER_RECONCILE" "$CHANGED" "$RSS_REST_MB" "$RSS_REST2_MB" "$PEAK_MB" \
  "$RECONCILES_CREATE" "$RECONCILES_RESTART" "$WAVE_SECS")
insert_row "$TABLE_HEADER" "$ROW"
echo
echo "added a row to $RESULTS (Operator at scale)"
