{{/* Names, labels and the checks that stop a values set that cannot work. */}}

{{- define "spillway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "spillway.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "spillway.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "spillway.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "spillway.workerName" -}}
{{- printf "%s-worker" (include "spillway.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "spillway.workerServiceAccountName" -}}
{{- printf "%s-worker" (include "spillway.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "spillway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "spillway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels; pass (dict "root" $ "component" "server"). */}}
{{- define "spillway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spillway.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "spillway.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "spillway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "spillway.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "spillway.postgres" -}}
{{- if .Values.database.postgresUrlSecret.name -}}true{{- end -}}
{{- end -}}

{{- define "spillway.blobs" -}}
{{- default "file:///var/lib/spillway/blobs" .Values.storage.blobs -}}
{{- end -}}

{{/* "kubernetes" when the server scales the worker Deployment itself, "external" under KEDA. */}}
{{- define "spillway.workerPoolProvider" -}}
{{- if .Values.keda.enabled -}}external{{- else -}}kubernetes{{- end -}}
{{- end -}}

{{/* Whether any pool uses the Kubernetes provider, so the server needs the Role. */}}
{{- define "spillway.usesKubernetesProvider" -}}
{{- $uses := and .Values.workers.enabled (not .Values.keda.enabled) -}}
{{- range .Values.extraPools -}}
{{- if eq (toString .provider) "kubernetes" -}}{{- $uses = true -}}{{- end -}}
{{- end -}}
{{- if $uses -}}true{{- end -}}
{{- end -}}

{{/* A TOML value: scalars as JSON (valid TOML for them), lists and maps (as inline tables)
element by element, so nested maps (labels, node_selector) stay TOML. */}}
{{- define "spillway.tomlValue" -}}
{{- if kindIs "map" . -}}
{{- $parts := list -}}
{{- range $k, $v := . -}}
{{- $key := regexMatch "^[A-Za-z0-9_-]+$" $k | ternary $k (toJson $k) -}}
{{- $parts = append $parts (printf "%s = %s" $key (include "spillway.tomlValue" $v)) -}}
{{- end -}}
{ {{ join ", " $parts }} }
{{- else if kindIs "slice" . -}}
{{- $items := list -}}
{{- range . -}}
{{- $items = append $items (include "spillway.tomlValue" .) -}}
{{- end -}}
[{{ join ", " $items }}]
{{- else -}}
{{- toJson . -}}
{{- end -}}
{{- end -}}

{{/* Values that render fine but could not run: fail with what to change. */}}
{{- define "spillway.checks" -}}
{{- $replicas := int .Values.server.replicas -}}
{{- if gt $replicas 1 -}}
{{- if not (include "spillway.postgres" .) -}}
{{- fail "server.replicas > 1 needs PostgreSQL: set database.postgresUrlSecret.name (SQLite on a volume serves one replica)" -}}
{{- end -}}
{{- if .Values.server.persistence.enabled -}}
{{- fail "server.replicas > 1 cannot share one ReadWriteOnce volume: set server.persistence.enabled=false" -}}
{{- end -}}
{{- if hasPrefix "file://" (include "spillway.blobs" .) -}}
{{- fail "server.replicas > 1 needs a shared blob store: set storage.blobs to s3://bucket/prefix or gs://bucket/prefix" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.workers.enabled (gt (int .Values.workers.min) (int .Values.workers.max)) -}}
{{- fail "workers.min is larger than workers.max" -}}
{{- end -}}
{{- if and .Values.workers.jobExecutor.enabled (not .Values.workers.enabled) -}}
{{- fail "workers.jobExecutor.enabled needs workers.enabled=true" -}}
{{- end -}}
{{- if and .Values.keda.enabled (not .Values.workers.enabled) -}}
{{- fail "keda.enabled scales the worker Deployment: set workers.enabled=true or keda.enabled=false" -}}
{{- end -}}
{{- if and (include "spillway.usesKubernetesProvider" .) (not .Values.rbac.create) (not .Values.serviceAccount.name) -}}
{{- fail "a pool uses the kubernetes provider but rbac.create=false and no serviceAccount.name is given: the server could not scale it" -}}
{{- end -}}
{{- end -}}
