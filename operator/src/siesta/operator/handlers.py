"""kopf handlers: small, typed, taking only the keyword arguments they use.

Run with `siesta operator` or `kopf run -m siesta.operator.handlers`. One daemon per
ModelDeployment runs its loop (siesta.operator.reconcile); watches of the model's pods,
demand Leases, StatefulSet and Services keep in-memory indexes (no listing) and wake that
daemon at once through an asyncio.Event.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from siesta.api.contract import (
    BRIDGE_LABEL,
    GROUP,
    MANAGED_BY_LABEL,
    MODEL_LABEL,
    PLURAL,
    VERSION,
    ModelKey,
)
from siesta.operator import cost_loop, telemetry, wake_recorder
from siesta.operator.demand import lease_view
from siesta.operator.kube import Kube, RetryLater, load_credentials
from siesta.operator.names import NameClaim, alias_of, bare_name_holder
from siesta.operator.observe import ChildView, PodView, child_view, pod_view
from siesta.operator.plan import Views
from siesta.operator.reconcile import ModelLoop, Runtime, sleep_until_woken
from siesta.operator.settings import OperatorSettings

FINALIZER = "siesta.dev/operator"
COST_LOOP = cost_loop  # its timer (status.cost) registers with kopf on import
MAX_BACKOFF_SECONDS = 60.0
WAKE_RECORDER = wake_recorder  # its pod handler (status.lastWake) registers on import
OWNED = {MODEL_LABEL: kopf.PRESENT}
BRIDGED = {BRIDGE_LABEL: kopf.PRESENT}
"""A model's CPU bridge (docs/bridge.md): its own label, never MODEL_LABEL."""
OPERATOR_MADE = f"{MANAGED_BY_LABEL}=siesta-operator"
"""On everything the operator writes, model and bridge alike (a label selector cannot say
"MODEL_LABEL or BRIDGE_LABEL")."""

logger = logging.getLogger(__name__)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    # Built once by `siesta operator` (flags over environment); `kopf run -m` has no flags.
    own: OperatorSettings = getattr(memo, "settings", None) or OperatorSettings.from_env()
    load_credentials()
    memo.runtime = Runtime(own, Kube())
    settings.persistence.finalizer = FINALIZER
    if own.namespaces:
        # Exact namespace names need no namespace listing (and no RBAC on namespaces).
        settings.scanning.disabled = True
    # Handler logs stay in the log; Kubernetes Events are for scale changes (posted by us).
    settings.posting.level = logging.WARNING
    # Watch only what Siesta owns: the label filter runs in the API server. Pods,
    # StatefulSets, Services and NetworkPolicies are the models' and their bridges' (both
    # made by the operator); Leases are the gateways'.
    watched: dict[str | tuple[str, str], str] = {
        ("coordination.k8s.io", "leases"): MODEL_LABEL,
        ("rbac.authorization.k8s.io", "rolebindings"): MODEL_LABEL,
        "pods": OPERATOR_MADE,
        ("apps", "statefulsets"): OPERATOR_MADE,
        "services": OPERATOR_MADE,
        ("networking.k8s.io", "networkpolicies"): OPERATOR_MADE,
    }
    for selector, labels in watched.items():
        settings.watching.label_selectors[selector] = labels
    telemetry.serve(own.metrics_port)
    logger.info(
        "siesta operator: images %s (CPU), %s (GPU), prometheus %s, metric interval %s, metrics port %s",
        own.server_image,
        own.server_cuda_image,
        own.prometheus_url or "(none)",
        own.metric_interval,
        own.metrics_port,
    )


@kopf.on.probe(id="siesta")
def report_preflight(memo: Any, **_: Any) -> dict[str, object]:
    """On /healthz (--liveness): peering mode and what the operator waits for."""
    preflight = getattr(memo, "preflight", None)
    return preflight.health() if preflight is not None else {}


# --- indexes: the operator's view of what each model owns ---------------------------------


@kopf.index("pods", labels=OWNED)
def pods_by_model(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Any, PodView]:
    return {(namespace, labels[MODEL_LABEL]): pod_view(body)}


@kopf.index("coordination.k8s.io", "v1", "leases", labels=OWNED)
def leases_by_model(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Any, Any]:
    return {(namespace, labels[MODEL_LABEL]): lease_view(body)}


@kopf.index("apps", "v1", "statefulsets", labels=OWNED)
def statefulsets_by_model(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Any, ChildView]:
    return {(namespace, labels[MODEL_LABEL]): child_view({**body, "kind": "StatefulSet"})}


@kopf.index("", "v1", "services", labels=OWNED)
def services_by_model(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Any, ChildView]:
    return {(namespace, labels[MODEL_LABEL]): child_view({**body, "kind": "Service"})}


@kopf.index("networking.k8s.io", "v1", "networkpolicies", labels=OWNED)
def network_policies_by_model(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Any, ChildView]:
    return {(namespace, labels[MODEL_LABEL]): child_view({**body, "kind": "NetworkPolicy"})}


@kopf.index("rbac.authorization.k8s.io", "v1", "rolebindings", labels=OWNED)
def role_bindings_by_model(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Any, ChildView]:
    return {(namespace, labels[MODEL_LABEL]): child_view({**body, "kind": "RoleBinding"})}


@kopf.index("pods", labels=BRIDGED)
def bridge_pods_by_model(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Any, PodView]:
    return {(namespace, labels[BRIDGE_LABEL]): pod_view(body)}


@kopf.index("apps", "v1", "statefulsets", labels=BRIDGED)
def bridge_statefulsets_by_model(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Any, ChildView]:
    return {(namespace, labels[BRIDGE_LABEL]): child_view({**body, "kind": "StatefulSet"})}


