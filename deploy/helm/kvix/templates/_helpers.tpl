{{/* Names: everything is prefixed with the release's full name. */}}
{{- define "kvix.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kvix.poolName" -}}
{{- default (include "kvix.fullname" .) .Values.inferencePool.name -}}
{{- end -}}

{{- define "kvix.labels" -}}
app.kubernetes.io/name: kvix
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: kvix
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: include with (dict "ctx" . "component" "epp"). */}}
{{- define "kvix.selector" -}}
app.kubernetes.io/name: kvix
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "kvix.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{/* Replication: whether the EPP replicas share an index through a publisher. */}}
{{- define "kvix.replicationMode" -}}
{{- $mode := .Values.replication.mode -}}
{{- if and (gt (int .Values.epp.replicas) 1) (eq $mode "none") -}}
{{- fail "epp.replicas > 1 needs replication.mode nats or redis: replicas share one index" -}}
{{- end -}}
{{- if not (has $mode (list "none" "nats" "redis")) -}}
{{- fail (printf "replication.mode must be none, nats or redis, not %q" $mode) -}}
{{- end -}}
{{- $mode -}}
{{- end -}}

{{/* NATS runs with mode nats, and with mode redis when replicas share in-flight load. */}}
{{- define "kvix.natsEnabled" -}}
{{- $mode := include "kvix.replicationMode" . -}}
{{- if or (eq $mode "nats") (and (eq $mode "redis") (gt (int .Values.epp.replicas) 1)) -}}true{{- end -}}
{{- end -}}

{{- define "kvix.natsUrl" -}}
{{- default (printf "nats://%s-nats.%s.svc:4222" (include "kvix.fullname" .) .Release.Namespace) .Values.nats.url -}}
{{- end -}}

{{- define "kvix.redisUrl" -}}
{{- default (printf "redis://%s-redis.%s.svc:6379" (include "kvix.fullname" .) .Release.Namespace) .Values.redis.url -}}
{{- end -}}

{{/* Discovery and the model servers' settings every ingesting component takes. */}}
{{- define "kvix.discoveryArgs" -}}
- --inference-pool={{ .Release.Namespace }}/{{ include "kvix.poolName" . }}
- --model={{ .Values.modelServers.model }}
- --event-port={{ .Values.modelServers.kvEventsPort }}
{{- if .Values.modelServers.kvReplayPort }}
- --replay-port={{ .Values.modelServers.kvReplayPort }}
{{- end }}
- --block-size={{ .Values.modelServers.blockSize }}
{{- end -}}

{{/* Downward API: the namespace discovery defaults to, and a replica id peers recognise. */}}
{{- define "kvix.podEnv" -}}
- name: POD_NAMESPACE
  valueFrom: { fieldRef: { fieldPath: metadata.namespace } }
- name: KVIX_REPLICA_ID
  valueFrom: { fieldRef: { fieldPath: metadata.name } }
{{- end -}}

{{- define "kvix.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* A writable /tmp on a read-only root filesystem (tokenizer downloads, Node's temp files). */}}
{{- define "kvix.tmpVolume" -}}
- name: tmp
  emptyDir: {}
{{- end -}}
{{- define "kvix.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{- define "kvix.probes" -}}
startupProbe:
  httpGet: { path: /healthz, port: {{ .port }} }
  periodSeconds: 2
  failureThreshold: 60
livenessProbe:
  httpGet: { path: /healthz, port: {{ .port }} }
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet: { path: /readyz, port: {{ .port }} }
  periodSeconds: 5
  failureThreshold: 2
{{- end -}}
