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
