{{/* RBAC rules of the operator, shared by the ClusterRole and the namespaced Roles (rbac.yaml). */}}
{{- define "siesta.operator.peeringRules" }}
  # Peering: only one operator instance acts (ClusterKopfPeering cluster-wide, KopfPeering
  # when the operator watches selected namespaces).
  - apiGroups: [kopf.dev]
    resources: [clusterkopfpeerings, kopfpeerings]
    verbs: [get, list, watch, patch]
{{- end }}
{{- define "siesta.operator.crdRules" }}
  # Noticing when the ModelDeployment CRD is installed or upgraded.
  - apiGroups: [apiextensions.k8s.io]
    resources: [customresourcedefinitions]
    verbs: [list, watch]
{{- end }}
{{- define "siesta.operator.costRules" }}
  # Cost accounting (status.cost): the instance type, capacity type and region labels of
  # the nodes a model's pods run on.
  - apiGroups: [""]
    resources: [nodes]
    verbs: [get]
  # Wake stages (status.lastWake): the Karpenter NodeClaim of a started pod's node (its
  # launch, registration and initialization times). Without Karpenter this reads nothing.
  - apiGroups: [karpenter.sh]
    resources: [nodeclaims]
    verbs: [list]
{{- end }}
{{- define "siesta.operator.eventRules" }}
  # Events: kopf reports handler failures; the operator reports every scale change and
  # failure, and reads the autoscaler's Events on a pod that waits for a node.
  - apiGroups: [""]
    resources: [events]
    verbs: [create, list]
{{- end }}
{{- define "siesta.operator.appRules" }}
  # --- Application (Siesta) --------------------------------------------------------------
  # ModelDeployments: watch them, keep the finalizer that stops a model's loop, and clear
  # spec.manualReplicas when a `kubectl scale` override expires.
  - apiGroups: [siesta.dev]
    resources: [modeldeployments]
    verbs: [list, watch, patch]
  - apiGroups: [siesta.dev]
    resources: [modeldeployments/status]
    verbs: [patch]
  # The model server StatefulSet: created and kept in step with the spec (re-created,
  # orphaning its pods, only when an immutable field changes).
  - apiGroups: [apps]
    resources: [statefulsets]
    verbs: [get, list, watch, create, update, delete]
  # Replicas are written only through /scale.
  - apiGroups: [apps]
    resources: [statefulsets/scale]
    verbs: [patch]
  # The headless Service of the pods and the ClusterIP Service the gateway routes through;
  # a model's CPU bridge has one too, deleted with its StatefulSet when spec.bridge goes.
  - apiGroups: [""]
    resources: [services]
    verbs: [get, list, watch, create, update, delete]
  # Pods are observed (pending for a GPU node, loading, ready) and, after a template
  # change, a pod on the old template is deleted when it serves no request (OnDelete).
  - apiGroups: [""]
    resources: [pods]
    verbs: [list, watch, delete]
  # Demand Leases written by the gateway (docs/contracts.md): read only.
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    verbs: [list, watch]
  # Per model, owned by it: the NetworkPolicy of its pods, and (cluster-wide) the RoleBinding
  # that lets the gateway write demand Leases in the model's namespace.
  - apiGroups: [networking.k8s.io]
    resources: [networkpolicies]
    verbs: [get, list, watch, create, update, delete]
  - apiGroups: [rbac.authorization.k8s.io]
    resources: [rolebindings]
    verbs: [get, list, watch, create, update]
{{- end }}
{{- define "siesta.operator.bindRules" }}
  # Binding the gateway's Lease ClusterRole, and no other, in the models' namespaces.
  - apiGroups: [rbac.authorization.k8s.io]
    resources: [clusterroles]
    verbs: [bind]
    resourceNames: [{{ include "siesta.gateway.leaseRole" . }}]
{{- end }}
