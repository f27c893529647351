{{/*
Checks of the values that values.schema.json cannot express: relations between values.
Every problem found is reported at once, each naming the values involved, and rendering
fails; an install or upgrade with such values never reaches the cluster.
*/}}
{{- define "dom-router.validate" -}}
{{- $v := .Values -}}
{{- $errors := list -}}

{{- /* Stock in memory is per process. */ -}}
{{- $maxReplicas := include "dom-router.maxReplicas" . | int64 -}}
{{- if and (eq $v.store.kind "memory") (gt $maxReplicas 1) -}}
{{- if $v.autoscaling.enabled -}}
{{- $errors = append $errors (printf "store.kind: \"memory\" with autoscaling.enabled and autoscaling.maxReplicas %d: stock in memory lives in each pod, so replicas would sell the same units; use store.kind \"redis\", or autoscaling.enabled=false with replicaCount=1" $maxReplicas) -}}
{{- else -}}
{{- $errors = append $errors (printf "store.kind: \"memory\" with replicaCount %d: stock in memory lives in each pod, so replicas would sell the same units; use store.kind \"redis\" or replicaCount=1" $maxReplicas) -}}
{{- end -}}
{{- end -}}

{{- /* Redis. */ -}}
{{- $redis := $v.store.redis -}}
{{- if eq $v.store.kind "redis" -}}
{{- if not $redis.urls -}}
{{- $errors = append $errors "store.redis.urls: store.kind is \"redis\" but no URL is given; name your Redis (redis://HOST:6379) or, with store.redis.cluster=true, nodes of your Redis Cluster" -}}
{{- end -}}
{{- if and (not $redis.cluster) (gt (len $redis.urls) 1) -}}
{{- $errors = append $errors (printf "store.redis.urls: %d URLs for a single Redis; set store.redis.cluster=true for Redis Cluster, or give one URL" (len $redis.urls)) -}}
{{- end -}}
{{- end -}}
{{- range $i, $url := $redis.urls -}}
{{- /* the URL itself is never quoted: it may hold a password */ -}}
{{- if not (regexMatch "^rediss?://[^/\\s]+(/[0-9]*)?$" $url) -}}
{{- $errors = append $errors (printf "store.redis.urls[%d]: not a redis://HOST:PORT or rediss://HOST:PORT URL" $i) -}}
{{- end -}}
{{- if regexMatch "^[a-z+]+://[^/@]*:[^/@]*@" $url -}}
{{- $errors = append $errors (printf "store.redis.urls[%d]: holds a password, which would be written into a ConfigMap; take it out of the URL and set store.redis.password or store.redis.existingSecret" $i) -}}
{{- end -}}
{{- end -}}
{{- if and $redis.password $redis.existingSecret -}}
{{- $errors = append $errors "store.redis.password and store.redis.existingSecret: set one of the two" -}}
{{- end -}}

{{- /* Holds. */ -}}
{{- $h := $v.holds -}}
{{- if gt (int64 $h.min_ttl_secs) (int64 $h.max_ttl_secs) -}}
{{- $errors = append $errors (printf "holds.min_ttl_secs: %d is above holds.max_ttl_secs (%d)" (int64 $h.min_ttl_secs) (int64 $h.max_ttl_secs)) -}}
{{- else if or (lt (int64 $h.default_ttl_secs) (int64 $h.min_ttl_secs)) (gt (int64 $h.default_ttl_secs) (int64 $h.max_ttl_secs)) -}}
{{- $errors = append $errors (printf "holds.default_ttl_secs: %d is outside holds.min_ttl_secs..holds.max_ttl_secs (%d..%d)" (int64 $h.default_ttl_secs) (int64 $h.min_ttl_secs) (int64 $h.max_ttl_secs)) -}}
{{- end -}}

{{- /* Stopping: the pod must outlive the drain. */ -}}
{{- $grace := include "dom-router.terminationGracePeriodSeconds" . | int64 -}}
{{- $preStop := int64 $v.lifecycle.preStopSleepSeconds -}}
{{- $needMs := add (mul $preStop 1000) (int64 $v.server.drain_timeout_ms) -}}
{{- if le (mul $grace 1000) $needMs -}}
{{- $errors = append $errors (printf "terminationGracePeriodSeconds: %d s does not exceed lifecycle.preStopSleepSeconds (%d s) + server.drain_timeout_ms (%d ms); Kubernetes would kill pods mid-drain, cutting off in-flight calls. Set it to %d or more, or leave it null to have it computed" $grace $preStop (int64 $v.server.drain_timeout_ms) (add (div $needMs 1000) 1)) -}}
{{- end -}}

{{- /* Ports. */ -}}
{{- $p := $v.containerPorts -}}
{{- if or (eq (int $p.grpc) (int $p.health)) (eq (int $p.grpc) (int $p.metrics)) (eq (int $p.health) (int $p.metrics)) -}}
{{- $errors = append $errors (printf "containerPorts: grpc (%d), health (%d) and metrics (%d) must differ" (int $p.grpc) (int $p.health) (int $p.metrics)) -}}
{{- end -}}

