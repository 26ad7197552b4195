{{/* Names and labels shared by every object of the release. */}}

{{- define "marserve.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: the release name alone when it already says "marserve". */}}
{{- define "marserve.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "marserve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "marserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "marserve.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "marserve.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: marserve
{{- end -}}

{{- define "marserve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "marserve.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* registry/repository:tag or registry/repository@digest; the tag defaults to the chart's
appVersion. No images are published for the chart to pull, so without a registry `helm install` and
`helm template` stop here with what to set, rather than leaving pods in ImagePullBackOff. */}}
{{- define "marserve.image" -}}
{{- $registry := required "imageRegistry is required: build and push the images (make images-push IMAGE_REGISTRY=registry.example.com/ml), then install with --set imageRegistry=registry.example.com/ml (docs/install.md)" .Values.imageRegistry -}}
{{- $repository := printf "%s/%s" (trimSuffix "/" $registry) .image.repository -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "marserve.operatorImage" -}}
{{- include "marserve.image" (merge (dict "image" .Values.image) .) -}}
{{- end -}}

{{- define "marserve.workerImage" -}}
{{- include "marserve.image" (merge (dict "image" .Values.workerImage) .) -}}
{{- end -}}
