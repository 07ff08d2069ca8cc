{{/*
The values for the official JupyterHub chart (zero-to-jupyterhub) that run elearn's notebooks,
installed in this release's namespace: the notebook image, KubeSpawner profiles, elearn's
configuration (envFrom this release's ConfigMap, as Airflow's pods), the database URL and S3 keys
as references to the Secrets Airflow's pods read (never a value), and the elearn.io/team label.
docs/notebooks.md tells why each is where it is.
*/}}
{{- define "elearn.jupyterhubValues" -}}
{{- $n := .Values.notebooks -}}
{{- /* JupyterHub's own scheduling.userPods.tolerations (its defaults). A profile's list replaces
KubeSpawner's (only dicts are merged), so GPU profiles repeat them before the GPU nodes' own. */ -}}
{{- $userPods := list -}}
{{- range list "hub.jupyter.org/dedicated" "hub.jupyter.org_dedicated" -}}
{{- $userPods = append $userPods (dict "key" . "operator" "Equal" "value" "user" "effect" "NoSchedule") -}}
{{- end -}}
{{- $slugs := dict -}}
{{- range $n.profiles -}}
{{- if hasKey $slugs .slug -}}
{{- fail (printf "notebooks.profiles: two profiles have the slug %q; give each a slug of its own" .slug) -}}
{{- end -}}
{{- $_ := set $slugs .slug true -}}
{{- end -}}
singleuser:
  image:
    name: {{ .Values.images.notebook.repository }}
    tag: {{ default .Chart.AppVersion .Values.images.notebook.tag | quote }}
  # the image's user, jovyan: uid 1000 in group users (100)
  uid: 1000
  fsGid: 100
  defaultUrl: /lab
  startTimeout: {{ $n.startTimeout }}
  extraLabels:
    elearn.io/team: {{ $n.team | quote }}
  # the secret variables Airflow's pods get, from the same Secrets
  extraEnv:
    {{- range include "elearn.secretEnv" . | fromYamlArray }}
    {{ .envName }}:
      valueFrom:
        secretKeyRef:
          name: {{ .secretName }}
          key: {{ .secretKey }}
    {{- end }}
  {{- with $n.egress }}
  networkPolicy:
    egress:
      {{- toYaml . | nindent 6 }}
  {{- end }}
  profileList:
    {{- range $n.profiles }}
    {{- $gpu := int (default 0 .gpu) }}
    - display_name: {{ .displayName | quote }}
      slug: {{ .slug }}
      description: {{ default (printf "%v CPU, %s memory%s" .cpu .memory (ternary (printf ", %d GPU" $gpu) "" (gt $gpu 0))) .description | quote }}
      {{- if .default }}
      default: true
      {{- end }}
      kubespawner_override:
        cpu_guarantee: {{ .cpu }}
        cpu_limit: {{ .cpu }}
        mem_guarantee: {{ .memory | quote }}
        mem_limit: {{ .memory | quote }}
        extra_labels:
          elearn.io/team: {{ default $n.team .team | quote }}
        {{- $selector := deepCopy (default dict .nodeSelector) }}
        {{- if gt $gpu 0 }}
        {{- $selector = merge $selector $n.gpuNodes.nodeSelector }}
        extra_resource_limits:
          nvidia.com/gpu: {{ $gpu | quote }}
        tolerations:
          {{- toYaml (concat $userPods $n.gpuNodes.tolerations) | nindent 10 }}
        {{- end }}
        {{- with $selector }}
        node_selector:
          {{- toYaml . | nindent 10 }}
        {{- end }}
    {{- end }}
scheduling:
  userPods:
    tolerations:
      {{- toYaml $userPods | nindent 6 }}
hub:
  config:
    KubeSpawner:
      # every AIRFLOW__ELEARN__* setting (object store, S3 endpoint and region …), as Airflow's pods
      extra_container_config:
        envFrom:
          - configMapRef:
              name: {{ include "elearn.configMapName" . }}
{{- end -}}
