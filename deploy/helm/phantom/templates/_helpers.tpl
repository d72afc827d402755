{{/* Name of the release's objects. */}}
{{- define "phantom.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "phantom.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The services: key in values, name on the command line, env prefix. */}}
{{- define "phantom.services" -}}
scanOrchestrator: {name: scan-orchestrator, env: SCAN_ORCHESTRATOR}
vulnAnalyzer: {name: vuln-analyzer, env: VULN_ANALYZER}
notifier: {name: notifier, env: NOTIFIER}
healthAggregator: {name: health-aggregator, env: HEALTH_AGGREGATOR}
{{- end -}}

{{- define "phantom.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "phantom.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}
