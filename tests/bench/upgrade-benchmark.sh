#!/usr/bin/env bash
# Measures managed upgrades on the real control plane (kwok nodes, the real
# Deployment, ReplicaSet and Job controllers) and adds one dated row to the
# "Upgrades" table of docs/benchmarks.md (`make benchmark` runs it last):
#
#   1. one SecureVault at 0.1.0, Ready; spec.version set to 0.2.0: seconds
#      until status.upgrade.phase is Succeeded;
#   2. the same for BENCH_UPGRADES SecureVaults (50) changed in one
#      `kubectl apply`: seconds until the last one has Succeeded;
#   3. one SecureVault set to a release whose pods never become ready
#      (`-unready`, see tests/cluster/cluster.sh) with
#      progressDeadlineSeconds 10: seconds until the operator starts the
#      rollback (its UpgradeRollingBack Event) and until it is complete
#      (phase RolledBack).
#
# Every vault has spec.database, so each upgrade runs its migration Job, and
# verifySeconds 5: an upgrade lasts at least that long by design. Phases are
# polled every 0.5 s, so the times are accurate to about that.
#
# It is a measurement, not a test: a missed target is printed as MISS and the
# script still succeeds. It fails when the measurement itself breaks (no
# cluster, the operator dies, an upgrade does not end within
# BENCH_UPGRADE_TIMEOUT seconds, default 300).
#
# The cluster is tests/cluster/cluster.sh's: one that runs is used and left
# running, one this script starts is stopped at the end.
set -euo pipefail

BENCH_UPGRADES=${BENCH_UPGRADES:-50}
BENCH_UPGRADE_TIMEOUT=${BENCH_UPGRADE_TIMEOUT:-300}
export SECUREVAULT_CACHE=${SECUREVAULT_CACHE:-$HOME/.cache/securevault}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/securevault/target}
export PATH="$HOME/.cargo/bin:$PATH"
DEADLINE=10
VERIFY=5

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=tests/bench/lib.sh
source tests/bench/lib.sh
CLUSTER_SH=tests/cluster/cluster.sh
TABLE_HEADER='| Date (UTC) | Machine | Revision | 1 upgrade s |'

log() { printf '==> %s\n' "$*"; }
die() {
  echo "upgrade-benchmark: $*" >&2
  exit 1
}

case "$BENCH_UPGRADES" in '' | *[!0-9]* | 0) die "BENCH_UPGRADES must be a positive number" ;; esac
case "$BENCH_UPGRADE_TIMEOUT" in '' | *[!0-9]*) die "BENCH_UPGRADE_TIMEOUT must be a number of seconds" ;; esac
grep -qF "$TABLE_HEADER" "$RESULTS" 2>/dev/null ||
  die "$RESULTS lacks the 'Upgrades' table header ($TABLE_HEADER ...)"

REVISION=$(bench_revision)
log "building the release operator"
cargo build --release --locked -p operator
OP_BIN="$CARGO_TARGET_DIR/release/operator"

