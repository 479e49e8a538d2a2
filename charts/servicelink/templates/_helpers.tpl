{{/*
The name of every object: the release name when it holds "servicelink", else "<release>-servicelink".
*/}}
{{- define "servicelink.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
The selector: the name only, as manifests/ has always had it, since a Deployment's selector cannot
change. One operator acts on the whole cluster, so one release of this chart runs per cluster.
*/}}
{{- define "servicelink.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
{{- end -}}

{{- define "servicelink.labels" -}}
{{ include "servicelink.selectorLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/*
Leader election is what makes more than one replica safe: without it each would act on every ServiceLink.
*/}}
{{- define "servicelink.leaderElect" -}}
{{- if gt (int .Values.replicas) 1 }}true{{ end -}}
{{- end -}}