{{- /* Metrics. */ -}}
{{- if and $v.metrics.serviceMonitor.enabled (not $v.metrics.enabled) -}}
{{- $errors = append $errors "metrics.serviceMonitor.enabled: needs metrics.enabled=true, or there is nothing to scrape" -}}
{{- end -}}

{{- /* TLS. */ -}}
{{- if and $v.tls.enabled (not $v.tls.existingSecret) -}}
{{- $errors = append $errors "tls.existingSecret: tls.enabled is true but no Secret is named; create a kubernetes.io/tls Secret (e.g. with cert-manager) and name it here" -}}
{{- end -}}
{{- if and $v.tls.requireClientCert (not $v.tls.enabled) -}}
{{- $errors = append $errors "tls.requireClientCert: client certificates need TLS; set tls.enabled=true and tls.existingSecret" -}}
{{- end -}}

{{- /* Auth. */ -}}
{{- $auth := $v.auth -}}
{{- if eq $auth.mode "tokens" -}}
{{- if and (not $auth.clients) (not $auth.existingSecret) -}}
{{- $errors = append $errors "auth.clients: auth.mode is \"tokens\" but no client is given; list clients in auth.clients or name a Secret holding a tokens.toml in auth.existingSecret" -}}
{{- end -}}
{{- if and $auth.clients $auth.existingSecret -}}
{{- $errors = append $errors "auth.clients and auth.existingSecret: set one of the two" -}}
{{- end -}}
{{- else if or $auth.clients $auth.existingSecret -}}
{{- $errors = append $errors (printf "auth.mode: %q, so auth.clients and auth.existingSecret would be ignored and any caller could call anything; set auth.mode=tokens" $auth.mode) -}}
{{- end -}}
{{- $names := dict -}}
{{- $tokens := dict -}}
{{- range $i, $c := $auth.clients -}}
{{- if hasKey $names $c.name -}}
{{- $errors = append $errors (printf "auth.clients[%d].name: %q is given twice" $i $c.name) -}}
{{- end -}}
{{- $_ := set $names $c.name true -}}
{{- $digest := sha256sum $c.token -}}
{{- if hasKey $tokens $digest -}}
{{- $errors = append $errors (printf "auth.clients[%d].token: the same token as auth.clients[%d]; every client needs its own" $i (get $tokens $digest)) -}}
{{- end -}}
{{- $_ := set $tokens $digest $i -}}
{{- end -}}

{{- /* Config. */ -}}
{{- if and $v.config.existingConfigMap (or $v.config.network $v.config.segments) -}}
{{- $errors = append $errors "config.existingConfigMap: the rules come from that ConfigMap, so config.network and config.segments must stay empty" -}}
{{- end -}}

{{- /* Scaling and disruption. */ -}}
{{- $as := $v.autoscaling -}}
{{- if $as.enabled -}}
{{- if gt (int64 $as.minReplicas) (int64 $as.maxReplicas) -}}
{{- $errors = append $errors (printf "autoscaling.minReplicas: %d is above autoscaling.maxReplicas (%d)" (int64 $as.minReplicas) (int64 $as.maxReplicas)) -}}
{{- end -}}
{{- $requests := (($v.resources).requests) | default dict -}}
{{- if and (kindIs "invalid" $as.targetCPUUtilizationPercentage) (kindIs "invalid" $as.targetMemoryUtilizationPercentage) -}}
{{- $errors = append $errors "autoscaling: neither targetCPUUtilizationPercentage nor targetMemoryUtilizationPercentage is set, so the autoscaler has nothing to scale on" -}}
{{- end -}}
{{- if and (not (kindIs "invalid" $as.targetCPUUtilizationPercentage)) (not $requests.cpu) -}}
{{- $errors = append $errors "autoscaling.targetCPUUtilizationPercentage: needs resources.requests.cpu, which utilization is measured against" -}}
{{- end -}}
{{- if and (not (kindIs "invalid" $as.targetMemoryUtilizationPercentage)) (not $requests.memory) -}}
{{- $errors = append $errors "autoscaling.targetMemoryUtilizationPercentage: needs resources.requests.memory, which utilization is measured against" -}}
{{- end -}}
{{- end -}}
{{- $pdb := $v.podDisruptionBudget -}}
{{- if $pdb.enabled -}}
{{- if and (kindIs "invalid" $pdb.minAvailable) (kindIs "invalid" $pdb.maxUnavailable) -}}
{{- $errors = append $errors "podDisruptionBudget: set minAvailable or maxUnavailable" -}}
{{- else if and (not (kindIs "invalid" $pdb.minAvailable)) (not (kindIs "invalid" $pdb.maxUnavailable)) -}}
{{- $errors = append $errors "podDisruptionBudget: minAvailable and maxUnavailable are both set; Kubernetes takes one, set the other to null" -}}
{{- end -}}
{{- end -}}

{{- if $errors -}}
{{- fail (printf "\n\ndom-router: the values cannot work:\n  - %s\n" (join "\n  - " $errors)) -}}
{{- end -}}
{{- end -}}
