"""The Kubernetes operator: kopf handlers and the only Kubernetes/Prometheus I/O.

Pure parts (no I/O, unit-tested): `settings` (environment), `render` (StatefulSet and
Services from a ModelDeployment), `observe` (pods -> policy.Observed), `demand` (gateway
Leases -> signals), `metrics_source.interpret`, `status` (the status patch).
I/O adapters: `kube` (Kubernetes API calls, counted), `metrics_source.PrometheusSource`.
`reconcile` runs one model's loop (gather -> decide -> apply); `handlers` wires it into kopf:
run it with `siesta operator` or `kopf run -m siesta.operator.handlers`.
"""
