#!/usr/bin/env bash
# The test run of `make test`: every test of the workspace, in two lanes at
# once. The operator's integration tests (against the cluster: the longest
# lane, about 7 minutes warm) run beside all the others (unit tests, the
# data plane's and the harness's integration tests against servers on
# loopback, doc tests: about 4 minutes), so a run takes the longer lane's
# time rather than the sum. Most of either lane's time is spent waiting on
# servers, pods and timers, not on the CPU.
#
# Each lane is one `cargo test --workspace` with its test targets named
# (`--test NAME`, from the files in */tests/, so a new test file joins a
# lane by being there): the workspace's features stay unified, so nothing
# is rebuilt, and within a lane nothing changes (one test binary after
# another, each running its tests on its threads). The data plane lane's
# lines carry a "[data plane]" prefix. Both lanes run to the end; the run
# fails if either fails. The tests must be built first (`cargo test
# --workspace --no-run`, as `make test` does): two cargo processes building
# at once would wait on each other's lock.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The integration test targets under DIR/tests: each top-level .rs file and
# each directory with a main.rs.
targets() { # DIR...
  local dir f
  for dir in "$@"; do
    for f in "$dir"/tests/*.rs "$dir"/tests/*/main.rs; do
      [ -e "$f" ] || continue
      f=${f%/main.rs}
      f=${f##*/}
      echo "${f%.rs}"
    done
  done | sort -u
}
operator=$(targets operator)
# `--test NAME` runs NAME in every package that has it (both `tls`): a name
# of the operator lane is not repeated in the other.
others=$(comm -23 <(targets */) <(echo "$operator"))
args() { sed 's/^/--test /' | tr '\n' ' '; }

(
  status=0
  # shellcheck disable=SC2046 # one word per target
  cargo test --workspace --locked --no-fail-fast --lib --bins $(args <<<"$others") || status=$?
  cargo test --workspace --locked --doc || status=$?
  exit "$status"
) 2>&1 | sed -u 's/^/[data plane] /' &
lane=$!
status=0
# shellcheck disable=SC2046
cargo test --workspace --locked --no-fail-fast $(args <<<"$operator") || status=$?
# The lane's status (pipefail: cargo's, not sed's).
wait "$lane" || status=$?
exit "$status"
