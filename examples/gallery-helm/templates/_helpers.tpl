{{/* Whether a service reads a ConfigMap of URLs: the one its Deployment takes with envFrom. */}}
{{- define "gallery.readsConfig" -}}
{{- if .links }}true{{ end -}}
{{- end -}}
