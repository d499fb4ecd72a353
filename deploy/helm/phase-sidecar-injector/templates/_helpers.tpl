{{/* The release's full name, at most 63 characters. */}}
{{- define "psi.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "psi.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "psi.labels" -}}
{{ include "psi.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "psi.serviceAccountName" -}}
{{- default (include "psi.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The Secret holding tls.crt, tls.key (and ca.crt). */}}
{{- define "psi.tlsSecret" -}}
{{- printf "%s-tls" (include "psi.fullname" .) -}}
{{- end -}}

{{/* The injector config it reads with --config. */}}
{{- define "psi.injectorConfig" -}}
sidecar:
  imagePullPolicy: {{ .Values.sidecar.image.pullPolicy }}
  secretsSizeLimit: {{ .Values.sidecar.secretsSizeLimit | quote }}
  resources:
    {{- toYaml .Values.sidecar.resources | nindent 4 }}
policies:
  {{- toYaml .Values.policies | nindent 2 }}
{{- end -}}
