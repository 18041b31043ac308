{{/* Chart name. */}}
{{- define "siesta.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every resource name: the release name, plus "-siesta" unless it holds it. */}}
{{- define "siesta.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "siesta.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "siesta.labels" -}}
helm.sh/chart: {{ include "siesta.chart" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: siesta
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Operator: names, labels, selector. */}}
{{- define "siesta.operator.fullname" -}}
{{- printf "%s-operator" (include "siesta.fullname" .) }}
{{- end }}
{{- define "siesta.operator.selectorLabels" -}}
app.kubernetes.io/name: siesta-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
{{- define "siesta.operator.labels" -}}
app.kubernetes.io/name: siesta-operator
app.kubernetes.io/component: operator
{{ include "siesta.labels" . }}
{{- end }}
{{- define "siesta.operator.serviceAccountName" -}}
{{- default (include "siesta.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- end }}

{{/* Gateway: names, labels, selector. */}}
{{- define "siesta.gateway.fullname" -}}
{{- printf "%s-gateway" (include "siesta.fullname" .) }}
{{- end }}
{{- define "siesta.gateway.selectorLabels" -}}
app.kubernetes.io/name: siesta-gateway
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
{{- define "siesta.gateway.labels" -}}
app.kubernetes.io/name: siesta-gateway
app.kubernetes.io/component: gateway
{{ include "siesta.labels" . }}
{{- end }}
{{- define "siesta.gateway.serviceAccountName" -}}
{{- default (include "siesta.gateway.fullname" .) .Values.gateway.serviceAccount.name }}
{{- end }}

{{- define "siesta.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* SIESTA_NAMESPACES: empty = all namespaces. */}}
{{- define "siesta.watchNamespaces" -}}
{{- join "," .Values.watchNamespaces }}
{{- end }}
