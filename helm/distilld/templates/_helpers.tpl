{{/* Names, labels, and the pieces shared by the Deployment and the sidecar snippet. */}}

{{- define "distilld.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-distilld, or the release name alone when it already says distilld. */}}
{{- define "distilld.fullname" -}}
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

{{- define "distilld.selectorLabels" -}}
app.kubernetes.io/name: {{ include "distilld.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "distilld.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "distilld.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "distilld.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "distilld.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "distilld.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* Where the pod finds its files. */}}
{{- define "distilld.configDir" -}}/etc/distilld{{- end }}
{{- define "distilld.tlsDir" -}}/etc/distilld/tls{{- end }}
{{- define "distilld.saslDir" -}}/etc/distilld/sasl{{- end }}

{{/* The Secret holding the SASL password: an existing one, or the one the chart creates; empty: none. */}}
{{- define "distilld.saslSecretName" -}}
{{- if .Values.sasl.existingSecret }}
{{- .Values.sasl.existingSecret }}
{{- else if .Values.sasl.password }}
{{- printf "%s-sasl" (include "distilld.fullname" .) }}
{{- end }}
{{- end }}

{{- define "distilld.saslSecretKey" -}}
{{- if .Values.sasl.existingSecret }}{{ .Values.sasl.passwordKey }}{{ else }}password{{ end }}
{{- end }}

{{- define "distilld.schemaRegistrySecretName" -}}
{{- if .Values.schemaRegistry.basicAuth.existingSecret }}
{{- .Values.schemaRegistry.basicAuth.existingSecret }}
{{- else if .Values.schemaRegistry.basicAuth.userInfo }}
{{- printf "%s-schema-registry" (include "distilld.fullname" .) }}
{{- end }}
{{- end }}

{{- define "distilld.schemaRegistrySecretKey" -}}
{{- if .Values.schemaRegistry.basicAuth.existingSecret }}{{ .Values.schemaRegistry.basicAuth.userInfoKey }}{{ else }}user-info{{ end }}
{{- end }}

{{/*
Refuse secrets written into `config`: the ConfigMap is readable by anyone who can read the
namespace's ConfigMaps, and it is printed by `helm get values`.
*/}}
{{- define "distilld.refuseInlineSecrets" -}}
{{- $kafka := .Values.config.kafka | default dict }}
{{- $sasl := $kafka.sasl | default dict }}
{{- $ssl := $kafka.ssl | default dict }}
{{- $registry := (.Values.config.format | default dict).schema_registry | default dict }}
{{- range $key := list "password" "oauthbearer_client_secret" "oauthbearer_config" }}
{{- if hasKey $sasl $key }}
{{- fail (printf "config.kafka.sasl.%s is a secret: use sasl.existingSecret (or env/envFrom from a Secret), not the ConfigMap" $key) }}
{{- end }}
{{- end }}
{{- if hasKey $ssl "key_password" }}
{{- fail "config.kafka.ssl.key_password is a secret: use tls.keyPasswordKey (a key of tls.existingSecret)" }}
{{- end }}
{{- if hasKey $registry "basic_auth_user_info" }}
{{- fail "config.format.schema_registry.basic_auth_user_info is a secret: use schemaRegistry.basicAuth.existingSecret" }}
{{- end }}
{{- /*
The librdkafka settings passed through as-is: a key naming a secret, by the words the daemon masks
(SECRET_WORDS in distilld/settings.py), e.g. sasl.password, ssl.key.password, ssl.keystore.password,
ssl.key.pem, sasl.oauthbearer.client.secret. Keys ending in .url or .file name a place, not a secret
(sasl.oauthbearer.token.endpoint.url, sasl.oauthbearer.assertion.private.key.file).
*/}}
{{- $secretWords := list "password" "passphrase" "secret" "token" "sasl.oauthbearer.config" "pem" "private.key" }}
{{- range $section := list "consumer" "producer" }}
{{- range $key, $_ := (get $kafka $section) | default dict }}
{{- $lower := lower $key }}
{{- if not (or (hasSuffix ".url" $lower) (hasSuffix ".file" $lower)) }}
{{- range $word := $secretWords }}
{{- if contains $word $lower }}
{{- fail (printf "config.kafka.%s.%s is a secret: the ConfigMap is no place for it. Give it from a Secret: env DISTILLD_KAFKA__%s__%s with valueFrom.secretKeyRef, or the chart's sasl.existingSecret (SASL password), tls.existingSecret and tls.keyPasswordKey (keys, certificates, the key's password)" $section $key (upper $section) $key) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Refuse settings that would make the pod spec disagree with what the daemon runs with. The chart
derives the container port, the probes and the Service from config.metrics.port, the grace period
from config.processing.shutdown_timeout_s, the TLS and SASL checks from config.kafka.security_protocol,
and sets DISTILLD_METRICS__HOST from config.metrics.host; a DISTILLD_* variable in `env` overrides
the file at run time (the names are case-insensitive, and DISTILLD_<SECTION> takes a whole section as
JSON), so those go through `config`. (`envFrom` cannot be checked here: do not put them there either.)
*/}}
{{- define "distilld.refuseDesyncedSettings" -}}
{{- $derived := dict
  "DISTILLD_METRICS__PORT" (list "config.metrics.port" "the container port, the probes and the Service follow it")
  "DISTILLD_METRICS__HOST" (list "config.metrics.host" "the chart checks it is reachable and passes it to the container")
  "DISTILLD_PROCESSING__SHUTDOWN_TIMEOUT_S" (list "config.processing.shutdown_timeout_s" "the pod's terminationGracePeriodSeconds is set above it")
  "DISTILLD_KAFKA__SECURITY_PROTOCOL" (list "config.kafka.security_protocol" "the TLS and SASL settings are checked against it")
  "DISTILLD_METRICS" (list "config.metrics" "it holds the port and host the pod spec follows")
  "DISTILLD_PROCESSING" (list "config.processing" "it holds the shutdown deadline the grace period follows")
  "DISTILLD_KAFKA" (list "config.kafka" "it holds the security protocol the TLS and SASL checks use") }}
{{- range $entry := .Values.env }}
{{- with get $derived (upper ($entry.name | default "" | toString)) }}
{{- fail (printf "env: %s would override %s at run time, where the chart does not see it (%s): set %s in the values instead" $entry.name (index . 0) (index . 1) (index . 0)) }}
{{- end }}
{{- end }}
{{- $host := include "distilld.metricsHost" . }}
{{- if or (hasPrefix "127." $host) (has (lower $host) (list "localhost" "::1" "0:0:0:0:0:0:0:1")) }}
{{- fail (printf "config.metrics.host is %s: the kubelet's probes and Prometheus could not reach /healthz, /readyz and /metrics; use 0.0.0.0" $host) }}
{{- end }}
{{- /* every pod reads the same file: a transactional id there would be shared, and each producer fence the others */}}
{{- if and (.Values.config.kafka | default dict).transactional_id (eq ((.Values.config.processing | default dict).guarantee | default "") "exactly_once") }}
{{- fail "config.kafka.transactional_id: every pod would use this one id, and each pod's producer would fence the others' (a rolling update's new pod its predecessor). Leave it unset: the default <group_id>-<pod name>-<pid> is one per pod and stable across container restarts" }}
{{- end }}
{{- /* likewise a static group member id: pods sharing one take the member's place from each other in turn */}}
{{- $staticId := "every pod would join the group as this one static member, and on Apache Kafka each would fence the previous one out of the group in turn (endless rebalances, partitions idle). Leave it unset (dynamic membership), or give each pod its own: env DISTILLD_KAFKA__CONSUMER__group.instance.id with valueFrom.fieldRef.fieldPath: metadata.name" }}
{{- range $key, $_ := ((.Values.config.kafka | default dict).consumer | default dict) }}
{{- if eq (lower $key) "group.instance.id" }}
{{- fail (printf "config.kafka.consumer.%s: %s" $key $staticId) }}
{{- end }}
{{- end }}
{{- range $entry := .Values.env }}
{{- if and (eq (upper ($entry.name | default "" | toString)) "DISTILLD_KAFKA__CONSUMER__GROUP.INSTANCE.ID") (hasKey $entry "value") }}
{{- fail (printf "env %s with a value: %s" $entry.name $staticId) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The daemon's configuration file: .Values.config plus the paths of the files mounted from Secrets.
*/}}
{{- define "distilld.config" -}}
{{- include "distilld.refuseInlineSecrets" . }}
{{- include "distilld.refuseDesyncedSettings" . }}
{{- $config := deepCopy .Values.config }}
{{- $kafka := $config.kafka | default dict }}
{{- $protocol := $kafka.security_protocol | default "PLAINTEXT" }}
{{- with .Values.tls }}
{{- if .existingSecret }}
{{- $dir := include "distilld.tlsDir" $ }}
{{- /*
The daemon hands the ssl files to librdkafka only with SSL or SASL_SSL: otherwise it would connect in
plaintext with the Secret mounted and unused. Unless the files are for the Schema Registry.
*/}}
{{- $kafkaTls := has $protocol (list "SSL" "SASL_SSL") }}
{{- $registryTls := false }}
{{- range $key, $value := ($config.format | default dict).schema_registry | default dict }}
{{- if and (hasPrefix "ssl_" $key) (hasPrefix (printf "%s/" $dir) ($value | default "" | toString)) }}
{{- $registryTls = true }}
{{- end }}
{{- end }}
{{- if not (or $kafkaTls $registryTls) }}
{{- fail (printf "tls.existingSecret is set but config.kafka.security_protocol is %s: the TLS files would be mounted and never used, and distilld would connect to Kafka in plaintext. Set config.kafka.security_protocol to SSL or SASL_SSL (or drop tls.existingSecret)" $protocol) }}
{{- end }}
{{- if $kafkaTls }}
{{- $ssl := $kafka.ssl | default dict }}
{{- if .caKey }}{{ $_ := set $ssl "ca_location" (printf "%s/%s" $dir .caKey) }}{{ end }}
{{- if and .certKey .keyKey }}
{{- $_ := set $ssl "certificate_location" (printf "%s/%s" $dir .certKey) }}
{{- $_ := set $ssl "key_location" (printf "%s/%s" $dir .keyKey) }}
{{- end }}
{{- if .keyPasswordKey }}{{ $_ := set $ssl "key_password_file" (printf "%s/%s" $dir .keyPasswordKey) }}{{ end }}
{{- $_ := set $kafka "ssl" $ssl }}
{{- end }}
{{- end }}
{{- end }}
{{- if include "distilld.saslSecretName" . }}
{{- if not (hasPrefix "SASL_" $protocol) }}
{{- fail (printf "a SASL password is given (sasl.*) but config.kafka.security_protocol is %s, not SASL_PLAINTEXT or SASL_SSL" $protocol) }}
{{- end }}
{{- $sasl := $kafka.sasl | default dict }}
{{- if not $sasl.username }}
{{- fail "sasl: config.kafka.sasl.username (and mechanism) must be set along with the password's Secret" }}
{{- end }}
{{- if eq .Values.sasl.passwordFrom "file" }}
{{- $_ := set $sasl "password_file" (printf "%s/password" (include "distilld.saslDir" .)) }}
{{- else if ne .Values.sasl.passwordFrom "env" }}
{{- fail (printf "sasl.passwordFrom must be file or env, not %q" .Values.sasl.passwordFrom) }}
{{- end }}
{{- $_ := set $kafka "sasl" $sasl }}
{{- end }}
{{- /*
processing.on_error dlq (the default) needs a DLQ topic and the daemon has no default name: one of this
release's own, after its group as the state topic's default is, rather than one values.yaml would give
every release.
*/}}
{{- if and (eq ((.Values.config.processing | default dict).on_error | default "dlq") "dlq") (not $kafka.dlq_topic) }}
{{- /* the group the daemon runs as: an `env` entry overrides the file's (KEDA's trigger follows it too);
an `env` DLQ topic or on_error decides for itself */}}
{{- $group := $kafka.group_id | default "" }}
{{- $secretGroup := "" }}
{{- $envDecides := false }}
{{- range $entry := .Values.env }}
{{- $name := upper ($entry.name | default "" | toString) }}
{{- if eq $name "DISTILLD_KAFKA__GROUP_ID" }}
{{- if hasKey $entry "value" }}
{{- $group = $entry.value | toString }}
{{- else }}
{{- $secretGroup = $entry.name }}
{{- end }}
{{- else if has $name (list "DISTILLD_KAFKA__DLQ_TOPIC" "DISTILLD_PROCESSING__ON_ERROR") }}
{{- $envDecides = true }}
{{- end }}
{{- end }}
{{- if not $envDecides }}
{{- if $secretGroup }}
{{- fail (printf "env %s comes from valueFrom, which the chart cannot read, and the DLQ's default name <group_id>.distilld-dlq needs it: name the DLQ in config.kafka.dlq_topic" $secretGroup) }}
{{- end }}
{{- $_ := set $kafka "dlq_topic" (printf "%s.distilld-dlq" $group) }}
{{- end }}
{{- end }}
{{- $_ := set $config "kafka" $kafka }}
{{- toYaml $config }}
{{- end }}

{{/* The metrics port, from the config (the probes, the Service and the monitors follow it). */}}
{{- define "distilld.metricsPort" -}}
{{- $port := int ((.Values.config.metrics | default dict).port | default 9108) }}
{{- if eq $port 0 }}
{{- fail "config.metrics.port is 0 (server off), but the probes need /healthz and /readyz" }}
{{- end }}
{{- $port }}
{{- end }}

{{/*
The metrics bind address, from the config (0.0.0.0 when not given, as the image sets it). The container
gets it as DISTILLD_METRICS__HOST too: the image's own DISTILLD_METRICS__HOST=0.0.0.0 would otherwise
override the file (the environment wins), and config.metrics.host be ignored.
*/}}
{{- define "distilld.metricsHost" -}}
{{- (.Values.config.metrics | default dict).host | default "0.0.0.0" | toString }}
{{- end }}

{{/*
Above processing.shutdown_timeout_s, so that distilld flushes and commits before SIGKILL. Only null means
unset: 0 (`with` would take it for unset) is a value, kill at once, and refused like any other too short.
*/}}
{{- define "distilld.terminationGracePeriodSeconds" -}}
{{- $shutdown := (.Values.config.processing | default dict).shutdown_timeout_s | default 30 | float64 }}
{{- $given := .Values.terminationGracePeriodSeconds }}
{{- if not (kindIs "invalid" $given) }}
{{- if le (float64 $given) $shutdown }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be above config.processing.shutdown_timeout_s (%v): the kubelet would kill distilld before it flushes its output and commits its offsets; leave it null for the deadline + 15 s" $given $shutdown) }}
{{- end }}
{{- int $given }}
{{- else }}
{{- add (int (ceil $shutdown)) 15 }}
{{- end }}
{{- end }}

{{/*
A probe's timing from the values. The handler is the chart's (httpGet on the metrics port): an httpGet given
in the values was merged into it (a path without the port), and exec, tcpSocket or grpc made a second
handler, which the API server refuses.
*/}}
{{- define "distilld.probeTiming" -}}
{{- $name := index . 0 }}
{{- $probe := index . 1 | default dict }}
{{- $timing := list "initialDelaySeconds" "periodSeconds" "timeoutSeconds" "failureThreshold" "successThreshold" }}
{{- if eq $name "livenessProbe" }}{{/* the API server refuses it on a readiness probe */}}
{{- $timing = append $timing "terminationGracePeriodSeconds" }}
{{- end }}
{{- range $key := keys $probe | sortAlpha }}
{{- if not (has $key $timing) }}
{{- fail (printf "%s.%s: the chart sets the probe's handler itself (httpGet on the metrics port, config.metrics.port); only its timing can be set here: %s" $name $key (join ", " $timing)) }}
{{- end }}
{{- end }}
{{- with $probe }}{{ toYaml . }}{{ end }}
{{- end }}

{{/*
The Schema Registry's basic auth is a setting of config.format.schema_registry: the variable alone, with no
registry configured, made distilld refuse its config (format.schema_registry.url: Field required) and the pod
crash-loop. The URL may come from env (a Secret, say), whose value the chart need not see.
*/}}
{{- define "distilld.checkSchemaRegistry" -}}
{{- $format := .Values.config.format | default dict }}
{{- $value := toString $format.value }}
{{- $url := ($format.schema_registry | default dict).url }}
{{- /* env may give either (any case, as a field or as the JSON of a section); envFrom's Secrets cannot be read here */}}
{{- range $entry := .Values.env }}
{{- $name := upper (toString $entry.name) }}
{{- if has $name (list "DISTILLD_FORMAT__SCHEMA_REGISTRY__URL" "DISTILLD_FORMAT__SCHEMA_REGISTRY" "DISTILLD_FORMAT") }}
{{- $url = "from env" }}
{{- end }}
{{- if has $name (list "DISTILLD_FORMAT__VALUE" "DISTILLD_FORMAT") }}
{{- $value = "avro_confluent" }}
{{- end }}
{{- end }}
{{- if .Values.envFrom }}
{{- $url = "from envFrom" }}
{{- $value = "avro_confluent" }}
{{- end }}
{{- if not (and (eq $value "avro_confluent") $url) }}
{{- fail (printf "schemaRegistry.basicAuth is set (the Schema Registry's user:password) but config.format.value is %v and config.format.schema_registry.url is %v: distilld would refuse the variable and the pod crash-loop. Set config.format.value=avro_confluent and config.format.schema_registry.url, or drop schemaRegistry.basicAuth" ($format.value | default "json") ($url | default "not set")) }}
{{- end }}
{{- end }}

{{/*
runAsUser 0 with runAsNonRoot true: the kubelet refuses to start the container (CreateContainerConfigError),
which no render or lint shows. The container's fields win over the pod's (the Deployment's podSecurityContext;
in sidecar mode the pod is the user's).
*/}}
{{- define "distilld.checkNonRoot" -}}
{{- $container := .Values.securityContext | default dict }}
{{- $pod := dict }}
{{- if not .Values.sidecar.enabled }}
{{- $pod = .Values.podSecurityContext | default dict }}
{{- end }}
{{- $nonRoot := ternary $container.runAsNonRoot $pod.runAsNonRoot (hasKey $container "runAsNonRoot") }}
{{- $user := ternary $container.runAsUser $pod.runAsUser (hasKey $container "runAsUser") }}
{{- if and $nonRoot (not (kindIs "invalid" $user)) (eq (int $user) 0) }}
{{- fail "securityContext.runAsUser (or podSecurityContext.runAsUser) is 0, root, while runAsNonRoot is true: the kubelet would refuse to start the container. The image's user is 10001: keep runAsUser 10001, or set runAsNonRoot false too if root is really meant" }}
{{- end }}
{{- end }}

{{/* The pod annotation that rolls the pods when the configuration changes. */}}
{{- define "distilld.configChecksum" -}}
{{- include "distilld.config" . | sha256sum }}
{{- end }}

{{/*
A checksum of the Secrets the chart creates (sasl.password, schemaRegistry.basicAuth.userInfo), empty when it
creates none: as a pod annotation it rolls the pods when a value changes, since distilld reads its secrets at
start only. Secrets named by existingSecret are not the chart's to watch (helm/README.md, Secrets).
*/}}
{{- define "distilld.secretChecksum" -}}
{{- $secrets := include (print .Template.BasePath "/secret.yaml") . -}}
{{- if trim $secrets }}{{ $secrets | sha256sum }}{{ end }}
{{- end }}

{{/*
The distilld container: used by the Deployment, and rendered as the sidecar snippet for an existing
workload, so both stay the same. Its volumes are "distilld.volumes".
In sidecar mode the readiness probe is left out unless sidecar.readinessProbe: /readyz answers 503
while Kafka is unreachable, and a container that is not ready makes the whole pod not ready, so a
Kafka outage would take the user's application out of its Service.
*/}}
{{- define "distilld.container" -}}
name: distilld
image: {{ include "distilld.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
args: [run, --config, {{ include "distilld.configDir" . }}/distilld.yaml]
ports:
  - name: metrics
    containerPort: {{ include "distilld.metricsPort" . }}
    protocol: TCP
{{- $env := list (dict "name" "DISTILLD_METRICS__HOST" "value" (include "distilld.metricsHost" .)) }}
{{- if and (include "distilld.saslSecretName" .) (eq .Values.sasl.passwordFrom "env") }}
{{- $env = append $env (dict "name" "DISTILLD_KAFKA__SASL__PASSWORD" "valueFrom" (dict "secretKeyRef" (dict "name" (include "distilld.saslSecretName" .) "key" (include "distilld.saslSecretKey" .)))) }}
{{- end }}
{{- with include "distilld.schemaRegistrySecretName" . }}
{{- include "distilld.checkSchemaRegistry" $ }}
{{- $env = append $env (dict "name" "DISTILLD_FORMAT__SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO" "valueFrom" (dict "secretKeyRef" (dict "name" . "key" (include "distilld.schemaRegistrySecretKey" $)))) }}
{{- end }}
{{- $env = concat $env .Values.env }}
{{- with $env }}
env:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.envFrom }}
envFrom:
  {{- toYaml . | nindent 2 }}
{{- end }}
livenessProbe:
  httpGet:
    path: /healthz
    port: metrics
  {{- with include "distilld.probeTiming" (list "livenessProbe" .Values.livenessProbe) }}
  {{- . | nindent 2 }}
  {{- end }}
{{- if or (not .Values.sidecar.enabled) .Values.sidecar.readinessProbe }}
readinessProbe:
  httpGet:
    path: /readyz
    port: metrics
  {{- with include "distilld.probeTiming" (list "readinessProbe" .Values.readinessProbe) }}
  {{- . | nindent 2 }}
  {{- end }}
{{- end }}
{{- with .Values.resources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- include "distilld.checkNonRoot" . }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
volumeMounts:
  # the file alone (subPath): /etc/distilld/tls and /etc/distilld/sasl are mounts of their own
  - name: distilld-config
    mountPath: {{ include "distilld.configDir" . }}/distilld.yaml
    subPath: distilld.yaml
    readOnly: true
  - name: distilld-tmp
    mountPath: /tmp
{{- if .Values.tls.existingSecret }}
  - name: distilld-tls
    mountPath: {{ include "distilld.tlsDir" . }}
    readOnly: true
{{- end }}
{{- if and (include "distilld.saslSecretName" .) (eq .Values.sasl.passwordFrom "file") }}
  - name: distilld-sasl
    mountPath: {{ include "distilld.saslDir" . }}
    readOnly: true
{{- end }}
{{- end }}

{{/* The volumes the distilld container mounts; names start with distilld- so they do not clash in a shared pod. */}}
{{- define "distilld.volumes" -}}
- name: distilld-config
  configMap:
    name: {{ include "distilld.fullname" . }}
- name: distilld-tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- with .Values.tls }}
{{- if .existingSecret }}
- name: distilld-tls
  secret:
    secretName: {{ .existingSecret }}
    defaultMode: 0444
    items:
      {{- range $key := list .caKey .certKey .keyKey .keyPasswordKey }}
      {{- if $key }}
      - key: {{ $key }}
        path: {{ $key }}
      {{- end }}
      {{- end }}
{{- end }}
{{- end }}
{{- if and (include "distilld.saslSecretName" .) (eq .Values.sasl.passwordFrom "file") }}
- name: distilld-sasl
  secret:
    secretName: {{ include "distilld.saslSecretName" . }}
    defaultMode: 0444
    items:
      - key: {{ include "distilld.saslSecretKey" . }}
        path: password
{{- end }}
{{- end }}
