{{/* Whether service "name" reads a ConfigMap of URLs: the one its Deployment takes with envFrom. */}}
{{- define "gallery.readsConfig" -}}
{{- if or .serviceUrls .serviceHosts }}true{{ end -}}
{{- end -}}
