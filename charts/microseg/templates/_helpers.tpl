{{- define "microseg.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "microseg.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "microseg.labels" -}}
app.kubernetes.io/name: {{ include "microseg.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "microseg.selectorLabels" -}}
app.kubernetes.io/name: {{ include "microseg.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* "true" when the dashboard is served (a token Secret or a proxy user header). */}}
{{- define "microseg.dashboardOn" -}}
{{- if or .Values.dashboard.tokenSecret.name .Values.dashboard.userHeader -}}true{{- end -}}
{{- end }}
