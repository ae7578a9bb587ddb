#!/usr/bin/env bash
# Measures SecureVault on the real node (tests/cluster/node.sh: kubelet,
# kube-proxy, containerd) and adds one dated row to the "Real node" table of
# docs/benchmarks.md (`make benchmark` runs it):
#
#   1. seconds from `kubectl apply` of a SecureVault (one replica, SQLite,
#      placed on the real node) to its first pod Ready, as the kubelet
#      reports it after the readiness probe passed;
#   2. requests per second of wrk on /api/health through the Service's
#      cluster IP (kube-proxy's rules, the pod's network) against the same
#      release binary run on this host on loopback;
#   3. seconds of a full managed upgrade with real pods (0.1.0 -> 0.2.0,
#      the same binary under a second tag, verifySeconds 5) until Succeeded,
#      and of a rollback: a release whose process never listens (the node's
#      pause program as 0.3.0, progressDeadlineSeconds 10) until RolledBack;
#   4. the recovery time a user sees: a store of BENCH_EMAILS (100,000)
#      emails is backed up into a real S3 server (SeaweedFS on this host,
#      which pods reach at the node's gateway), then seconds from `kubectl
#      apply` of a SecureVault restoring it (`restoreFrom: {}`) to the first
#      200 on /api/health/ready through its Service; and the age of the
#      newest backup its status reports. Added to the "Restore on the real
#      node" table.
#
# The images are the release ones docker/build.sh builds (`make
# docker-prod`), imported into the node's containerd. It is a measurement,
# not a test: it fails only when the measurement breaks.
#
# Needs root. A cluster that runs with the real node is used and left
# running; otherwise one with the real node is started (a running kwok-only
# cluster is recreated) and stopped at the end.
set -euo pipefail

BENCH_DURATION=${BENCH_DURATION:-10s}
BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-32}
BENCH_THREADS=${BENCH_THREADS:-2}
EMAILS=${BENCH_EMAILS:-100000}
export SECUREVAULT_CACHE=${SECUREVAULT_CACHE:-$HOME/.cache/securevault}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/securevault/target}
export PATH="$HOME/.cargo/bin:$PATH"

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=tests/bench/lib.sh
source tests/bench/lib.sh
CLUSTER_SH=tests/cluster/cluster.sh
NODE_SH=tests/cluster/node.sh
TABLE_HEADER='| Date (UTC) | Machine | Revision | apply to first pod Ready s |'
RTO_HEADER='| Date (UTC) | Machine | Revision | emails in store | backup MB | apply to first ready 200 s | status backup age s |'
SECRET_KEY=5ec0e7ba5eca1ab1e5ec0e7ba5eca1ab1e5ec0e7ba5eca1ab1e5ec0e7ba5eca1

log() { printf '==> %s\n' "$*"; }
die() {
  echo "real-node-benchmark: $*" >&2
  exit 1
}

[ "$(id -u)" -eq 0 ] || die "the real node needs root"
command -v wrk >/dev/null || die "wrk not found (make benchmark installs it)"
grep -qF "$TABLE_HEADER" "$RESULTS" 2>/dev/null ||
  die "$RESULTS lacks the 'Real node' table header ($TABLE_HEADER ...)"
grep -qF "$RTO_HEADER" "$RESULTS" 2>/dev/null ||
  die "$RESULTS lacks the 'Restore on the real node' table header ($RTO_HEADER ...)"

REVISION=$(bench_revision)
log "building the release images (docker/build.sh)"
built=$(PROFILE=release docker/build.sh)
echo "$built"
OP_BIN="$CARGO_TARGET_DIR/release/operator"
DP_BIN="$CARGO_TARGET_DIR/release/dataplane"

