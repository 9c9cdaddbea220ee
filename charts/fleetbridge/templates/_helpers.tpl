{{- define "fleetbridge.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fleetbridge.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "fleetbridge.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fleetbridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fleetbridge.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The OpAMP port: the OpAMPBridge's endpoint port. */}}
{{- define "fleetbridge.opampPort" -}}
{{- (((.Values.bridge.spec).endpoint).port) | default 4320 -}}
{{- end -}}

{{/* Cluster-wide when the bridge serves namespaces by selector. */}}
{{- define "fleetbridge.clusterWide" -}}
{{- if ((.Values.bridge.spec).namespaceSelector) -}}true{{- end -}}
{{- end -}}
