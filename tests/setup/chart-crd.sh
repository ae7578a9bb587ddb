#!/usr/bin/env bash
# Writes the Helm chart's CRD template (charts/securevault-operator/templates/crd.yaml)
# from crds/securevault.yaml, which `operator crd` generates: `make crds` runs it.
#
# The CRD is a template, not a file in the chart's crds/ folder, because Helm
# installs crds/ once and never upgrades it: a new field would be refused
# until someone applied the CRD by hand. As a template it is upgraded by
# `helm upgrade` like everything else (as cert-manager's chart does), behind
# two values: crds.enabled (off when the CRD is managed elsewhere) and
# crds.keep (`helm.sh/resource-policy: keep`, and Argo CD's `Delete=false`:
# uninstalling must not delete the CRD, which would delete every SecureVault
# and all they own).
set -euo pipefail
cd "$(dirname "$0")/../.."
crd=crds/securevault.yaml
out=charts/securevault-operator/templates/crd.yaml
# The chart renders this text verbatim; template actions in it would be run.
if grep -q '{{' "$crd"; then
  echo "$crd contains '{{', which Helm would take for a template action" >&2
  exit 1
fi
{
  echo '{{- if .Values.crds.enabled }}'
  echo '# Written by tests/setup/chart-crd.sh (make crds) from crds/securevault.yaml: edit'
  echo "# the operator's types (operator/src/api), not this file."
  # The generated header's comments are for the file in crds/.
  sed -e '/^#/d' "$crd" | awk '
    { print }
    /^  name: securevaults.securevault.io$/ && !done {
      print "  labels:"
      print "    {{- include \"securevault-operator.labels\" . | nindent 4 }}"
      print "  {{- if .Values.crds.keep }}"
      print "  annotations:"
      print "    helm.sh/resource-policy: keep"
      print "    # The same for Argo CD, which syncs the chart without Helm."
      print "    argocd.argoproj.io/sync-options: Delete=false"
      print "  {{- end }}"
      done = 1
    }'
  echo '{{- end }}'
} >"$out.new"
grep -q 'helm.sh/resource-policy' "$out.new" || {
  echo "no metadata.name line in $crd to put the labels under" >&2
  exit 1
}
mv "$out.new" "$out"
