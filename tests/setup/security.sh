#!/usr/bin/env bash
# `make security`: the project's security checks, each run whatever the
# others' outcome, then a summary; exits non-zero when any failed or could
# not run (saying why).
#
#   1. cargo-deny licenses, bans, sources (deny.toml), offline;
#   2. cargo-deny advisories, when a local copy of the RustSec advisory
#      database exists (CARGO_DENY_ADVISORY_DB, a git checkout of
#      github.com/rustsec/advisory-db; or where `cargo deny fetch` and
#      cargo-audit keep theirs); otherwise says that advisories were not
#      checked, and why;
#   3. cargo clippy --workspace --all-targets -D warnings;
#   4. kube-score over the Helm chart rendered with default values (a Role
#      in the release's namespace),
#   5. with namespaced values (watchNamespaces: a Role per namespace), and
#   6. cluster-wide (clusterWide: a ClusterRole);
#   7. kube-score over every object the operator writes for
#      config/samples/complete.yaml, upgrade Jobs included (`operator render`).
#
# kube-score's exceptions, each justified, are in .kube-score.conf. The tools
# are built once and cached under $SECUREVAULT_CACHE (default
# ~/.cache/securevault): cargo-deny (tests/setup/cargo-deny.sh), kube-score
# (tests/setup/kube-score.sh), helm (tests/setup/helm.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."

