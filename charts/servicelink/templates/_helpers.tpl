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

{{/*
What the operator does in each namespace it watches: granted in every namespace by the ClusterRole, or, under
rbac.namespaced, by a Role in each of watchNamespaces (roles.yaml). Exactly the calls the operator makes on
namespaced kinds: servicelink.kube.RBAC_RULES, and OPTIONAL_RBAC_RULES and SECRET_RBAC_RULES only for what a
value enables (argoRollouts.enabled, secrets.enabled), and list, watch and patch on each kind that
workloadMappings maps; less the Lease, granted in the lease's namespace alone.
tests/unit/test_manifests.py and tests/unit/test_chart.py fail when they differ.
No Secrets unless secrets.enabled, no Pods, no deletes: keys leave a ConfigMap by server-side apply,
and an owned ConfigMap is deleted by the garbage collector, not by us.
*/}}
{{- define "servicelink.namespacedRules" -}}
# The ServiceLinks: watched, their finalizer set (patch), their status written.
- apiGroups: [servicelink.dev]
  resources: [servicelinks]
  verbs: [list, watch, patch]
- apiGroups: [servicelink.dev]
  resources: [servicelinks/status]
  verbs: [patch]
# What links resolve against.
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch]
# The ConfigMaps it writes: server-side apply is a patch; one that creates needs create.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, patch]
# Its Events; a repeated one is patched (its count) rather than created again.
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
# Whether a linked Service has anything ready behind it.
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
# The consumers it rolls, by patching one pod-template annotation.
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [list, watch, patch]
# A CronJob's pod template: patched like theirs, so its next Jobs read the current values.
- apiGroups: [batch]
  resources: [cronjobs]
  verbs: [list, watch, patch]
# Jobs: their pod template cannot change, so they are only read, and listed in status.staleJobs.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [list, watch]
{{- if .Values.argoRollouts.enabled }}
# Argo Rollouts (argoRollouts.enabled): a Rollout's pod template, patched like a Deployment's.
- apiGroups: [argoproj.io]
  resources: [rollouts]
  verbs: [list, watch, patch]
{{- end }}
{{- if .Values.secrets.enabled }}
# URLs with credentials (secrets.enabled): the Secrets labelled servicelink.dev/shared=true are listed and
# watched by that label alone; the Secrets ServiceLinks name in spec.secretName are read and written by
# server-side apply. RBAC cannot narrow these verbs to those Secrets: the operator narrows itself.
- apiGroups: [""]
  resources: [secrets]
  verbs: [list, watch, get, create, patch]
{{- end }}
{{- range .Values.workloadMappings }}
# A mapped kind (workloadMappings): its pod template, patched like a Deployment's.
- apiGroups: [{{ .group }}]
  resources: [{{ .plural }}]
  verbs: [list, watch, patch]
{{- end }}
{{- end -}}

{{/*
Leader election (replicas > 1): replicas share one Lease, in the release's namespace; only its holder reconciles.
*/}}
{{- define "servicelink.leaseRules" -}}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, update]
{{- end -}}
