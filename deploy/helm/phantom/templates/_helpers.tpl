{{/*
Names and labels follow `helm create`; every object of one service also carries
app.kubernetes.io/component (scan-orchestrator, vuln-analyzer, notifier, health-aggregator,
migrate).
*/}}

{{/* The chart's name. */}}
{{- define "phantom.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's objects' name prefix. */}}
{{- define "phantom.fullname" -}}
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

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "phantom.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "phantom.labels" -}}
helm.sh/chart: {{ include "phantom.chart" . }}
{{ include "phantom.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: phantom
{{- end }}

{{/* Labels that select the release's pods. */}}
{{- define "phantom.selectorLabels" -}}
app.kubernetes.io/name: {{ include "phantom.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component's objects: (dict "root" $ "component" "notifier"). */}}
{{- define "phantom.componentLabels" -}}
{{ include "phantom.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Labels that select one component's pods: (dict "root" $ "component" "notifier"). */}}
{{- define "phantom.componentSelectorLabels" -}}
{{ include "phantom.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Name of one component's objects: (dict "root" $ "component" "notifier"). */}}
{{- define "phantom.componentFullname" -}}
{{- printf "%s-%s" (include "phantom.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The services, in a fixed order: key under .Values.services, name on the command line and in
object names, and the infix of their environment variables (PHANTOM_<env>_ADDR / _URL).
*/}}
{{- define "phantom.services" -}}
scanOrchestrator: {name: scan-orchestrator, env: SCAN_ORCHESTRATOR}
vulnAnalyzer: {name: vuln-analyzer, env: VULN_ANALYZER}
notifier: {name: notifier, env: NOTIFIER}
healthAggregator: {name: health-aggregator, env: HEALTH_AGGREGATOR}
{{- end }}

{{- define "phantom.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "phantom.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "phantom.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/*
Refuses values that cannot work, with a message saying what to set. Secrets never come from
values: only from Secrets that exist in the namespace.
*/}}
{{- define "phantom.validate" -}}
{{- if not .Values.database.existingSecret }}
{{- fail "database.existingSecret is required: the name of a Secret holding DATABASE_URL (postgres://user:password@host:5432/phantom). The services of a cluster share one PostgreSQL database; see the README, \"Deploy on Kubernetes\"." }}
{{- end }}
{{- $storage := default dict .Values.config.storage }}
{{- $cache := default dict .Values.config.cache }}
{{- $llm := default dict (default dict .Values.config.analyzer).llm }}
{{- if or $storage.database_url $cache.redis_url $llm.api_key }}
{{- fail "config.storage.database_url, config.cache.redis_url and config.analyzer.llm.api_key hold credentials: give them as Secrets (database.existingSecret, redis.existingSecret, llm.existingSecret), never as values." }}
{{- end }}
{{- if or (hasKey .Values.config "auth") (hasKey .Values.config "tls") }}
{{- fail "config.auth and config.tls are rendered from the values `auth` and `tls`: set those. The secrets of [auth] (key_secret, service_token) only come from the Secret auth.existingSecret, never as values." }}
{{- end }}
{{- $auth := .Values.auth }}
{{- if and $auth.enabled (not $auth.existingSecret) }}
{{- fail "auth.existingSecret is required while auth.enabled (the default): the name of a Secret holding PHANTOM_AUTH_KEY_SECRET (the HMAC key API keys are hashed with) and PHANTOM_AUTH_SERVICE_TOKEN (what the services call each other with while TLS is off), e.g. kubectl create secret generic phantom-auth --from-literal=PHANTOM_AUTH_KEY_SECRET=\"$(openssl rand -hex 32)\" --from-literal=PHANTOM_AUTH_SERVICE_TOKEN=\"$(openssl rand -hex 32)\". Or set auth.enabled=false to serve every caller unauthenticated." }}
{{- end }}
{{- if and $auth.enabled $auth.jwt.enabled }}
{{- if not $auth.jwt.issuer }}
{{- fail "auth.jwt.issuer is required while auth.jwt.enabled: the `iss` the tokens must carry, e.g. https://issuer.example.com/." }}
{{- end }}
{{- if eq (empty $auth.jwt.jwksUrl) (empty $auth.jwt.jwksConfigMap.name) }}
{{- fail "auth.jwt.enabled needs exactly one JWKS source: auth.jwt.jwksUrl (the issuer's keys, fetched) or auth.jwt.jwksConfigMap.name (an existing ConfigMap holding them, mounted as a file)." }}
{{- end }}
{{- end }}
{{- $tls := .Values.tls }}
{{- if $tls.enabled }}
{{- if and $tls.existingSecret $tls.certManager.enabled }}
{{- fail "tls.existingSecret and tls.certManager.enabled are exclusive: one Secret shared by every service, or one cert-manager Certificate per service." }}
{{- end }}
{{- if not (or $tls.existingSecret $tls.certManager.enabled) }}
{{- fail "tls.enabled needs certificates: tls.existingSecret (a kubernetes.io/tls Secret with tls.crt, tls.key and ca.crt, shared by every service) or tls.certManager.enabled (one cert-manager Certificate per service)." }}
{{- end }}
{{- if and $tls.certManager.enabled (not $tls.certManager.issuerRef.name) }}
{{- fail "tls.certManager.issuerRef.name is required while tls.certManager.enabled: the cert-manager Issuer (or ClusterIssuer, with issuerRef.kind) that signs the services' certificates; it must write ca.crt (a CA or Vault issuer)." }}
{{- end }}
{{- end }}
{{- end }}

{{/* The Secret holding one service's tls.crt, tls.key and ca.crt: (dict "root" $ "component" "notifier"). */}}
{{- define "phantom.tlsSecretName" -}}
{{- .root.Values.tls.existingSecret | default (printf "%s-tls" (include "phantom.componentFullname" .)) }}
{{- end }}

{{/* Where a service is reached, by the others and by the ServiceMonitor: http or https. */}}
{{- define "phantom.scheme" -}}
{{- ternary "https" "http" .Values.tls.enabled }}
{{- end }}

{{/*
The configuration's [auth] and [tls] tables, from the values `auth` and `tls`. Their secrets
are not here: they reach the pods as environment variables from auth.existingSecret. Files
are under /etc/phantom, the pods' one projected volume (templates/deployments.yaml).
*/}}
{{- define "phantom.securityConfig" -}}
{{- $a := .Values.auth }}
{{- $auth := dict "enabled" $a.enabled }}
{{- if $a.enabled }}
{{- $_ := set $auth "cache_ttl" $a.cacheTtl }}
{{- $_ := set $auth "reflection_requires_auth" $a.reflectionRequiresAuth }}
{{- $_ := set $auth "unauthenticated" (dict "per_second" $a.unauthenticated.perSecond "burst" $a.unauthenticated.burst) }}
{{- if $a.jwt.enabled }}
{{- $jwt := dict "issuer" $a.jwt.issuer "audiences" $a.jwt.audiences "refresh_interval" $a.jwt.refreshInterval "leeway" $a.jwt.leeway "tenant_claim" $a.jwt.tenantClaim "scopes_claim" $a.jwt.scopesClaim }}
{{- if $a.jwt.jwksUrl }}
{{- $_ := set $jwt "jwks_url" $a.jwt.jwksUrl }}
{{- else }}
{{- $_ := set $jwt "jwks_file" "/etc/phantom/jwks/jwks.json" }}
{{- end }}
{{- $_ := set $auth "jwt" $jwt }}
{{- end }}
{{- end }}
{{- $tls := dict "enabled" .Values.tls.enabled }}
{{- if .Values.tls.enabled }}
{{- $_ := set $tls "cert_file" "/etc/phantom/tls/tls.crt" }}
{{- $_ := set $tls "key_file" "/etc/phantom/tls/tls.key" }}
{{- $_ := set $tls "ca_file" "/etc/phantom/tls/ca.crt" }}
{{- $_ := set $tls "reload_interval" .Values.tls.reloadInterval }}
{{- end }}
{{- dict "auth" $auth "tls" $tls | toYaml }}
{{- end }}

{{/*
The configuration file: the values under `config`, with the scope from `scope` and [auth] and
[tls] from `auth` and `tls`, as TOML.
Tables (maps) become [sections], lists of maps [[arrays of tables]], everything else a
`key = value` line whose value is written as JSON (a JSON string, number, boolean or array
of those is valid TOML).
*/}}
{{- define "phantom.configToml" -}}
{{- $config := deepCopy (default dict .Values.config) }}
{{- $scan := default dict (get $config "scan") }}
{{- $_ := set $scan "allowed_cidrs" .Values.scope.allowedCidrs }}
{{- $_ := set $scan "denied_cidrs" .Values.scope.deniedCidrs }}
{{- $_ := set $config "scan" $scan }}
{{- $config = merge $config (include "phantom.securityConfig" . | fromYaml) -}}
# Rendered by the chart from its values; environment variables set in the pods override it.
{{- include "phantom.tomlTable" (dict "path" "" "table" $config) }}
{{- end }}

{{/* One TOML table: (dict "path" "a.b" "table" $map). */}}
{{- define "phantom.tomlTable" -}}
{{- $path := .path }}
{{- $table := .table }}
{{- range $key := keys $table | sortAlpha }}
{{- $value := get $table $key }}
{{- if and (not (kindIs "map" $value)) (not (and (kindIs "slice" $value) $value (kindIs "map" (first $value)))) (not (kindIs "invalid" $value)) }}
{{ include "phantom.tomlKey" $key }} = {{ $value | toJson }}
{{- end }}
{{- end }}
{{- range $key := keys $table | sortAlpha }}
{{- $value := get $table $key }}
{{- $sub := ternary (include "phantom.tomlKey" $key) (printf "%s.%s" $path (include "phantom.tomlKey" $key)) (eq $path "") }}
{{- if kindIs "map" $value }}
[{{ $sub }}]
{{- include "phantom.tomlTable" (dict "path" $sub "table" $value) }}
{{- else if and (kindIs "slice" $value) $value (kindIs "map" (first $value)) }}
{{- range $item := $value }}
[[{{ $sub }}]]
{{- include "phantom.tomlTable" (dict "path" $sub "table" $item) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* A TOML key: bare when it can be, quoted otherwise ("/pkg.Service/Method"). */}}
{{- define "phantom.tomlKey" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{/* What every pod of the chart shares: no API token, no service links, its securityContext. */}}
{{- define "phantom.podSecurity" -}}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* One egress rule from (dict "to" [peers] "ports" [TCP ports]); no `to`: anywhere. */}}
{{- define "phantom.egressRule" -}}
- ports:
    {{- range .ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with .to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* Egress every pod of the chart needs: DNS, PostgreSQL, and Redis when it is used. */}}
{{- define "phantom.commonEgress" -}}
{{- $np := .Values.networkPolicy -}}
# DNS.
- ports:
    {{- range $np.dns.ports }}
    - port: {{ . }}
      protocol: UDP
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with $np.dns.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
# PostgreSQL.
{{ include "phantom.egressRule" $np.database }}
{{- if .Values.redis.existingSecret }}
# Redis.
{{ include "phantom.egressRule" $np.redis }}
{{- end }}
{{- end }}
