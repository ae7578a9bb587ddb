#!/usr/bin/env bash
# Line coverage of the whole workspace's tests (`make coverage`), measured
# with cargo-llvm-cov, and the figure written into docs/testing.md between the
# markers <!-- coverage --> and <!-- /coverage -->.
#
# Every test runs, unit and integration alike (the integration tests start
# real PostgreSQL and Redis through the testkit crate; `make coverage`
# installs the Debian packages). testkit itself is left out of the figure:
# it is test infrastructure, and counting it would reward tests for
# exercising their own scaffolding.
#
# When tests fail, the figure for what ran is still printed (and written to
# the README), then the failures are listed and the script exits non-zero.
#
# Environment:
#   CARGO_TARGET_DIR           defaults to ~/.cache/securevault/target, like the Makefile
#   CARGO_LLVM_COV_TARGET_DIR  instrumented builds; defaults to
#                              ~/.cache/securevault/coverage-target
#   LLVM_COV, LLVM_PROFDATA    the LLVM tools; default to Debian's llvm-N
#                              matching rustc's LLVM major version
set -euo pipefail

CACHE_DIR=${CACHE_DIR:-$HOME/.cache/securevault}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE_DIR/target}
# Instrumented artefacts differ from normal ones (other RUSTFLAGS); keeping
# them apart means neither `make test` nor `make coverage` rebuilds the
# other's dependencies from scratch every time.
export CARGO_LLVM_COV_TARGET_DIR=${CARGO_LLVM_COV_TARGET_DIR:-$CACHE_DIR/coverage-target}
export PATH="$HOME/.cargo/bin:$PATH"

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
README=docs/testing.md

die() {
  echo "coverage: $*" >&2
  exit 1
}

# cargo-llvm-cov is not packaged by Debian; crates.io is. --locked builds it
# with the dependency versions its authors tested.
if ! cargo llvm-cov --version >/dev/null 2>&1; then
  echo "==> installing cargo-llvm-cov"
  cargo install --locked cargo-llvm-cov
fi

# The profile format is tied to LLVM's version, so llvm-cov and llvm-profdata
# must come from the same LLVM major version as rustc. rustup's llvm-tools
# component would provide them but cannot be downloaded here; Debian's llvm-N
# package provides the same tools (make coverage installs llvm-22).
llvm_major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
[ -n "$llvm_major" ] || die "cannot read rustc's LLVM version from 'rustc -vV'"
llvm_tool() {
  local name=$1 candidate
  for candidate in "/usr/bin/$name-$llvm_major" "/usr/lib/llvm-$llvm_major/bin/$name"; do
    if [ -x "$candidate" ]; then
      echo "$candidate"
      return
    fi
  done
  die "$name for LLVM $llvm_major not found (install Debian's llvm-$llvm_major, or set ${2})"
}
# Plain assignments, not `export X=$(…)`: export would hide llvm_tool's
# failure from set -e and carry on with an empty path.
if [ -z "${LLVM_COV:-}" ]; then LLVM_COV=$(llvm_tool llvm-cov LLVM_COV); fi
if [ -z "${LLVM_PROFDATA:-}" ]; then LLVM_PROFDATA=$(llvm_tool llvm-profdata LLVM_PROFDATA); fi
export LLVM_COV LLVM_PROFDATA
echo "==> rustc's LLVM is $llvm_major; using $LLVM_COV and $LLVM_PROFDATA"

# Applied to the report only, so testkit's own tests still run.
IGNORE='(^|/)testkit/'

TMP=$(mktemp -d "${TMPDIR:-/tmp}/securevault-coverage.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
TEST_LOG="$TMP/test.log"

# Run the tests and build the report in two steps: with --no-report the test
# run's exit status is the tests' own, and the report is produced from the
# profiles written so far even when some tests failed. --no-fail-fast lets
# every test binary run, so the figure reflects all that could run.
echo "==> running the workspace's tests, instrumented"
test_status=0
cargo llvm-cov --no-report --workspace --locked --no-fail-fast 2>&1 | tee "$TEST_LOG" ||
  test_status=$?

echo "==> coverage report (testkit excluded)"
cargo llvm-cov report --summary-only --ignore-filename-regex "$IGNORE" ||
  die "no report: the tests probably did not build (see above)"
cargo llvm-cov report --summary-only --ignore-filename-regex "$IGNORE" --json \
  --output-path "$TMP/summary.json" >/dev/null ||
  die "could not export the coverage summary"

# The JSON export is llvm-cov's documented format; its totals are the TOTAL
# line of the table above, without depending on the table's column layout.
percent=$(python3 -c '
import json, sys
totals = json.load(open(sys.argv[1]))["data"][0]["totals"]["lines"]
print("%.2f" % totals["percent"] if totals["count"] else "")
' "$TMP/summary.json")
[ -n "$percent" ] || die "the report counts no lines at all"

echo
echo "line coverage: $percent %"

# Only the text between the markers changes, so the rest of the README (which
# other people edit) is left exactly as it is.
figure="$percent % of lines (make coverage, $(date -u +%Y-%m-%d))"
if grep -q '<!-- coverage -->.*<!-- /coverage -->' "$README" 2>/dev/null; then
  sed -i -E "s|(<!-- coverage -->).*(<!-- /coverage -->)|\1$figure\2|" "$README"
  echo "updated $README: $figure"
else
  echo "warning: $README has no '<!-- coverage -->…<!-- /coverage -->' markers on one line; not updated" >&2
fi

if [ "$test_status" -ne 0 ]; then
  echo >&2
  echo "coverage: some tests failed (exit status $test_status); the figure covers what ran." >&2
  # Individual tests, then the test binaries cargo names for a re-run.
  failed=$(grep -E '^test .* \.\.\. FAILED$|^error: test failed, to rerun pass|^ +`-p [^`]+`$' "$TEST_LOG" || true)
  if [ -n "$failed" ]; then
    echo "failed:" >&2
    sed 's/^/  /' <<<"$failed" >&2
  fi
  exit "$test_status"
fi
