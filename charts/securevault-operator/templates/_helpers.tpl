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