export SECUREVAULT_CACHE=${SECUREVAULT_CACHE:-$HOME/.cache/securevault}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SECUREVAULT_CACHE/target}
# The Kubernetes release whose API versions kube-score checks against (the
# one tests/cluster/cluster.sh runs).
KUBERNETES_VERSION=v1.37
# Where cargo-deny keeps the database it fetches for its default source
# (db-urls in deny.toml): `advisory-db-` and a hash of that URL.
DEFAULT_DB=${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/advisory-db-3157b0e258782691

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

passed=() failed=() skipped=()
step() { printf '\n==> %s\n' "$1"; }
pass() { passed+=("$1"); }
fail() { failed+=("$1"); }

# --- the tools ---------------------------------------------------------------
tools_ok=1
DENY=$(tests/setup/cargo-deny.sh) || tools_ok=0
KUBE_SCORE=$(tests/setup/kube-score.sh) || tools_ok=0
HELM=$(tests/setup/helm.sh) || tools_ok=0
if [ "$tools_ok" = 0 ]; then
  echo "security.sh: a tool could not be built (see above); nothing was checked" >&2
  exit 1
fi

# --- 1. cargo-deny: licences, bans, sources -----------------------------------
name="cargo-deny licenses bans sources"
step "$name"
# --offline: no registry index or advisory fetch; the graph is Cargo.lock's.
# Duplicate versions are warnings (deny.toml); their inclusion graphs are long.
if "$DENY" --offline --locked check --hide-inclusion-graph --show-stats licenses bans sources; then
  pass "$name"
else
  fail "$name"
fi

# --- 2. cargo-deny: advisories --------------------------------------------------
name="cargo-deny advisories"
step "$name"
db= why=
if [ -n "${CARGO_DENY_ADVISORY_DB:-}" ]; then
  db=$CARGO_DENY_ADVISORY_DB
  [ -d "$db/crates" ] && [ -e "$db/.git" ] ||
    why="CARGO_DENY_ADVISORY_DB=$db is not a git checkout of the RustSec advisory database (no crates/ or .git)"
elif [ -d "$DEFAULT_DB/crates" ]; then
  db=$DEFAULT_DB
elif [ -d "$HOME/.cargo/advisory-db/crates" ] && [ -e "$HOME/.cargo/advisory-db/.git" ]; then
  db=$HOME/.cargo/advisory-db # cargo-audit's copy
fi
if [ -n "$why" ]; then
  echo "$why" >&2
  fail "$name ($why)"
elif [ -z "$db" ]; then
  why="no local RustSec advisory database: this machine reaches no git host to fetch github.com/rustsec/advisory-db; set CARGO_DENY_ADVISORY_DB to a checkout of it (or run \`cargo deny fetch db\` where GitHub is reachable) to check advisories"
  echo "advisories NOT checked: $why"
  skipped+=("$name: $why")
else
  # cargo-deny opens the database at <db-path>/advisory-db-<hash of its
  # URL>: a root of our own whose entry points at the copy found, and
  # deny.toml with db-path set to that root, so any checkout will do.
  mkdir "$work/dbs"
  ln -s "$(cd "$db" && pwd)" "$work/dbs/$(basename "$DEFAULT_DB")"
  sed "s|^db-path = .*|db-path = \"$work/dbs\"|" deny.toml >"$work/deny.toml"
  echo "advisory database: $db (commit $(git -C "$db" log -1 --format='%h of %cs' 2>/dev/null || echo unknown))"
  # Offline: the copy is used as it is; cargo-deny refuses one whose last
  # fetch is older than 90 days (maximum-db-staleness) and says so.
  if "$DENY" --offline --locked --config "$work/deny.toml" check --show-stats advisories; then
    pass "$name"
  else
    fail "$name"
  fi
fi

# --- 3. clippy ------------------------------------------------------------------
name="cargo clippy --workspace --all-targets -D warnings"
step "$name"
if cargo clippy --workspace --all-targets --locked -- -D warnings; then
  pass "$name"
else
  fail "$name"
fi

# --- 4-6. kube-score --------------------------------------------------------------
# .kube-score.conf: `SCOPE FLAG` lines, comments and blank lines aside.
flags_for() { # SCOPE: the flags that apply to it, one a line
  sed -e 's/#.*//' .kube-score.conf | awk -v scope="$1" 'NF == 2 && ($1 == "all" || $1 == scope) { print $2 } NF != 0 && NF != 2 { exit 1 }' || {
    echo "security.sh: .kube-score.conf: each line is SCOPE FLAG" >&2
    return 1
  }
}
score() { # NAME SCOPE FILE
  local name=$1 scope=$2 file=$3 list flags=() out status=0
  step "$name"
  list=$(flags_for "$scope") && [ -s "$file" ] || {
    fail "$name (no input, or .kube-score.conf unreadable)"
    return
  }
  IFS=$'\n' read -r -d '' -a flags <<<"$list" || true
  echo "objects: $(grep -cE '^kind: ' "$file"); exceptions: ${flags[*]:-none}"
  out=$("$KUBE_SCORE" score --output-format ci --color never --exit-one-on-warning \
    --kubernetes-version "$KUBERNETES_VERSION" "${flags[@]}" "$file") || status=$?
  # The ci format prints a line per object and check: findings in full,
  # passed and skipped checks counted.
  grep -vE '^\[(OK|SKIPPED)\] ' <<<"$out" || true
  echo "$(grep -c '^\[OK\] ' <<<"$out") passed, $(grep -cE '^\[(WARNING|CRITICAL)\] ' <<<"$out") findings"
  if [ "$status" = 0 ]; then pass "$name"; else fail "$name"; fi
}

chart=charts/securevault-operator
if "$HELM" template securevault-operator "$chart" --namespace securevault-system \
  >"$work/chart-default.yaml"; then
  score "kube-score: chart, default values" chart "$work/chart-default.yaml"
else
  fail "kube-score: chart, default values (helm template failed)"
fi
if "$HELM" template securevault-operator "$chart" --namespace securevault-system \
  --set 'watchNamespaces={team-a,team-b}' --set metrics.serviceMonitor.enabled=true \
  >"$work/chart-namespaced.yaml"; then
  score "kube-score: chart, namespaced values" chart "$work/chart-namespaced.yaml"
else
  fail "kube-score: chart, namespaced values (helm template failed)"
fi
if "$HELM" template securevault-operator "$chart" --namespace securevault-system \
  --set clusterWide=true >"$work/chart-cluster-wide.yaml"; then
  score "kube-score: chart, cluster-wide" chart "$work/chart-cluster-wide.yaml"
else
  fail "kube-score: chart, cluster-wide (helm template failed)"
fi

sample=config/samples/complete.yaml
if cargo build --quiet --workspace --locked --bins &&
  "$CARGO_TARGET_DIR/debug/operator" render --upgrade-jobs "$sample" >"$work/children.yaml"; then
  score "kube-score: the operator's children for $sample" children "$work/children.yaml"
else
  fail "kube-score: the operator's children for $sample (operator render failed)"
fi

# --- summary ------------------------------------------------------------------------
printf '\n==> security: %d passed, %d failed, %d not run\n' "${#passed[@]}" "${#failed[@]}" "${#skipped[@]}"
for s in "${passed[@]}"; do echo "  passed:  $s"; done
for s in "${failed[@]}"; do echo "  FAILED:  $s"; done
for s in "${skipped[@]}"; do echo "  not run: $s"; done
[ "${#failed[@]}" = 0 ]
