{{- define "ebisu.name" -}}
{{- default "ebisu-operator" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* <release>-operator, or fullnameOverride: the Deployment, ServiceAccount, roles. */ -}}
{{- define "ebisu.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ebisu.serviceAccountName" -}}
{{- default (include "ebisu.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "ebisu.labels" -}}
app.kubernetes.io/name: {{ include "ebisu.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "ebisu.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ebisu.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- /* repository@digest when a digest is given, else repository:tag (default: appVersion). */ -}}
{{- define "ebisu.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
What the operator does in a MySQLCluster's namespace (operator/src/rbac.rs
WORKLOAD_RULES), as rules of a ClusterRole or of a Role per watched namespace.
*/}}
{{- define "ebisu.workloadRules" -}}
  # The resource it reconciles; patch adds and removes its finalizer and
  # removes handled switchover and forced-failover annotations. A verified
  # restore's scratch cluster is created and deleted.
  - apiGroups: ["ebisu.dev"]
    resources: ["mysqlclusters"]
    verbs: ["get", "list", "watch", "create", "patch", "delete"]
  - apiGroups: ["ebisu.dev"]
    resources: ["mysqlclusters/status"]
    verbs: ["patch"]
  # Backups: taken and followed by their cluster's reconcile, read by a
  # restore, made by a schedule and deleted by its retention.
  - apiGroups: ["ebisu.dev"]
    resources: ["mysqlbackups"]
    verbs: ["get", "list", "watch", "create", "delete"]
  - apiGroups: ["ebisu.dev"]
    resources: ["mysqlbackups/status"]
    verbs: ["patch"]
  # Children it applies (server-side apply creates through patch) and watches.
  - apiGroups: ["apps"]
    resources: ["statefulsets"]
    verbs: ["get", "list", "watch", "create", "patch"]
  - apiGroups: [""]
    resources: ["services", "configmaps"]
    verbs: ["get", "list", "watch", "create", "patch"]
  # Who may reach the instance pods.
  - apiGroups: ["networking.k8s.io"]
    resources: ["networkpolicies"]
    verbs: ["get", "create", "patch"]
  # Disruption budgets; the primary's is deleted when a cluster shrinks to one.
  - apiGroups: ["policy"]
    resources: ["poddisruptionbudgets"]
    verbs: ["get", "list", "watch", "create", "patch", "delete"]
  # The credentials Secret: read by name, created once, only ever
  # completed, marked. Never listed or watched: a leaked operator token
  # cannot enumerate Secrets. A verified restore's scratch cluster's Secret
  # (labelled as the operator's) is deleted with it.
  - apiGroups: [""]
    resources: ["secrets"]
    verbs: ["get", "create", "patch", "delete"]
  # Instance pods: watched for status, labelled with their role, deleted to
  # be re-seeded once their agent set the data aside.
  - apiGroups: [""]
    resources: ["pods"]
    verbs: ["get", "list", "watch", "patch", "delete"]
  # Rolling updates restart pods through the eviction API, so that their
  # disruption budgets apply.
  - apiGroups: [""]
    resources: ["pods/eviction"]
    verbs: ["create"]
  # Claims grow in place and are marked initialised; created bound to a
  # given volume (static provisioning). A verified restore's scratch claim
  # is deleted.
  - apiGroups: [""]
    resources: ["persistentvolumeclaims"]
    verbs: ["list", "patch", "create", "delete"]
  # Events on every role change, repair and refusal.
  - apiGroups: ["events.k8s.io"]
    resources: ["events"]
    verbs: ["create", "patch"]
  # The primary Lease: applied, read every pass, its holder named. The
  # agents read and renew it; the operator may grant that only because it
  # holds these verbs itself.
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    verbs: ["get", "list", "watch", "create", "patch"]

  # The agents' ServiceAccount, and the Role and RoleBinding that let them
  # read and renew the primary Lease.
  - apiGroups: [""]
    resources: ["serviceaccounts"]
    verbs: ["get", "create", "patch"]
  - apiGroups: ["rbac.authorization.k8s.io"]
    resources: ["roles", "rolebindings"]
    verbs: ["get", "create", "patch"]
{{- end }}
