{{/* Chart name, overridable. */}}
{{- define "phlo-dagster.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name when it already contains the chart name, else release-chart. */}}
{{- define "phlo-dagster.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of cluster-scoped objects: unique per release namespace and release. */}}
{{- define "phlo-dagster.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "phlo-dagster.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "phlo-dagster.selectorLabels" -}}
app.kubernetes.io/name: {{ include "phlo-dagster.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "phlo-dagster.labels" -}}
{{ include "phlo-dagster.selectorLabels" . }}
app.kubernetes.io/part-of: phlo-dagster
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "phlo-dagster.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "phlo-dagster.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "phlo-dagster.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Namespaces the operator watches in namespaced mode, as a JSON list (the release namespace by default). */}}
{{- define "phlo-dagster.watchedNamespaces" -}}
{{- if .Values.watch.namespaces }}
{{- .Values.watch.namespaces | uniq | toJson }}
{{- else }}
{{- list .Release.Namespace | toJson }}
{{- end }}
{{- end }}

{{/* Namespaces that get the operator's Role in namespaced mode: the watched ones plus rbac.runNamespaces. */}}
{{- define "phlo-dagster.roleNamespaces" -}}
{{- concat (include "phlo-dagster.watchedNamespaces" . | fromJsonArray) .Values.rbac.runNamespaces | uniq | toJson }}
{{- end }}

{{- define "phlo-dagster.metricsServiceName" -}}
{{- printf "%s-metrics" (include "phlo-dagster.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Security context of every container: passes Pod Security "restricted". */}}
{{- define "phlo-dagster.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "phlo-dagster.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}
