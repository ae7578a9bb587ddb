# What the benchmark scripts share: how a row names the machine and the
# revision measured, how a figure is judged against its target, and how a row
# lands in its table of docs/benchmarks.md. Sourced, not run.

RESULTS=docs/benchmarks.md

now() { date +%s.%N; }
# Seconds (one decimal) from $1 to $2 (default: now).
since() { awk -v s="$1" -v e="${2:-$(now)}" 'BEGIN { printf "%.1f", e - s }'; }
kb_to_mb() { awk -v kb="$1" 'BEGIN { printf "%.1f", kb / 1024 }'; }

# The revision measured, read before building because that is what the
# binary is made of (a commit landing during the run must not be credited
# with these figures); "-dirty" when the working tree differs from it. The
# results file is excluded, since every run changes it.
bench_revision() {
  local rev
  rev=$(git rev-parse --short HEAD 2>/dev/null) || {
    echo unknown
    return
  }
  if [ -n "$(git status --porcelain -- . ":(exclude)$RESULTS")" ]; then
    rev="$rev-dirty"
  fi
  echo "$rev"
}

# The machine, for comparing rows: cores, memory, architecture and a short
# CPU model name ("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz" -> "Intel
# Xeon Platinum 8375C").
bench_machine() {
  local cpu
  cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
  cpu=$(sed -E 's/\((R|TM|tm)\)//g; s/ @ .*//; s/ (CPU|Processor|[0-9]+-Core Processor)$//; s/  +/ /g; s/^ +| +$//g' <<<"${cpu:-unknown CPU}")
  echo "$(nproc) cores, $(free -g | awk '/Mem/ { print $2 }') GiB, $(uname -m), ${cpu//|/}"
}

# Prints PASS or MISS for "LABEL: VALUE OP LIMIT UNIT" (OP one of >=, <=, <);
# never fails the script: a missed target is a finding, not a broken run.
target() {
  local label=$1 value=$2 op=$3 limit=$4 unit=$5 verdict
  if awk -v v="$value" -v l="$limit" -v op="$op" \
    'BEGIN { exit !((op == ">=" && v >= l) || (op == "<=" && v <= l) || (op == "<" && v < l)) }'; then
    verdict=PASS
  else
    verdict=MISS
  fi
  printf '  %-4s  %-34s %10s %-9s (target %s %s)\n' "$verdict" "$label" "$value" "$unit" "$op" "$limit"
}

# Puts ROW after the last row of the table whose header line starts with
# HEADER (its header, the separator, the rows: consecutive lines starting
# with "|"), keeping the file's mode.
insert_row() { # HEADER ROW
  local out
  out=$(mktemp "${TMPDIR:-/tmp}/benchmarks.XXXXXX")
  if ! awk -v header="$1" -v row="$2" '
    state == 0 && index($0, header) == 1 { state = 1; print; next }
    state == 1 && !/^\|/ { print row; state = 2 }
    { print }
    END { if (state == 1) print row; if (state == 0) exit 3 }
  ' "$RESULTS" >"$out"; then
    rm -f "$out"
    echo "benchmark: no table starting with '$1' in $RESULTS" >&2
    return 1
  fi
  cat "$out" >"$RESULTS"
  rm -f "$out"
}

