#!/usr/bin/env bash
# The test run of `make test`, once the workspace is built (`cargo test
# --workspace --no-run`: two cargo processes building at once would wait on
# each other's lock): the servers and tools the tests need, the cluster, and
# every test of the workspace in lanes that run at once. Most of a lane's
# time is spent waiting on servers, pods and timers, not on the CPU, so a
# run takes the longest lane's time rather than the sum:
#
#   [data plane]  unit tests, the data plane's integration tests against
#                 servers on loopback, doc tests: everything that needs no
#                 cluster. It starts first and runs while the Go tools of
#                 the others build (Argo CD, the control plane, the
#                 Prometheus Operator, Prometheus, Perses: about 20 minutes
#                 on a cold machine, nothing on a warm one), so a cold run
#                 pays its own first builds (llama.cpp, SeaweedFS, mailpit)
#                 beside those instead of after them.
#   alone         operator/tests/chart_upgrade.rs, once the cluster is up:
#                 it deletes the cluster's SecureVault CRD to let the
#                 previous chart create it, so no other cluster test may use
#                 SecureVaults meanwhile
#   operator      then the tests against the cluster (the operator's, and
#                 the harness's own check of the cluster)
#   [images]      beside them, the tests that build the production images
#                 and ship them: docker-prod's container, Argo CD deploying
#                 to the real node, and a release published to a registry
#                 and installed from there (each with a private dockerd)
#
# Each lane is one `cargo test --workspace` with its test targets named
# (`--test NAME`, from the files in */tests/, so a new test file joins a
# lane by being there): the workspace's features stay unified, so nothing
# is rebuilt, and within a lane nothing changes (one test binary after
# another, each running its tests on its threads). Every lane runs to the
# end; the run fails if any fails. The cluster goes down whatever the
# outcome.
#
# Environment: SECUREVAULT_CACHE (where tools and the cluster live) and
# SECUREVAULT_KUBECONFIG (the kubeconfig `cluster.sh up` writes), as the
# Makefile sets them.
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
# The tests that need the cluster: the operator's, and the harness's test
# of the cluster itself.
CLUSTER_TESTS="$(targets operator | without "$ALONE $IMAGES") cluster"
# `--test NAME` runs NAME in every package that has it (both `tls`): a name
# of the operator lane is not repeated in another.
others=$(comm -23 <(targets ./*/) <(targets operator) | without "$IMAGES cluster")
args() { tr ' ' '\n' | sed '/^$/d; s/^/--test /' | tr '\n' ' '; }
: "${SECUREVAULT_KUBECONFIG:?the kubeconfig cluster.sh up writes (the Makefile sets it)}"
export SECUREVAULT_CACHE=${SECUREVAULT_CACHE:-$HOME/.cache/securevault}

(
  lane=0
  # shellcheck disable=SC2046
  cargo test --workspace --locked --no-fail-fast --lib --bins $(args <<<"$others") || lane=$?
  cargo test --workspace --locked --doc || lane=$?
  exit "$lane"
) 2>&1 | sed -u 's/^/[data plane] /' &
data_plane=$!

status=0
cluster_tests() {
  # The Prometheus Operator after the control plane: one Go module builds
  # both, so the operator reuses the Kubernetes packages just compiled.
  tests/setup/argocd.sh >/dev/null &&
    tests/cluster/cluster.sh build &&
    tests/setup/prometheus-operator.sh operator >/dev/null &&
    tests/setup/prometheus-operator.sh prometheus >/dev/null &&
    tests/setup/perses.sh >/dev/null &&
    NODE=real tests/cluster/cluster.sh up || return
  local lanes=0
  # shellcheck disable=SC2046 # one word per target
  cargo test --workspace --locked --no-fail-fast $(args <<<"$ALONE") || lanes=$?
  # shellcheck disable=SC2046
  cargo test --workspace --locked --no-fail-fast $(args <<<"$IMAGES") 2>&1 | sed -u 's/^/[images] /' &
  local images=$!
  # shellcheck disable=SC2046
  cargo test --workspace --locked --no-fail-fast $(args <<<"$CLUSTER_TESTS") || lanes=$?
  wait "$images" || lanes=$?
  return "$lanes"
}
cluster_tests || status=$?
tests/cluster/cluster.sh down || status=$?
# Each lane's status (pipefail: cargo's, not sed's).
wait "$data_plane" || status=$?
exit "$status"