STARTED_CLUSTER=
NS=
OP_PID=
DP_PID=
PIDS=() # started by lib.sh (SeaweedFS)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/securevault-real-node-bench.XXXXXX")
cleanup() {
  local status=$?
  set +e
  for pid in "$OP_PID" "$DP_PID" "${PIDS[@]}"; do
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
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

if ! "$CLUSTER_SH" status >/dev/null 2>&1; then
  log "starting the cluster with the real node (stopped again at the end)"
  STARTED_CLUSTER=1
fi
NODE=real "$CLUSTER_SH" up >/dev/null
KUBECONFIG_FILE=$("$CLUSTER_SH" kubeconfig)
KUBECTL_BIN=$("$CLUSTER_SH" kubectl)
k() { "$KUBECTL_BIN" --kubeconfig "$KUBECONFIG_FILE" --request-timeout=30s "$@"; }

log "importing the images into the node's containerd"
export DOCKER_HOST=${DOCKER_HOST:-unix://$SECUREVAULT_CACHE/docker/docker.sock}
docker tag securevault/dataplane:0.1.0 securevault/dataplane:0.2.0
for tag in 0.1.0 0.2.0; do
  docker save -o "$TMP/dataplane-$tag.tar" "securevault/dataplane:$tag"
done
python3 tests/cluster/oci-archive.py "$("$NODE_SH" pause-binary)" /usr/local/bin/securevault \
  docker.io/securevault/dataplane:0.3.0 "$TMP/dataplane-0.3.0.tar"
"$NODE_SH" load "$TMP"/dataplane-*.tar

k apply --server-side --force-conflicts -f crds/securevault.yaml >/dev/null
k wait --for=condition=Established --timeout=60s crd/securevaults.securevault.io >/dev/null
NS="real-node-bench-$$"
k create namespace "$NS" >/dev/null
k -n "$NS" create secret generic credentials --from-literal=secret-key="$SECRET_KEY" \
  --from-literal=admin-password=real-node-benchmark >/dev/null

log "starting the release operator on namespace $NS"
KUBECONFIG="$KUBECONFIG_FILE" WATCH_NAMESPACE="$NS" POD_NAMESPACE="$NS" POD_NAME=bench \
  METRICS_ADDR=127.0.0.1:0 LOG_LEVEL=warn "$OP_BIN" run >"$TMP/operator.log" 2>&1 &
OP_PID=$!

# A one-replica SecureVault (NAME, default bench) on the real node, with the
# store's and the backups' claims on its local volumes (node.sh; the default
# class's volumes only root may write); more spec fields may follow it.
vault() { # VERSION [DEADLINE] [NAME]
  cat <<EOF
apiVersion: securevault.io/v1alpha1
kind: SecureVault
metadata: {name: ${3:-bench}}
spec:
  version: $1
  imagePullPolicy: Never
  replicas: 1
  secretKeyRef: {name: credentials, key: secret-key}
  adminPasswordSecretRef: {name: credentials, key: admin-password}
  monitoring: {enabled: false}
  upgrade: {verifySeconds: 5, progressDeadlineSeconds: ${2:-120}}
  placement:
    nodeSelector: {securevault.io/node: real}
    tolerations: [{key: securevault.io/node, operator: Equal, value: real, effect: NoSchedule}]
  storage: {storageClassName: real-node, whenDeleted: Delete}
EOF
}

# Waits (up to 180 s) until COMMAND's output is VALUE; prints the seconds
# since START.
await() { # START VALUE COMMAND...
  local start=$1 want=$2 deadline=$((SECONDS + 180))
  shift 2
  until [ "$("$@" 2>/dev/null)" = "$want" ]; do
    kill -0 "$OP_PID" 2>/dev/null || die "the operator died"
    [ "$SECONDS" -lt "$deadline" ] || die "'$*' did not say '$want' within 180 s"
    sleep 0.1
  done
  since "$start"
}
ready_pods() {
  k -n "$NS" get pods -l app.kubernetes.io/instance=bench \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True
}
# The newest finished upgrade (upgradeHistory is newest first).
phase() { k -n "$NS" get sv bench -o jsonpath='{.status.upgradeHistory[0].toVersion} {.status.upgradeHistory[0].phase}'; }

log "1. kubectl apply -> first real pod Ready"
start=$(now)
vault 0.1.0 | k -n "$NS" apply -f - >/dev/null
FIRST_READY=$(await "$start" 1 ready_pods)
echo "    $FIRST_READY s"

log "2. wrk on /api/health: through the Service vs the same binary on this host"
cluster_ip=$(k -n "$NS" get service bench -o jsonpath='{.spec.clusterIP}')
SERVICE_URL="http://$cluster_ip:8080"
# kube-proxy follows a new Service a moment later; its 404s are not ours.
for _ in $(seq 100); do
  curl -fsS "$SERVICE_URL/api/health" 2>/dev/null | grep -q '"ok"' && break
  sleep 0.1
done
port=$(free_port)
mkdir -p "$TMP/data"
SECRET_KEY=$SECRET_KEY ADMIN_PASSWORD=real-node-benchmark LISTEN_ADDR=127.0.0.1:$port METRICS_ADDR=127.0.0.1:$(free_port) \
  DATA_DIR="$TMP/data" LOG_LEVEL=warn "$DP_BIN" serve >"$TMP/dataplane.log" 2>&1 &
DP_PID=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/api/health" >/dev/null 2>&1 && break
  sleep 0.1
done
rps() { # URL
  local out
  out=$(wrk -t"$BENCH_THREADS" -c"$BENCH_CONNECTIONS" -d"$BENCH_DURATION" "$1/api/health")
  grep -q 'Non-2xx' <<<"$out" && die "non-2xx answers from $1: $out"
  awk '/^Requests\/sec/ { printf "%d", $2 }' <<<"$out"
}
SERVICE_RPS=$(rps "$SERVICE_URL")
HOST_RPS=$(rps "http://127.0.0.1:$port")
kill -TERM "$DP_PID" && wait "$DP_PID" 2>/dev/null || true
DP_PID=
echo "    through the Service: $SERVICE_RPS req/s; on the host: $HOST_RPS req/s"

log "3. a full upgrade (0.1.0 -> 0.2.0) and a rollback (0.2.0 -> 0.3.0, never ready)"
start=$(now)
vault 0.2.0 | k -n "$NS" apply -f - >/dev/null
UPGRADE=$(await "$start" "0.2.0 Succeeded" phase)
start=$(now)
vault 0.3.0 10 | k -n "$NS" apply -f - >/dev/null
ROLLBACK=$(await "$start" "0.3.0 RolledBack" phase)
echo "    upgrade $UPGRADE s, rollback $ROLLBACK s"

log "4. RTO: kubectl apply of a SecureVault restoring $EMAILS emails -> its first 200 on /api/health/ready"
start_seaweedfs "$TMP/weed" backups
# The store to restore, made and backed up on this host by the release
# binary, under the prefix the restoring vault's own backups use
# (<namespace>/<name>).
host_dataplane() {
  env -i PATH="$PATH" HOME="$HOME" DATA_DIR="$TMP/store" LOG_LEVEL=info \
    BACKUP_S3_ENDPOINT="http://127.0.0.1:$S3_PORT" BACKUP_S3_BUCKET=backups \
    BACKUP_S3_PREFIX="$NS/restored" BACKUP_S3_ACCESS_KEY_ID="$S3_KEY" \
    BACKUP_S3_SECRET_ACCESS_KEY="$S3_SECRET" "$DP_BIN" "$@"
}
host_dataplane migrate >/dev/null
python3 tests/bench/seed_emails.py "$TMP/store/securevault.db" "$EMAILS"
host_dataplane backup >"$TMP/backup.log" 2>&1 || die "the backup failed: $(tail -3 "$TMP/backup.log")"
BACKUP_MB=$(awk -v b="$(backup_bytes "$TMP/backup.log")" 'BEGIN { printf "%.1f", b / 1048576 }')
k -n "$NS" create secret generic bucket --from-literal=id="$S3_KEY" \
  --from-literal=secret="$S3_SECRET" >/dev/null
start=$(now)
{
  vault 0.1.0 120 restored
  cat <<EOF
  backup:
    s3:
      endpoint: http://10.244.0.1:$S3_PORT
      bucket: backups
      accessKeyIdSecretRef: {name: bucket, key: id}
      secretAccessKeySecretRef: {name: bucket, key: secret}
  restoreFrom: {}
EOF
} | k -n "$NS" apply -f - >/dev/null
RESTORED_URL=
restored_ready() {
  local ip
  ip=$(k -n "$NS" get service restored -o jsonpath='{.spec.clusterIP}' 2>/dev/null) && [ -n "$ip" ] || return 1
  RESTORED_URL="http://$ip:8080"
  [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$RESTORED_URL/api/health/ready")" = 200 ]
}
wait_until "the restored vault's first 200 on /api/health/ready" 900 restored_ready
RTO=$(since "$start")
# What it serves is the backup: every email of it.
token=$(BENCH_ADMIN_PASSWORD=real-node-benchmark bench_login "$RESTORED_URL") ||
  die "cannot sign in to the restored vault"
served=$(curl -sf -H "Authorization: Bearer $token" "$RESTORED_URL/api/stats" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["emails"]["total"]["all_time"])')
[ "$served" = "$EMAILS" ] || die "the restored vault serves $served emails, not $EMAILS"
# The recovery point as the status reports it: the newest backup's age
# (the operator lists the bucket; the schedule keeps it under intervalSeconds).
last_backup() { k -n "$NS" get sv restored -o jsonpath='{.status.lastBackupTime}'; }
has_last_backup() { [ -n "$(last_backup)" ]; }
wait_until "status.lastBackupTime of the restored vault" 120 has_last_backup
AGE=$(( $(date +%s) - $(date -d "$(last_backup)" +%s) ))
echo "    $RTO s for $EMAILS emails ($BACKUP_MB MB); status.lastBackupTime is $AGE s old"

RATIO=$(awk -v s="$SERVICE_RPS" -v h="$HOST_RPS" 'BEGIN { printf "%.2f", s / h }')
ROW="| $(date -u '+%Y-%m-%d %H:%M') | $(bench_machine) | $REVISION | $FIRST_READY | $SERVICE_RPS | $HOST_RPS | $RATIO | $UPGRADE | $ROLLBACK |"
insert_row "$TABLE_HEADER" "$ROW"
RTO_ROW="| $(date -u '+%Y-%m-%d %H:%M') | $(bench_machine) | $REVISION | $EMAILS | $BACKUP_MB | $RTO | $AGE |"
insert_row "$RTO_HEADER" "$RTO_ROW"
target "restore: apply to first ready 200" "$RTO" "<" 900 s
log "added to $RESULTS:"
echo "$ROW"
echo "$RTO_ROW"
