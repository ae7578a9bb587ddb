{{/* The name every object of the release shares. */}}
{{- define "securevault-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "securevault-operator.serviceAccountName" -}}
{{- default (include "securevault-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* Selector labels: never change them, a Deployment's selector is immutable. */}}
{{- define "securevault-operator.selectorLabels" -}}
app.kubernetes.io/name: securevault-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "securevault-operator.labels" -}}
{{ include "securevault-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/*
The namespaces whose SecureVaults the operator manages, as a JSON list (read
it with `fromJsonArray`): those given, or the release's own when none is;
empty in cluster-wide mode. The RBAC and the Deployment's WATCH_NAMESPACE
both come from here, so the operator never watches where it has no rights,
nor has rights where it does not watch.
*/}}
{{- define "securevault-operator.watchNamespaces" -}}
{{- if .Values.clusterWide -}}
{{- if .Values.watchNamespaces -}}
{{- fail (printf "clusterWide: true grants the operator every namespace, yet watchNamespaces lists %s: set one or the other (clusterWide: true with watchNamespaces: [], or watchNamespaces with clusterWide: false)" (join ", " .Values.watchNamespaces)) -}}
{{- end -}}
{{- list | toJson -}}
{{- else -}}
{{- default (list .Release.Namespace) .Values.watchNamespaces | toJson -}}
{{- end -}}
{{- end -}}

{{/*
A map as `key=value,key=value`, in key order (what MONITORING_LABELS reads).
*/}}
{{- define "securevault-operator.pairs" -}}
{{- $pairs := list -}}
{{- range $k, $v := . -}}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{/*
The registry every image comes from: imageRegistry, else the parent chart's
global.imageRegistry; empty when neither is set.
*/}}
{{- define "securevault-operator.registry" -}}
{{- $global := .Values.global | default dict -}}
{{- default $global.imageRegistry .Values.imageRegistry | trimSuffix "/" -}}
{{- end -}}

{{/* REPOSITORY under the registry, if any: `(list . REPOSITORY)`. */}}
{{- define "securevault-operator.inRegistry" -}}
{{- $registry := include "securevault-operator.registry" (index . 0) -}}
{{- if $registry -}}{{ printf "%s/%s" $registry (index . 1) }}{{- else -}}{{ index . 1 }}{{- end -}}
{{- end -}}

{{/* The operator's image reference (the test hook runs it too). */}}
{{- define "securevault-operator.image" -}}
{{- include "securevault-operator.inRegistry" (list . .Values.image.repository) -}}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}