STARTED_CLUSTER=
NS=
OP_PID=
TMP=$(mktemp -d "${TMPDIR:-/tmp}/securevault-upgrade-bench.XXXXXX")
cleanup() {
  local status=$?
  set +e
  if [ -n "$OP_PID" ]; then
    kill -TERM "$OP_PID" 2>/dev/null
    wait "$OP_PID" 2>/dev/null
  fi
  if [ "$status" -ne 0 ] && [ -s "$TMP/operator.log" ]; then
    echo "--- last lines of the operator's log ---" >&2
    tail -n 20 "$TMP/operator.log" >&2
  fi
  if [ -n "$STARTED_CLUSTER" ]; then
    "$CLUSTER_SH" down
  elif [ -n "$NS" ]; then
    k delete namespace "$NS" --wait=false >/dev/null
  fi
  rm -rf "$TMP"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! "$CLUSTER_SH" status 2>/dev/null; then
  log "starting the cluster (stopped again at the end)"
  STARTED_CLUSTER=1
fi
"$CLUSTER_SH" up >/dev/null
KUBECONFIG_FILE=$("$CLUSTER_SH" kubeconfig)
KUBECTL_BIN=$("$CLUSTER_SH" kubectl)
k() { "$KUBECTL_BIN" --kubeconfig "$KUBECONFIG_FILE" --request-timeout=30s "$@"; }

k apply --server-side --force-conflicts -f crds/securevault.yaml >/dev/null
k wait --for=condition=Established --timeout=60s crd/securevaults.securevault.io >/dev/null
NS="upgrade-bench-$$"
k create namespace "$NS" >/dev/null
k -n "$NS" create secret generic db \
  --from-literal=url='postgres://securevault@db.example:5432/securevault' >/dev/null

log "starting the operator on namespace $NS"
KUBECONFIG="$KUBECONFIG_FILE" WATCH_NAMESPACE="$NS" POD_NAMESPACE="$NS" POD_NAME=bench \
  METRICS_ADDR=127.0.0.1:0 LOG_LEVEL=warn "$OP_BIN" run >"$TMP/operator.log" 2>&1 &
OP_PID=$!

# vaults PREFIX COUNT VERSION [DEADLINE]: the manifests of PREFIX-1..COUNT.
vaults() {
  local i
  for ((i = 1; i <= $2; i++)); do
    cat <<EOF
---
apiVersion: securevault.io/v1alpha1
kind: SecureVault
metadata: {name: $1-$i}
spec:
  version: $3
  replicas: 1
  database: {urlSecretRef: {name: db, key: url}}
  monitoring: {enabled: false}
  upgrade: {verifySeconds: $VERIFY, progressDeadlineSeconds: ${4:-300}}
EOF
  done
}

# How many of PREFIX-* satisfy the jsonpath filter FIELD==VALUE.
count() { # PREFIX JSONPATH VALUE
  k -n "$NS" get sv -o jsonpath="{range .items[*]}{.metadata.name} {$2}{\"\\n\"}{end}" |
    awk -v p="$1-" -v want="$3" 'index($1, p) == 1 && $2 == want' | wc -l
}

# Waits until COUNT of PREFIX-* have FIELD == VALUE; prints the seconds
# since START.
await() { # PREFIX COUNT JSONPATH VALUE START
  local deadline=$((SECONDS + BENCH_UPGRADE_TIMEOUT))
  until [ "$(count "$1" "$3" "$4")" -ge "$2" ]; do
    kill -0 "$OP_PID" 2>/dev/null || die "the operator died"
    [ "$SECONDS" -lt "$deadline" ] || die "$1: $4 not reached by $2 vaults within $BENCH_UPGRADE_TIMEOUT s"
    sleep 0.5
  done
  since "$5"
}

READY='.status.conditions[?(@.type=="Ready")].status'
PHASE='.status.upgrade.phase'

# upgrade PREFIX COUNT: creates them at 0.1.0, waits until Ready, changes
# them to 0.2.0 in one apply; prints the seconds until all have Succeeded.
upgrade() {
  vaults "$1" "$2" 0.1.0 | k -n "$NS" apply -f - >/dev/null
  await "$1" "$2" "$READY" True "$(now)" >/dev/null
  local t0
  t0=$(now)
  vaults "$1" "$2" 0.2.0 | k -n "$NS" apply -f - >/dev/null
  await "$1" "$2" "$PHASE" Succeeded "$t0"
}

log "1 upgrade"
ONE=$(upgrade one 1)
log "$BENCH_UPGRADES upgrades at once"
MANY=$(upgrade many "$BENCH_UPGRADES")

log "a release that never gets ready (progressDeadlineSeconds $DEADLINE)"
vaults bad 1 0.1.0 "$DEADLINE" | k -n "$NS" apply -f - >/dev/null
await bad 1 "$READY" True "$(now)" >/dev/null
T0=$(now)
vaults bad 1 0.2.0-unready "$DEADLINE" | k -n "$NS" apply -f - >/dev/null
ROLLED_BACK=$(await bad 1 "$PHASE" RolledBack "$T0")
# RollingBack can last less than a poll: when the operator decided is in
# the microsecond eventTime of its UpgradeRollingBack Event.
EVENT_TIME=$(k -n "$NS" get events --field-selector reason=UpgradeRollingBack,involvedObject.name=bad-1 \
  -o jsonpath='{.items[0].eventTime}')
[ -n "$EVENT_TIME" ] || die "no UpgradeRollingBack Event for bad-1"
DETECTED=$(since "$T0" "$(date -d "$EVENT_TIME" +%s.%N)")
IMAGE=$(k -n "$NS" get deployment bad-1 -o jsonpath='{.spec.template.spec.containers[0].image}')
[ "$IMAGE" = securevault/dataplane:0.1.0 ] || die "after the rollback the Deployment runs $IMAGE"

echo
echo "Upgrades ($REVISION, verifySeconds $VERIFY, with a migration Job each):"
target "1 upgrade to Succeeded" "$ONE" "<=" $((VERIFY + 15)) s
target "$BENCH_UPGRADES upgrades to Succeeded" "$MANY" "<=" 120 s
target "bad rollout detected" "$DETECTED" "<=" $((DEADLINE + 10)) s
target "rollback complete" "$ROLLED_BACK" "<=" $((DEADLINE + 20)) s

ROW="| $(date -u '+%Y-%m-%d %H:%M') | $(bench_machine) | $REVISION | $ONE | $BENCH_UPGRADES | $MANY | $DEADLINE | $DETECTED | $ROLLED_BACK |"
insert_row "$TABLE_HEADER" "$ROW"
log "row added to $RESULTS"
