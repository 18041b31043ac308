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
{{/*
The ClusterRole holding the gateway's demand-Lease rights. Cluster-wide, nothing binds it
but the operator: one RoleBinding per model, in the model's namespace (docs/security.md).
*/}}
{{- define "siesta.gateway.leaseRole" -}}
{{ include "siesta.gateway.fullname" . }}-leases
{{- end }}

{{/*
The NetworkPolicy spec (less podSelector) the operator gives every model's pods
(SIESTA_MODEL_NETWORK_POLICY): ingress from the gateway, the operator, networkPolicy.extraFrom
and the metrics scraper; egress to DNS and the model sources only.
*/}}
{{- define "siesta.modelNetworkPolicy" -}}
{{- $release := dict "kubernetes.io/metadata.name" .Release.Namespace }}
{{- $from := list
  (dict "namespaceSelector" (dict "matchLabels" $release) "podSelector" (dict "matchLabels" (include "siesta.gateway.selectorLabels" . | fromYaml)))
  (dict "namespaceSelector" (dict "matchLabels" $release) "podSelector" (dict "matchLabels" (include "siesta.operator.selectorLabels" . | fromYaml))) }}
{{- $from = concat $from .Values.networkPolicy.extraFrom }}
{{- $scraper := dict "namespaceSelector" .Values.networkPolicy.metricsScraper.namespaceSelector "podSelector" .Values.networkPolicy.metricsScraper.podSelector }}
{{- $ingress := list
  (dict "ports" (list (dict "port" "http" "protocol" "TCP")) "from" $from)
  (dict "ports" (list (dict "port" "metrics" "protocol" "TCP")) "from" (list $scraper)) }}
{{- $spec := dict "policyTypes" (list "Ingress") "ingress" $ingress }}
{{- if .Values.networkPolicy.egress.enabled }}
{{- $dnsPorts := list (dict "port" 53 "protocol" "UDP") (dict "port" 53 "protocol" "TCP") }}
{{- $egress := list (dict "to" .Values.networkPolicy.egress.dns "ports" $dnsPorts) }}
{{- $egress = concat $egress .Values.networkPolicy.egress.modelSources }}
{{- $_ := set $spec "policyTypes" (list "Ingress" "Egress") }}
{{- $_ := set $spec "egress" $egress }}
{{- end }}
{{- toJson $spec }}
{{- end }}

{{/*
Closed by default: a gateway that checks no API key must be asked for (gateway.auth: none).
*/}}
{{- define "siesta.gateway.checkAuth" -}}
{{- if and .Values.gateway.enabled (eq .Values.gateway.auth "apiKeys") (not .Values.gateway.apiKeys.existingSecret) }}
{{- fail "gateway.auth is apiKeys but gateway.apiKeys.existingSecret is empty: create a Secret with one API key per line (kubectl -n NAMESPACE create secret generic siesta-api-keys --from-file=api-keys=keys.txt) and set gateway.apiKeys.existingSecret=siesta-api-keys, or set gateway.auth=none to run the gateway without authentication (anyone who reaches it may use and wake every model)" }}
{{- end }}
{{- end }}

{{- define "siesta.watchNamespaces" -}}
{{- join "," .Values.watchNamespaces }}
{{- end }}