# Fails naming the script and what went wrong, after the last lines of every
# log of the run ($TMP/*.log), so a server that did not start says why.
# Scripts that need less (or more) define their own `die` after sourcing this.
die() {
  echo "$(basename "$0" .sh): $*" >&2
  local log
  for log in "${TMP:-}"/*.log; do
    [ -s "$log" ] || continue
    echo "--- last lines of $log ---" >&2
    tail -n 15 "$log" >&2
  done
  exit 1
}

# A scratch directory for one run, and the servers it starts (`PIDS+=($!)`):
# whatever happens (success, failure, Ctrl-C) the servers get SIGTERM and the
# directory goes, so no stray server holds a port or eats CPU.
bench_scratch() { # PREFIX
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
bench_cleanup() {
  local status=$? pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
  exit "$status"
}

# A free loopback port, from the kernel. Another process could take it
# before our server binds; then the server fails to start and says so.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Polls COMMAND every 0.2 s for up to SECONDS; fails (the script's `die`)
# naming WHAT.
wait_until() { # WHAT SECONDS COMMAND...
  local what=$1 limit=$2 deadline=$((SECONDS + $2))
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "$what did not happen within $limit s"
    sleep 0.2
  done
}

# The administrator every benchmarked data plane starts with, and the limits
# raised out of the way: a benchmark measures throughput, not the budgets.
BENCH_ADMIN_PASSWORD="bench-admin-password-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
BENCH_AUTH_ENV=(ADMIN_PASSWORD="$BENCH_ADMIN_PASSWORD" RATE_LIMIT_API=100000000/1s
  RATE_LIMIT_EMAIL=100000000/1s RATE_LIMIT_AI=100000000/1s)

# Signs in to the data plane at URL as its administrator; prints the
# session token.
bench_login() { # URL
  curl -sf -H 'Content-Type: application/json' \
    -d "{\"username\":\"admin\",\"password\":\"$BENCH_ADMIN_PASSWORD\"}" "$1/api/auth/login" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])'
}

# Creates an API key with every scope on the data plane at URL; prints it.
bench_api_key() { # URL
  local token
  token=$(bench_login "$1") || return 1
  curl -sf -H 'Content-Type: application/json' -H "Authorization: Bearer $token" \
    -d '{"name":"benchmark","scopes":["email","ai","admin"]}' "$1/api/keys" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])'
}

# wrk's latency figure (e.g. 850.00us, 1.23ms, 2.01s) in milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000
    else if (u != "ms") { print "?"; exit }
    printf "%.2f", n
  }'
}

# A real S3 server for the backup figures: SeaweedFS (tests/setup/
# seaweedfs.sh) on free loopback ports, its data in DIR, one identity
# (S3_KEY, S3_SECRET) that may read, write and list, and one bucket,
# BUCKET (no other is made on the fly). Sets S3_PORT; the server joins PIDS
# (bench_scratch stops it); fails (the script's `die`) if the gateway never
# answers.
S3_KEY=bench-backup S3_SECRET=bench-backup-secret-0123456789
start_seaweedfs() { # DIR BUCKET
  local dir=$1 bucket=$2 weed master master_grpc filer filer_grpc
  weed=$(tests/setup/seaweedfs.sh | tail -1)
  mkdir -p "$dir/data"
  cat >"$dir/s3.json" <<EOF
{"identities":[{"name":"bench","credentials":[{"accessKey":"$S3_KEY","secretKey":"$S3_SECRET"}],"actions":["Read","Write","List","Tagging"]}]}
EOF
  master=$(free_port) master_grpc=$(free_port) filer=$(free_port) filer_grpc=$(free_port)
  S3_PORT=$(free_port)
  "$weed" server -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="$master" -master.port.grpc="$master_grpc" -master.volumeSizeLimitMB=64 -volume.max=16 \
    -volume.port="$(free_port)" -volume.port.grpc="$(free_port)" \
    -filer -filer.port="$filer" -filer.port.grpc="$filer_grpc" \
    -s3 -s3.port="$S3_PORT" -s3.port.grpc="$(free_port)" -s3.port.iceberg=0 -s3.port.lance=0 \
    -s3.autoCreateBucket=false -s3.config="$dir/s3.json" >"$dir/weed.log" 2>&1 &
  PIDS+=($!)
  # An unsigned request is refused (403) once the gateway is up.
  s3_up() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$S3_PORT/")" = 403 ]; }
  wait_until "SeaweedFS's S3 gateway answering" 60 s3_up
  echo "s3.bucket.create -name $bucket" |
    "$weed" shell -master="127.0.0.1:$master.$master_grpc" -filer="127.0.0.1:$filer.$filer_grpc" >/dev/null
}

# The size in bytes of the backup a `dataplane backup` run logged in LOG.
backup_bytes() { # LOG
  python3 -c 'import json, sys
for line in open(sys.argv[1]):
    if line.startswith("{") and json.loads(line).get("message") == "backup written":
        print(json.loads(line)["bytes"])' "$1"
}