@kopf.index("", "v1", "services", labels=BRIDGED)
def bridge_services_by_model(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Any, ChildView]:
    return {(namespace, labels[BRIDGE_LABEL]): child_view({**body, "kind": "Service"})}


@kopf.index("networking.k8s.io", "v1", "networkpolicies", labels=BRIDGED)
def bridge_network_policies_by_model(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Any, ChildView]:
    return {(namespace, labels[BRIDGE_LABEL]): child_view({**body, "kind": "NetworkPolicy"})}


@kopf.index(GROUP, VERSION, PLURAL)
def models_by_alias(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[Any, NameClaim]:
    created = str(body.get("metadata", {}).get("creationTimestamp") or "")
    return {alias_of(body): NameClaim(created, namespace or "", name)}


# --- wake-ups: any change of a model's objects runs its loop at once ----------------------


@kopf.on.event("coordination.k8s.io", "v1", "leases", labels=OWNED)
@kopf.on.event("pods", labels=OWNED)
@kopf.on.event("apps", "v1", "statefulsets", labels=OWNED)
@kopf.on.event("", "v1", "services", labels=OWNED)
@kopf.on.event("networking.k8s.io", "v1", "networkpolicies", labels=OWNED)
@kopf.on.event("rbac.authorization.k8s.io", "v1", "rolebindings", labels=OWNED)
def wake_owner(namespace: str | None, labels: kopf.Labels, memo: Any, **_: Any) -> None:
    memo.runtime.wake(ModelKey(namespace or "", labels[MODEL_LABEL]))


@kopf.on.event("pods", labels=BRIDGED)
@kopf.on.event("apps", "v1", "statefulsets", labels=BRIDGED)
@kopf.on.event("", "v1", "services", labels=BRIDGED)
@kopf.on.event("networking.k8s.io", "v1", "networkpolicies", labels=BRIDGED)
def wake_bridged(namespace: str | None, labels: kopf.Labels, memo: Any, **_: Any) -> None:
    memo.runtime.wake(ModelKey(namespace or "", labels[BRIDGE_LABEL]))


@kopf.on.event(GROUP, VERSION, PLURAL)  # type: ignore[arg-type]  # an index, as in run_model
def wake_model(
    namespace: str | None,
    name: str,
    body: kopf.Body,
    memo: Any,
    models_by_alias: kopf.Index[Any, NameClaim],
    **_: Any,
) -> None:
    memo.runtime.wake(ModelKey(namespace or "", name))
    for claim in models_by_alias.get(alias_of(body), []):  # who holds the name may change
        memo.runtime.wake(ModelKey(claim.namespace, claim.name))


# --- the per-model loop --------------------------------------------------------------------


# kopf passes indexes by their names; its DaemonFn protocol does not list them, hence the ignore.
@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=1.0)  # type: ignore[arg-type]
async def run_model(
    body: kopf.Body,
    namespace: str | None,
    name: str,
    uid: str,
    memo: Any,
    stopped: kopf.DaemonStopped,
    pods_by_model: kopf.Index[Any, PodView],
    leases_by_model: kopf.Index[Any, Any],
    statefulsets_by_model: kopf.Index[Any, ChildView],
    services_by_model: kopf.Index[Any, ChildView],
    network_policies_by_model: kopf.Index[Any, ChildView],
    role_bindings_by_model: kopf.Index[Any, ChildView],
    models_by_alias: kopf.Index[Any, NameClaim],
    bridge_pods_by_model: kopf.Index[Any, PodView],
    bridge_statefulsets_by_model: kopf.Index[Any, ChildView],
    bridge_services_by_model: kopf.Index[Any, ChildView],
    bridge_network_policies_by_model: kopf.Index[Any, ChildView],
    **_: Any,
) -> None:
    runtime: Runtime = memo.runtime
    namespace = namespace or ""  # ModelDeployments are namespaced; kopf types it optional
    key = ModelKey(namespace, name)
    waker = runtime.waker(key)
    model = ModelLoop(runtime, namespace, name, uid, dict(body.get("status") or {}))
    backoff = 1.0
    try:
        while not stopped:
            waker.clear()  # events from here on run the next cycle
            created = str(body.get("metadata", {}).get("creationTimestamp") or "")
            views = Views.build(
                pods_by_model.get(key, []),
                leases_by_model.get(key, []),
                [
                    *statefulsets_by_model.get(key, []),
                    *services_by_model.get(key, []),
                    *network_policies_by_model.get(key, []),
                    *role_bindings_by_model.get(key, []),
                ],
                bare_name_holder(
                    NameClaim(created, namespace, name), models_by_alias.get(alias_of(body), [])
                ),
                bridge_pods=bridge_pods_by_model.get(key, []),
                bridge_children=[
                    *bridge_statefulsets_by_model.get(key, []),
                    *bridge_services_by_model.get(key, []),
                    *bridge_network_policies_by_model.get(key, []),
                ],
            )
            try:
                delay = await model.step(body, views)
                backoff = 1.0
            except RetryLater as wait:
                logger.info("%s/%s: %s; retrying in %ss", namespace, name, wait, wait.delay)
                delay = wait.delay
            except Exception as error:
                stage = type(error).__name__
                telemetry.RECONCILE_ERRORS.labels(namespace, name, stage).inc()
                logger.exception(
                    "%s/%s: reconcile failed; retrying in %ss", namespace, name, backoff
                )
                delay, backoff = backoff, min(backoff * 2, MAX_BACKOFF_SECONDS)
            await sleep_until_woken(waker, delay, stopped.wait())
    finally:
        runtime.forget(key)
        telemetry.forget_model(namespace, name)
