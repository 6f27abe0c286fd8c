{{/* The chart's name, or nameOverride. */}}
{{- define "licensed.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's objects' name: fullnameOverride, else RELEASE-licensed (RELEASE when it already says licensed). */}}
{{- define "licensed.fullname" -}}
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

{{- define "licensed.selectorLabels" -}}
app.kubernetes.io/name: {{ include "licensed.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The server pods (the Deployment's): what the Services, the PDB and topology spread select. */}}
{{- define "licensed.serverSelectorLabels" -}}
{{ include "licensed.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "licensed.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "licensed.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: coditect
{{- end }}

{{- define "licensed.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "licensed.tlsSecretName" -}}
{{- if .Values.tls.certManager.enabled }}
{{- printf "%s-tls" (include "licensed.fullname" .) }}
{{- else }}
{{- .Values.tls.existingSecret }}
{{- end }}
{{- end }}

{{/* The checks no JSON schema can express; a failure stops the render with one line. */}}
{{- define "licensed.validate" -}}
{{- if and (eq .Values.mode "production") (not .Values.production.existingSecret) }}
{{- fail "mode production needs production.existingSecret: a Secret holding the Postgres and Redis URLs (README.md, Production)" }}
{{- end }}
{{- if and (not .Values.tls.existingSecret) (not .Values.tls.certManager.enabled) }}
{{- fail "licensed needs a certificate for the names clients use (the Service's, the load balancer's): set tls.existingSecret or tls.certManager.enabled" }}
{{- end }}
{{- if and .Values.tls.existingSecret .Values.tls.certManager.enabled }}
{{- fail "set tls.existingSecret or tls.certManager.enabled, not both" }}
{{- end }}
{{- if and .Values.tls.certManager.enabled (not .Values.tls.certManager.issuerRef.name) }}
{{- fail "tls.certManager.enabled needs tls.certManager.issuerRef.name" }}
{{- end }}
{{- if and (eq .Values.mode "embedded") (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled) }}
{{- fail "mode embedded runs exactly one replica (its SQLite database is on one volume): set replicaCount 1 and leave autoscaling off, or use mode production" }}
{{- end }}
{{- if le (int .Values.lifecycle.terminationGracePeriodSeconds) (add .Values.lifecycle.preStopSleepSeconds .Values.config.drainTimeoutSeconds | int) }}
{{- fail (printf "lifecycle.terminationGracePeriodSeconds (%d) must exceed lifecycle.preStopSleepSeconds + config.drainTimeoutSeconds (%d), or replicas are killed mid-drain" (int .Values.lifecycle.terminationGracePeriodSeconds) (add .Values.lifecycle.preStopSleepSeconds .Values.config.drainTimeoutSeconds | int)) }}
{{- end }}
{{- if and .Values.keyEncryption.existingSecret (not .Values.keyEncryption.ids) }}
{{- fail "keyEncryption.existingSecret needs keyEncryption.ids: the KEK ids in that Secret, the sealing one first" }}
{{- end }}
{{- if and .Values.keyEncryption.ids (not .Values.keyEncryption.existingSecret) }}
{{- fail "keyEncryption.ids needs keyEncryption.existingSecret: the Secret that holds them" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- end }}

{{/* The container security context every licensed container runs with. */}}
{{- define "licensed.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "licensed.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Environment shared by the server and the migration Job: backends and logging. */}}
{{- define "licensed.backendEnv" -}}
- name: LICENSED_DATA_DIR
  value: /var/lib/licensed
- name: LICENSED_LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
- name: LICENSED_LOG_FORMAT
  value: {{ .Values.config.logFormat | quote }}
{{- if eq .Values.mode "production" }}
- name: LICENSED_POSTGRES_URL_FILE
  value: /etc/licensed/backends/postgres-url
{{- end }}
{{- end }}

{{/* The backend URLs, mounted as files (never in the environment). */}}
{{- define "licensed.backendsVolume" -}}
- name: backends
  secret:
    secretName: {{ .Values.production.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.production.postgresURLKey }}
        path: postgres-url
      - key: {{ .Values.production.redisURLKey }}
        path: redis-url
{{- end }}
