"""The Kubernetes operator: kopf handlers and the only Kubernetes/Prometheus I/O.

Pure parts (no I/O, unit-tested): `settings` (flags and environment), `render` (StatefulSet
and Services from a ModelDeployment), `observe` (pods and children -> what the policy sees),
`demand` (gateway Leases -> signals), `load` (the load query and its answer), `status` (the
status patch) and `plan` (one model's reconcile as data).
I/O adapters: `kube` (Kubernetes API calls, counted), `metrics_source.PrometheusSource`,
`execute` (carries out a plan). `reconcile` runs one model's loop (gather -> plan ->
execute); `handlers` wires it into kopf: run it with `siesta operator` or
`kopf run -m siesta.operator.handlers`.
"""
