{{/* Names. "elearn" for a release named elearn, else "<release>-elearn" (63 characters at most). */}}
{{- define "elearn.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "elearn.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "elearn.configMapName" -}}{{ include "elearn.fullname" . }}-config{{- end -}}
{{- define "elearn.secretName" -}}{{ include "elearn.fullname" . }}-secret{{- end -}}

{{- define "elearn.serviceAccountName" -}}
{{- default (printf "%s-driver" (include "elearn.fullname" .)) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "elearn.trainingNamespace" -}}{{ .Values.config.k8s_namespace }}{{- end -}}

{{- define "elearn.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* Whether this chart keeps a Secret of its own: an inline database URL or inline S3 keys. */}}
{{- define "elearn.ownSecret" -}}
{{- if or .Values.database.url .Values.s3Credentials.accessKeyId -}}true{{- end -}}
{{- end -}}

{{/*
The secret variables every Airflow pod needs, as the apache-airflow chart's `secret` list takes
them (envName, secretName, secretKey): from this chart's Secret or from the ones you named.
*/}}
{{- define "elearn.secretEnv" -}}
{{- $own := include "elearn.secretName" . -}}
{{- if .Values.database.url }}
- envName: AIRFLOW__ELEARN__DATABASE_URL
  secretName: {{ $own }}
  secretKey: AIRFLOW__ELEARN__DATABASE_URL
{{- else }}
- envName: AIRFLOW__ELEARN__DATABASE_URL
  secretName: {{ .Values.database.existingSecret }}
  secretKey: {{ .Values.database.existingSecretKey }}
{{- end }}
{{- if .Values.s3Credentials.accessKeyId }}
- envName: AWS_ACCESS_KEY_ID
  secretName: {{ $own }}
  secretKey: AWS_ACCESS_KEY_ID
- envName: AWS_SECRET_ACCESS_KEY
  secretName: {{ $own }}
  secretKey: AWS_SECRET_ACCESS_KEY
{{- else if .Values.s3Credentials.existingSecret }}
- envName: AWS_ACCESS_KEY_ID
  secretName: {{ .Values.s3Credentials.existingSecret }}
  secretKey: {{ .Values.s3Credentials.accessKeyIdKey }}
- envName: AWS_SECRET_ACCESS_KEY
  secretName: {{ .Values.s3Credentials.existingSecret }}
  secretKey: {{ .Values.s3Credentials.secretAccessKeyKey }}
{{- end }}
{{- end -}}

{{/* A model's DNS-1035 base name as elearn.serving.k8s_manifests.version_name makes it. */}}
{{- define "elearn.modelName" -}}
{{- regexReplaceAll "[^a-z0-9-]+" (lower .) "-" | trimAll "-" -}}
{{- end -}}

{{/* Server processes of a Bento pod: one per whole core of its CPU (at least one), as
elearn.serving.k8s_manifests.version_deployment counts them. */}}
{{- define "elearn.serveWorkers" -}}
{{- $cpu := toString . -}}
{{- $cores := 0 -}}
{{- if hasSuffix "m" $cpu -}}
{{- $cores = div (trimSuffix "m" $cpu | int64) 1000 -}}
{{- else -}}
{{- $cores = $cpu | float64 | floor | int64 -}}
{{- end -}}
{{- max 1 $cores -}}
{{- end -}}
