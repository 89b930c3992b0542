{{/*
Names. Every object is <fullname>-<component>; the Services keep the compose names' ports.
*/}}
{{- define "faultmaven.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "faultmaven.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "faultmaven.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{ include "faultmaven.selectorLabels" . }}
{{- end -}}

{{- define "faultmaven.selectorLabels" -}}
app.kubernetes.io/name: {{ include "faultmaven.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
What each component is and is given: its port (the compose ports), the databases whose
URL it reads, and which secrets and stores it needs. The one place that says so; the
templates and tests/test_helm_chart.py read it.
*/}}
{{- define "faultmaven.wiring" -}}
ports: {gateway: 8000, auth: 8001, session: 8002, case: 8003, knowledge: 8004, evidence: 8005, agent: 8006}
modules: {auth: auth_service, case: case_service, knowledge: knowledge_service, evidence: evidence_service}
databases:
  auth: [auth]
  case: [case]
  knowledge: [knowledge]
  evidence: [evidence]
  # The worker runs the knowledge ingestion and the case cleanup against their databases.
  worker: [knowledge, case]
serviceClient: [auth, agent, evidence, knowledge, worker, beat]
agentSecrets: [agent, worker]
storage: [evidence, knowledge, worker]
{{- end -}}

{{- define "faultmaven.image" -}}
{{- $c := index .root.Values .component -}}
{{- printf "%s%s:%s" .root.Values.image.registry $c.image.repository (default .root.Chart.AppVersion .root.Values.image.tag) -}}
{{- end -}}

{{- define "faultmaven.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
{{- end -}}

{{/*
The environment of one component's container: the topology (as docker-compose.yml sets
it), the stores, and only the secrets this component uses (ADR 0135).
*/}}
{{- define "faultmaven.env" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $c := .component -}}
{{- $w := fromYaml (include "faultmaven.wiring" $root) -}}
{{- $fullname := include "faultmaven.fullname" $root -}}
- name: FM_ENVIRONMENT
  value: {{ $v.environment | quote }}
- name: FM_DEPLOYMENT
  value: {{ $v.deployment | quote }}
- name: FM_LOG_LEVEL
  value: {{ $v.logLevel | quote }}
- name: FM_LOG_FORMAT
  value: "json"
- name: FM_HOST
  value: "0.0.0.0"
- name: FM_DATA_DIR
  value: "/data"
{{ include "faultmaven.secretEnv" (dict "name" "FM_REDIS_URL" "secret" $v.redis.existingSecret "key" $v.redis.key) }}
- name: FM_CHROMA_URL
  value: {{ required "chroma.url is required" $v.chroma.url | quote }}
{{- range $peer, $port := $w.ports }}
- name: FM_{{ upper $peer }}_URL
  value: {{ printf "http://%s-%s:%v" $fullname $peer $port | quote }}
{{- end }}
{{- if hasKey $w.ports $c }}
- name: FM_{{ upper $c }}_PORT
  value: {{ index $w.ports $c | quote }}
{{- end }}
{{- range $db := (get $w.databases $c | default list) }}
{{ include "faultmaven.secretEnv" (dict "name" (printf "FM_%s_DATABASE_URL" (upper $db)) "secret" $v.postgresql.existingSecret "key" (index $v.postgresql.keys $db)) }}
{{- end }}
{{- if has $c $w.storage }}
- name: FM_STORAGE_URL
  value: {{ required "storage.url is required" $v.storage.url | quote }}
{{- with $v.storage.s3.endpointUrl }}
- name: FM_STORAGE_S3_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- with $v.storage.s3.region }}
- name: FM_STORAGE_S3_REGION
  value: {{ . | quote }}
{{- end }}
{{- with $v.storage.s3.existingSecret }}
{{ include "faultmaven.secretEnv" (dict "name" "FM_STORAGE_S3_ACCESS_KEY_ID" "secret" . "key" $v.storage.s3.accessKeyIdKey) }}
{{ include "faultmaven.secretEnv" (dict "name" "FM_STORAGE_S3_SECRET_ACCESS_KEY" "secret" . "key" $v.storage.s3.secretAccessKeyKey) }}
{{- end }}
{{- end }}
{{- if has $c $w.serviceClient }}
{{ include "faultmaven.secretEnv" (dict "name" "FM_SERVICE_CLIENT_SECRET" "secret" $v.secrets.serviceClient.existingSecret "key" $v.secrets.serviceClient.key) }}
{{- end }}
{{- if has $c $w.agentSecrets }}
{{ include "faultmaven.secretEnv" (dict "name" "FM_AGENT_REDACTION_KEY" "secret" $v.secrets.redactionKey.existingSecret "key" $v.secrets.redactionKey.key) }}
{{- with $v.secrets.providers.existingSecret }}
{{ include "faultmaven.secretEnv" (dict "name" "FM_AGENT_PROVIDERS" "secret" . "key" $v.secrets.providers.key) }}
{{- end }}
{{- end }}
{{- if eq $c "auth" }}
- name: FM_AUTH_SIGNING_KEY_PATH
  value: {{ printf "/keys/current/%s" $v.auth.signingKey.key | quote }}
{{- if $v.auth.previousKeys }}
{{- $paths := list }}
{{- range $i, $k := $v.auth.previousKeys }}
{{- $paths = append $paths (printf "/keys/previous/%d/%s" $i $k.key) }}
{{- end }}
- name: FM_AUTH_PREVIOUS_KEY_PATHS
  value: {{ toJson $paths | quote }}
{{- end }}
{{- with $v.secrets.bootstrapAdmin.existingSecret }}
{{ include "faultmaven.secretEnv" (dict "name" "FM_AUTH_BOOTSTRAP_ADMIN_USERNAME" "secret" . "key" $v.secrets.bootstrapAdmin.usernameKey) }}
{{ include "faultmaven.secretEnv" (dict "name" "FM_AUTH_BOOTSTRAP_ADMIN_PASSWORD" "secret" . "key" $v.secrets.bootstrapAdmin.passwordKey) }}
{{- end }}
{{- end }}
{{- if eq $c "gateway" }}
- name: FM_GATEWAY_PUBLIC_URL
  value: {{ required "publicUrl is required" $v.publicUrl | quote }}
- name: FM_GATEWAY_TRUSTED_PROXIES
  value: {{ join "," $v.gateway.trustedProxies | quote }}
{{- end }}
{{- if eq $c "worker" }}
- name: FM_WORKER_CONCURRENCY
  value: {{ $v.worker.concurrency | quote }}
{{- end }}
{{- range $name, $value := $v.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- range $name, $value := (index $v $c).env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/*
Volumes and mounts of one component: the per-pod data dir, /tmp (the root filesystem is
read-only), and for auth its signing keys, readable by the faultmaven group only.
*/}}
{{- define "faultmaven.volumes" -}}
- name: data
  emptyDir:
    {{- with .root.Values.dataVolume.sizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
- name: tmp
  emptyDir: {}
- name: home
  emptyDir: {}
{{- if eq .component "auth" }}
- name: signing-key
  secret:
    secretName: {{ .root.Values.auth.signingKey.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .root.Values.auth.signingKey.key }}
        path: {{ .root.Values.auth.signingKey.key }}
{{- range $i, $k := .root.Values.auth.previousKeys }}
- name: previous-key-{{ $i }}
  secret:
    secretName: {{ $k.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ $k.key }}
        path: {{ $k.key }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "faultmaven.volumeMounts" -}}
- name: data
  mountPath: /data
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/faultmaven
{{- if eq .component "auth" }}
- name: signing-key
  mountPath: /keys/current
  readOnly: true
{{- range $i, $k := .root.Values.auth.previousKeys }}
- name: previous-key-{{ $i }}
  mountPath: /keys/previous/{{ $i }}
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{/* Pod-level settings shared by every pod of the chart. */}}
{{- define "faultmaven.podSpec" -}}
automountServiceAccountToken: false
{{- with .root.Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
