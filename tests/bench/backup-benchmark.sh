#!/usr/bin/env bash
# Backups of a full store, with the release data plane (SQLite) and a real
# S3 server (SeaweedFS, tests/setup/seaweedfs.sh): a store of 100,000 emails
# of the last 24 hours is backed up into a bucket (`dataplane backup`, the
# snapshot the schedule takes: its size and duration), then a new, empty
# store is restored from the bucket's latest backup and served (`dataplane
# restore latest --if-empty`, what a restoring pod's init container runs,
# then `dataplane serve`): seconds from the restore's start to the first 200
# on /api/health/ready. With the real node's "apply to first pod Ready"
# (real-node-benchmark.sh) this is the RTO a user sees. Appends one dated
# row to the "Backup and restore" table of docs/benchmarks.md.
#
# A measurement, not a test: it fails only when the measurement breaks.
set -euo pipefail

EMAILS=${BENCH_EMAILS:-100000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/securevault/target}
export PATH="$HOME/.cargo/bin:$PATH"
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=tests/bench/lib.sh
source tests/bench/lib.sh

die() {
  echo "backup-benchmark: $*" >&2
  exit 1
}
for tool in curl python3; do
  command -v "$tool" >/dev/null || die "$tool not found (make benchmark installs curl)"
done
TABLE='| Date (UTC) | Machine | Revision | emails in store | backup MB | backup s | restore s | restore to ready s |'
grep -qF "$TABLE" "$RESULTS" || die "$RESULTS lacks the Backup and restore table header"

REVISION=$(bench_revision)
echo "==> building the release binary and SeaweedFS"
cargo build --release --locked -p dataplane
BIN="$CARGO_TARGET_DIR/release/dataplane"

bench_scratch securevault-backup-bench
start_seaweedfs "$TMP/weed" backups

BUCKET_ENV=(BACKUP_S3_ENDPOINT="http://127.0.0.1:$S3_PORT" BACKUP_S3_BUCKET=backups
  BACKUP_S3_PREFIX=bench/mail BACKUP_S3_ACCESS_KEY_ID="$S3_KEY" BACKUP_S3_SECRET_ACCESS_KEY="$S3_SECRET")
dataplane() { # DATA_DIR ARGS...
  local dir=$1
  shift
  env -i PATH="$PATH" HOME="$HOME" DATA_DIR="$dir" LOG_LEVEL=info "${BUCKET_ENV[@]}" \
    "${BENCH_AUTH_ENV[@]}" "$BIN" "$@"
}

echo "==> a store of $EMAILS emails"
dataplane "$TMP/old" migrate >/dev/null
python3 tests/bench/seed_emails.py "$TMP/old/securevault.db" "$EMAILS"

echo "==> backing it up into the bucket"
start=$(now)
dataplane "$TMP/old" backup >"$TMP/backup.log" 2>&1 || die "the backup failed: $(tail -3 "$TMP/backup.log")"
BACKUP_S=$(since "$start")
BYTES=$(backup_bytes "$TMP/backup.log")
[ -n "$BYTES" ] || die "the backup's log names no size: $(tail -3 "$TMP/backup.log")"
BACKUP_MB=$(awk -v b="$BYTES" 'BEGIN { printf "%.1f", b / 1048576 }')

echo "==> restoring a new store from the latest backup, then serving it"
port=$(free_port)
start=$(now)
dataplane "$TMP/new" restore latest --if-empty >"$TMP/restore.log" 2>&1 ||
  die "the restore failed: $(tail -3 "$TMP/restore.log")"
RESTORE_S=$(since "$start")
env -i PATH="$PATH" HOME="$HOME" DATA_DIR="$TMP/new" LISTEN_ADDR="127.0.0.1:$port" \
  METRICS_ADDR="127.0.0.1:$(free_port)" LOG_LEVEL=warn "${BENCH_AUTH_ENV[@]}" "$BIN" serve >"$TMP/serve.log" 2>&1 &
PIDS+=($!)
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/api/health/ready")" = 200 ]; }
wait_until "the restored data plane ready" 300 ready
READY_S=$(since "$start")
rows=$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT COUNT(*) FROM emails").fetchone()[0])' "$TMP/new/securevault.db")
[ "$rows" = "$EMAILS" ] || die "the restored store holds $rows emails, not $EMAILS"

DATE=$(date -u '+%Y-%m-%d %H:%M')
MACHINE=$(bench_machine)
cat <<EOF

Backup and restore, $DATE UTC ($MACHINE, $REVISION), $EMAILS emails in SQLite, into SeaweedFS
  backup size              $BACKUP_MB MB
  backup (snapshot+upload) $BACKUP_S s
  restore from the bucket  $RESTORE_S s
  restore to ready         $READY_S s
EOF
target "restore to ready (RTO part)" "$READY_S" "<" 900 s
insert_row "$TABLE" "| $DATE | $MACHINE | $REVISION | $EMAILS | $BACKUP_MB | $BACKUP_S | $RESTORE_S | $READY_S |"
echo "appended a row to $RESULTS"
