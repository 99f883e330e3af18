{{- define "ebisu.fullname" -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ebisu.serviceAccountName" -}}
{{- default (include "ebisu.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "ebisu.labels" -}}
app.kubernetes.io/name: ebisu-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "ebisu.selectorLabels" -}}
app.kubernetes.io/name: ebisu-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ebisu.image" -}}
{{- printf "%s:%s" .image.repository (default .chart.AppVersion .image.tag) -}}
{{- end -}}
