#!/usr/bin/env bash
# The test run of `make test`: every test of the workspace, in three lanes
# at once, after one test that must run alone. Most of each lane's time is
# spent waiting on servers, pods and timers, not on the CPU, so a run takes
# the longest lane's time rather than the sum:
#
#   alone first   operator/tests/chart_upgrade.rs, which deletes the
#                 cluster's SecureVault CRD to let the previous chart create
#                 it: no other test may use SecureVaults meanwhile
#   operator      the operator's integration tests against the cluster
#   [images]      the tests that build the production images and ship them:
#                 docker-prod's container, Argo CD deploying to the real
#                 node, and a release published to a registry and installed
#                 from there (each with a private dockerd)
#   [data plane]  unit tests, the data plane's and the harness's integration
#                 tests against servers on loopback, doc tests
#
# Each lane is one `cargo test --workspace` with its test targets named
# (`--test NAME`, from the files in */tests/, so a new test file joins a
# lane by being there): the workspace's features stay unified, so nothing
# is rebuilt, and within a lane nothing changes (one test binary after
# another, each running its tests on its threads). Every lane runs to the
# end; the run fails if any fails. The tests must be built first (`cargo
# test --workspace --no-run`, as `make test` does): two cargo processes
# building at once would wait on each other's lock.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit

ALONE="chart_upgrade"
IMAGES="docker_prod gitops publish"

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
# Names one per line, without those of the lists given.
without() { grep -vxF -f <(tr ' ' '\n' <<<"$*") || true; }
operator=$(targets operator | without "$ALONE $IMAGES")
# `--test NAME` runs NAME in every package that has it (both `tls`): a name
# of the operator lane is not repeated in another.
others=$(comm -23 <(targets ./*/) <(targets operator) | without "$IMAGES")
args() { tr ' ' '\n' | sed '/^$/d; s/^/--test /' | tr '\n' ' '; }

status=0
# shellcheck disable=SC2046 # one word per target
cargo test --workspace --locked --no-fail-fast $(args <<<"$ALONE") || status=$?

(
  lane=0
  # shellcheck disable=SC2046
  cargo test --workspace --locked --no-fail-fast --lib --bins $(args <<<"$others") || lane=$?
  cargo test --workspace --locked --doc || lane=$?
  exit "$lane"
) 2>&1 | sed -u 's/^/[data plane] /' &
data_plane=$!
# shellcheck disable=SC2046
cargo test --workspace --locked --no-fail-fast $(args <<<"$IMAGES") 2>&1 | sed -u 's/^/[images] /' &
images=$!
# shellcheck disable=SC2046
cargo test --workspace --locked --no-fail-fast $(args <<<"$operator") || status=$?
# Each lane's status (pipefail: cargo's, not sed's).
wait "$data_plane" || status=$?
wait "$images" || status=$?
exit "$status"
