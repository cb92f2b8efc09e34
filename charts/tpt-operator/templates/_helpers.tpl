{{/* Names, labels and image references shared by every template. */}}

{{- define "tpt-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name, used for every object; at most 63 characters (DNS label). */}}
{{- define "tpt-operator.fullname" -}}
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

{{- define "tpt-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tpt-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tpt-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selects the operator pod only (not the `helm test` pod, which shares name and instance). */}}
{{- define "tpt-operator.operatorSelectorLabels" -}}
{{ include "tpt-operator.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "tpt-operator.labels" -}}
helm.sh/chart: {{ include "tpt-operator.chart" . }}
{{ include "tpt-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tpt-operator
{{- end }}

{{- define "tpt-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tpt-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}: imageRegistry is prefixed unless the repository already
names a registry (its first path part has a dot or colon, or is localhost); the tag defaults to appVersion;
a digest wins over the tag. Call with (dict "image" .Values.image "root" $).
*/}}
{{- define "tpt-operator.image" -}}
{{- $repo := .image.repository }}
{{- $first := first (splitList "/" $repo) }}
{{- $hasRegistry := and (contains "/" $repo) (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) }}
{{- if and .root.Values.imageRegistry (not $hasRegistry) }}
{{- $repo = printf "%s/%s" (trimSuffix "/" .root.Values.imageRegistry) $repo }}
{{- end }}
{{- if .image.digest }}
{{- printf "%s@%s" $repo .image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .root.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/* "true" when the operator watches the whole cluster (no watchNamespaces): a ClusterRole then. */}}
{{- define "tpt-operator.clusterWide" -}}
{{- if not .Values.watchNamespaces }}true{{- end }}
{{- end }}

{{/* Namespaces the sandbox NetworkPolicy goes into, as a YAML list. */}}
{{- define "tpt-operator.networkPolicyNamespaces" -}}
{{- $ns := .Values.sandbox.networkPolicy.namespaces | default .Values.watchNamespaces | default (list .Release.Namespace) }}
{{- toYaml (uniq $ns) }}
{{- end }}

{{/* The container security context every pod of the chart uses: Pod Security "restricted". */}}
{{- define "tpt-operator.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "tpt-operator.podSecurityContext" -}}
runAsNonRoot: true
# The operator image's user (images/operator/Dockerfile).
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}
