{{/*
Names, labels and the pieces of the pod spec more than one template needs.
*/}}

{{- define "dom-router.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name, cut to 63 characters (a DNS label). */}}
{{- define "dom-router.fullname" -}}
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

{{- define "dom-router.headlessName" -}}
{{- printf "%s-headless" (include "dom-router.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{- define "dom-router.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dom-router.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dom-router.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "dom-router.labels" -}}
helm.sh/chart: {{ include "dom-router.chart" . }}
{{ include "dom-router.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dom-router
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "dom-router.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dom-router.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "dom-router.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion | toString }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Paths in the pod, fixed by the image and the server's contract. */}}
{{- define "dom-router.configDir" -}}/etc/dom-router/config{{- end }}
{{- define "dom-router.secretsDir" -}}/etc/dom-router/secrets{{- end }}
{{- define "dom-router.tlsDir" -}}/etc/dom-router/tls{{- end }}

{{- define "dom-router.redisSecretName" -}}
{{- .Values.store.redis.existingSecret | default (printf "%s-redis" (include "dom-router.fullname" .)) }}
{{- end }}

{{- define "dom-router.tokensSecretName" -}}
{{- .Values.auth.existingSecret | default (printf "%s-tokens" (include "dom-router.fullname" .)) }}
{{- end }}

{{/* Whether the pod gets the Redis password from a Secret at all. */}}
{{- define "dom-router.hasRedisPassword" -}}
{{- if and (eq .Values.store.kind "redis") (or .Values.store.redis.password .Values.store.redis.existingSecret) }}true{{- end }}
{{- end }}

{{/*
A TOML float: YAML and JSON numbers reach templates as float64, which Go prints as "1" or
"1e+06"; TOML wants "1.0" and "1000000.0".
*/}}
{{- define "dom-router.tomlFloat" -}}
{{- $f := float64 . -}}
{{- if eq $f (floor $f) }}{{ printf "%.1f" $f }}{{ else }}{{ printf "%v" $f }}{{ end -}}
{{- end }}

{{/*
server.toml, from the values: every key of every section, in the server's own names. Strings
are written as JSON strings, which are valid TOML basic strings.
*/}}
{{- define "dom-router.serverToml" -}}
{{- $v := .Values -}}
{{- $bind := $v.bindAddress -}}
# Written by the dom-router Helm chart from the release's values; change them, not this file.
# A change to this file is applied by rolling the pods (the checksum/config annotation).

[server]
listen = {{ printf "%s:%d" $bind (int $v.containerPorts.grpc) | toJson }}
health_listen = {{ printf "%s:%d" $bind (int $v.containerPorts.health) | toJson }}
max_message_bytes = {{ $v.server.max_message_bytes | int64 }}
max_lines_per_order = {{ $v.server.max_lines_per_order | int64 }}
max_updates_per_call = {{ $v.server.max_updates_per_call | int64 }}
max_skus_per_query = {{ $v.server.max_skus_per_query | int64 }}
request_timeout_ms = {{ $v.server.request_timeout_ms | int64 }}
drain_timeout_ms = {{ $v.server.drain_timeout_ms | int64 }}
health_check_interval_ms = {{ $v.server.health_check_interval_ms | int64 }}
reload_interval_ms = {{ $v.server.reload_interval_ms | int64 }}
watch_config = {{ $v.server.watch_config }}

[holds]
default_ttl_secs = {{ $v.holds.default_ttl_secs | int64 }}
min_ttl_secs = {{ $v.holds.min_ttl_secs | int64 }}
max_ttl_secs = {{ $v.holds.max_ttl_secs | int64 }}
sweep_interval_ms = {{ $v.holds.sweep_interval_ms | int64 }}
fill_interval_ms = {{ $v.holds.fill_interval_ms | int64 }}

[events]
retain_events = {{ $v.events.retain_events | int64 }}
retain_secs = {{ $v.events.retain_secs | int64 }}
watcher_buffer = {{ $v.events.watcher_buffer | int64 }}
max_filter_values = {{ $v.events.max_filter_values | int64 }}

[sourcing]
default_strategy = {{ $v.sourcing.default_strategy | toJson }}
reserve_attempts = {{ $v.sourcing.reserve_attempts | int64 }}
solver = {{ $v.sourcing.solver | toJson }}
solve_budget_ms = {{ $v.sourcing.solve_budget_ms | int64 }}
solver_threads = {{ $v.sourcing.solver_threads | int64 }}

[store]
kind = {{ $v.store.kind | toJson }}
seed_stock = {{ $v.store.seed_stock }}

[store.redis]
# The password comes from a Secret, as DOM_ROUTER__STORE__REDIS__PASSWORD.
urls = {{ $v.store.redis.urls | toJson }}
cluster = {{ $v.store.redis.cluster }}
key_prefix = {{ $v.store.redis.key_prefix | toJson }}
connect_timeout_ms = {{ $v.store.redis.connect_timeout_ms | int64 }}
op_timeout_ms = {{ $v.store.redis.op_timeout_ms | int64 }}
pending_timeout_ms = {{ $v.store.redis.pending_timeout_ms | int64 }}
retention_secs = {{ $v.store.redis.retention_secs | int64 }}

[metrics]
listen = {{ ternary (printf "%s:%d" $bind (int $v.containerPorts.metrics)) "" $v.metrics.enabled | toJson }}

[tracing]
otlp_endpoint = {{ $v.tracing.otlp_endpoint | toJson }}
service_name = {{ $v.tracing.service_name | toJson }}
sample_ratio = {{ include "dom-router.tomlFloat" $v.tracing.sample_ratio }}

[tls]
{{- if $v.tls.enabled }}
cert_file = {{ printf "%s/tls.crt" (include "dom-router.tlsDir" .) | toJson }}
key_file = {{ printf "%s/tls.key" (include "dom-router.tlsDir" .) | toJson }}
{{- else }}
cert_file = ""
key_file = ""
{{- end }}
client_ca_file = {{ ternary (printf "%s/ca.crt" (include "dom-router.tlsDir" .)) "" (and $v.tls.enabled $v.tls.requireClientCert) | toJson }}

[auth]
mode = {{ $v.auth.mode | toJson }}
tokens_file = {{ ternary (printf "%s/tokens.toml" (include "dom-router.secretsDir" .)) "" (eq $v.auth.mode "tokens") | toJson }}
{{- range $i, $h := $v.webhooks }}

[[webhook]]
# The secret comes from Secret {{ $h.secretName }}, as DOM_ROUTER_WEBHOOK_{{ $i }}_SECRET.
name = {{ $h.name | toJson }}
url = {{ $h.url | toJson }}
kinds = {{ $h.kinds | default list | toJson }}
skus = {{ $h.skus | default list | toJson }}
node_ids = {{ $h.node_ids | default list | toJson }}
segments = {{ $h.segments | default list | toJson }}
order_ids = {{ $h.order_ids | default list | toJson }}
secret_env = {{ printf "DOM_ROUTER_WEBHOOK_%d_SECRET" $i | toJson }}
timeout_ms = {{ $h.timeout_ms | default 5000 | int64 }}
{{- end }}
{{- end }}

{{/* tokens.toml, from auth.clients. */}}
{{- define "dom-router.tokensToml" -}}
# Written by the dom-router Helm chart from auth.clients.
{{- range .Values.auth.clients }}

[[client]]
name = {{ .name | toJson }}
role = {{ .role | toJson }}
token = {{ .token | toJson }}
{{- end }}
{{ end }}

{{- define "dom-router.networkToml" -}}
{{- if .Values.config.network }}{{ .Values.config.network }}{{ else }}{{ .Files.Get "files/network.toml" }}{{ end }}
{{- end }}

{{- define "dom-router.segmentsToml" -}}
{{- if .Values.config.segments }}{{ .Values.config.segments }}{{ else }}{{ .Files.Get "files/segments.toml" }}{{ end }}
{{- end }}

{{- define "dom-router.alertsToml" -}}
{{- if .Values.config.alerts }}{{ .Values.config.alerts }}{{ else }}{{ .Files.Get "files/alerts.toml" }}{{ end }}
{{- end }}

{{- define "dom-router.stockCsv" -}}
{{- if .Values.config.stock }}{{ .Values.config.stock }}{{ else if .Values.config.demoStock }}{{ .Files.Get "files/stock.csv" }}{{ end }}
{{- end }}

{{/*
What the pods read only at start: server.toml and stock.csv. Its digest is the
checksum/config annotation, so changing either rolls the pods. network.toml and segments.toml
are left out on purpose: the server reloads them live, and rolling every pod for a rule change
would throw that away.
*/}}
{{- define "dom-router.startupConfig" -}}
{{ include "dom-router.serverToml" . }}
---
{{ include "dom-router.stockCsv" . }}
{{- end }}

{{/*
Seconds a pod gets from deletion to SIGKILL: the preStop sleep, then the drain, then a margin
for the process to close its connections and flush spans.
*/}}
{{- define "dom-router.terminationGracePeriodSeconds" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- $drain := divf (float64 .Values.server.drain_timeout_ms) 1000.0 | ceil | int64 }}
{{- add (int64 .Values.lifecycle.preStopSleepSeconds) $drain 10 }}
{{- else }}
{{- .Values.terminationGracePeriodSeconds | int64 }}
{{- end }}
{{- end }}

{{/* The pods the chart runs at most, to tell whether they could share a memory store. */}}
{{- define "dom-router.maxReplicas" -}}
{{- if .Values.autoscaling.enabled }}{{ .Values.autoscaling.maxReplicas | int64 }}{{ else }}{{ .Values.replicaCount | int64 }}{{ end }}
{{- end }}
