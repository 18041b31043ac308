"""Carry out one model's `Plan` (siesta.operator.plan): the API calls, in order, and metrics.

Nothing is decided here. Order: owned objects, pods on an older template (deleted by uid,
so the StatefulSet makes them again from the current one), the expired override, the
replica write, the events, the status. A failed child write raises `ChildrenFailed` so the
loop can say why in the status; a failed status write raises `StatusNotWritten` (everything
before it happened, so the loop must not repeat it); any other failure propagates and the
loop retries with back-off.
"""

from __future__ import annotations

import logging
from datetime import datetime

from kubernetes.client.exceptions import ApiException

from siesta.api.contract import bridge_name
from siesta.operator import render, telemetry
from siesta.operator.kube import Kube, api_error_message
from siesta.operator.plan import ChildWrite, Plan

logger = logging.getLogger(__name__)


class ChildrenFailed(Exception):
    """The API server refused a child write; `message` is its answer."""

    def __init__(self, error: ApiException) -> None:
        super().__init__(api_error_message(error))
        self.error = error
        self.message = api_error_message(error)


class StatusNotWritten(Exception):
    """Only the status write failed: the plan's other writes and events are done."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


async def execute(plan: Plan, kube: Kube, owner: render.Owner, now: datetime) -> None:
    namespace, name = owner.namespace, owner.name
    for write in plan.children:
        try:
            await _write_child(kube, write)
        except ApiException as error:
            raise ChildrenFailed(error) from error
    for replacement in plan.replace_pods:
        await kube.delete_pod(namespace, replacement.pod, replacement.uid)
        logger.info(
            "%s/%s: replaced pod %s (%s)", namespace, name, replacement.pod, replacement.why
        )
    if plan.clear_manual_replicas:
        await kube.clear_manual_replicas(namespace, name)
    if plan.scale is not None:
        await kube.scale(namespace, name, plan.scale.desired)
        direction = "up" if plan.scale.up else "down"
        telemetry.SCALE_CHANGES.labels(namespace, name, direction, plan.scale.rule).inc()
        logger.info("%s/%s: scaled %s", namespace, name, plan.scale.message)
    if plan.bridge_scale is not None:
        await kube.scale(namespace, bridge_name(name), plan.bridge_scale.desired)
        logger.info("%s/%s: bridge scaled %s", namespace, name, plan.bridge_scale.message)
    for event in plan.events:
        try:
            await kube.post_event(owner, event.reason, event.message, now, event.warning)
        except Exception:  # an event is information; what it reports has happened
            logger.warning(
                "%s/%s: could not post event %s", namespace, name, event.reason, exc_info=True
            )
    if plan.status is not None:
        try:
            await kube.patch_status(namespace, name, plan.status)
        except Exception as error:
            raise StatusNotWritten(error) from error


async def _write_child(kube: Kube, write: ChildWrite) -> None:
    meta = write.manifest["metadata"]
    if write.action == "delete":
        logger.info(
            "deleting %s %s/%s: spec.bridge is gone", write.kind, meta["namespace"], meta["name"]
        )
        await kube.delete(write.kind, meta["namespace"], meta["name"])
        return
    if write.action == "recreate":
        logger.info(
            "re-creating StatefulSet %s/%s: an immutable field changed",
            meta["namespace"],
            meta["name"],
        )
        await kube.delete_orphaning_pods(meta["namespace"], meta["name"])
        return
    if write.action == "create":
        await kube.create(write.manifest, write.replicas)
    else:
        await kube.update(write.manifest, write.replicas)
    if write.kind == "StatefulSet":
        logger.info("%s/%s: StatefulSet written", meta["namespace"], meta["name"])


def record(plan: Plan, namespace: str, name: str) -> None:
    """The model's gauges and counters for this step (siesta_operator_*)."""
    model = (namespace, name)
    if plan.phase is not None:
        telemetry.PHASE.labels(*model).set(telemetry.PHASE_CODES[plan.phase])
    for phase, seconds in plan.cold_starts:
        telemetry.COLD_START.labels(*model, phase).observe(seconds)
    decision, observed = plan.decision, plan.observed
    if decision is None or observed is None:
        return
    telemetry.DECISIONS.labels(*model, decision.rule).inc()
    telemetry.DESIRED_REPLICAS.labels(*model).set(decision.desired)
    telemetry.REPLICAS.labels(*model).set(observed.replicas)
    telemetry.READY_REPLICAS.labels(*model).set(observed.ready)
    telemetry.WAITING_FOR_GPU.labels(*model).set(observed.waiting_for_gpu)
    if plan.bridge_observed is not None:
        telemetry.BRIDGE_REPLICAS.labels(*model).set(plan.bridge_observed.replicas)
        telemetry.BRIDGE_READY_REPLICAS.labels(*model).set(plan.bridge_observed.ready)
    value = plan.load.value if plan.load is not None else None
    telemetry.LOAD.labels(*model).set(value if value is not None else float("nan"))
