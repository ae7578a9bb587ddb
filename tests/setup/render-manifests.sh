#!/usr/bin/env bash
# Renders the Helm chart into the kustomize bases, so the chart stays the one
# place where the operator's Deployment and RBAC are written:
#
#   config/rbac/rbac.yaml        ServiceAccount, Role(Binding), leader-election Role(Binding),
#                                the metrics' review ClusterRole(Binding) and metrics-reader ClusterRole
#   config/manager/manager.yaml  Deployment, metrics Service, PodDisruptionBudget, NetworkPolicy
#   config/monitoring/servicemonitor.yaml   the operator's ServiceMonitor
#   config/monitoring/dashboard.yaml        the Grafana dashboard of every SecureVault
#
# Release `securevault-operator` in namespace `securevault-system`, default
# values: the operator watches securevault-system only, with a Role there and
# no cluster-wide rights. `make manifests` runs it; operator/tests/kustomize.rs fails when the
# files differ from what it would write (`--check` does that comparison).
set -euo pipefail
cd "$(dirname "$0")/../.."
HELM=$(tests/setup/helm.sh)
RELEASE=securevault-operator
NAMESPACE=securevault-system

render() { # OUT TEMPLATE... (each template as its path in the chart)
  local out=$1 args=() t
  shift
  for t in "$@"; do args+=(--show-only "$t"); done
  {
    echo "# Rendered from charts/securevault-operator by tests/setup/render-manifests.sh"
    echo "# (make manifests): edit the chart, not this file."
    "$HELM" template "$RELEASE" charts/securevault-operator --namespace "$NAMESPACE" \
      --set metrics.serviceMonitor.enabled=true "${args[@]}" |
      sed -e '/^# Source: /d' -e '/^\s*helm.sh\/chart: /d' -e 's/^\(\s*app.kubernetes.io\/managed-by: \)Helm$/\1kustomize/'
  } >"$out"
}

check=
[ "${1:-}" = --check ] && check=1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
render "$dir/rbac.yaml" templates/serviceaccount.yaml templates/rbac.yaml templates/metrics-rbac.yaml
render "$dir/manager.yaml" templates/deployment.yaml templates/service.yaml templates/pdb.yaml \
  templates/networkpolicy.yaml
render "$dir/servicemonitor.yaml" templates/servicemonitor.yaml
render "$dir/dashboard.yaml" templates/dashboard.yaml

status=0
for pair in rbac.yaml:config/rbac/rbac.yaml manager.yaml:config/manager/manager.yaml \
  servicemonitor.yaml:config/monitoring/servicemonitor.yaml dashboard.yaml:config/monitoring/dashboard.yaml; do
  from=$dir/${pair%%:*} to=${pair#*:}
  if [ -n "$check" ]; then
    cmp -s "$from" "$to" || {
      echo "$to is not what the chart renders: run make manifests" >&2
      status=1
    }
  else
    cp "$from" "$to"
  fi
done
exit $status
