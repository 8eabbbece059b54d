{{- define "skyvault-dev.labels" -}}
app.kubernetes.io/part-of: skyvault-dev
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
{{- define "skyvault-dev.pg" -}}{{ .Release.Name }}-postgres{{- end -}}
{{- define "skyvault-dev.s3" -}}{{ .Release.Name }}-s3{{- end -}}
