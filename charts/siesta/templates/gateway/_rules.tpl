{{/* RBAC rules of the gateway, shared by the ClusterRole and the namespaced Roles (rbac.yaml). */}}
{{- define "siesta.gateway.readRules" }}
  # Which models exist, their alias and wakeTimeout (list + watch, no per-request calls).
  - apiGroups: [siesta.dev]
    resources: [modeldeployments]
    verbs: [list, watch]
  # Which replicas are ready: the EndpointSlices of each model's Service.
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
{{- end }}
{{- define "siesta.gateway.leaseRules" }}
  # Demand: one Lease per model and gateway replica, created then patched.
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    verbs: [get, create, patch]
{{- end }}
