{{- define "velo.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "velo.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "velo.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "velo.engineSelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: engine
{{- end -}}

{{- define "velo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "velo.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "velo.usersSecret" -}}
{{- if .Values.auth.existingSecret -}}
{{- .Values.auth.existingSecret -}}
{{- else if .Values.auth.users -}}
{{- printf "%s-users" (include "velo.fullname" .) -}}
{{- else if not .Values.auth.demoUser -}}
{{- fail "auth: set auth.users (lines from `velo-gateway hash-password`) or auth.existingSecret (or auth.demoUser for a demo); the gateway refuses to serve non-loopback clients without password auth" -}}
{{- end -}}
{{- end -}}

{{/* The users file comes from a Secret, unless only a demo user is asked for. */}}
{{- define "velo.generatedUsers" -}}
{{- and .Values.auth.demoUser (not .Values.auth.existingSecret) (not .Values.auth.users) -}}
{{- end -}}

{{- define "velo.demoPasswordSecret" -}}
{{- printf "%s-demo-password" (include "velo.fullname" .) -}}
{{- end -}}

{{- define "velo.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
