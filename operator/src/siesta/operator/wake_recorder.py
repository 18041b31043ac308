"""Records each server pod's start, stage by stage (wake_stages.py), once it is Ready.

Gathers the objects the timeline is derived from (the pod's and the model's Events,
Karpenter's NodeClaim for the pod's node, the server's own /metrics for its fetch and
load), then writes status.lastWake (with the `Wake` printer column's summary), posts a
`WakeStages` Event and observes `siesta_operator_wake_stage_seconds`. A pod is recorded
once: status.lastWake names its UID, so a restarted operator does not record it again, and
keeps the server's report even if the server is gone by then.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
import kopf
from kubernetes.client import ApiException

from siesta.api.contract import MODEL_LABEL
from siesta.operator.kube import Kube
from siesta.operator.render import HTTP_PORT, Owner
from siesta.operator.telemetry import WAKE_STAGE
from siesta.operator.wake_stages import (
    ServerReport,
    WakeObjects,
    WakeTimeline,
    derive,
    is_newer,
    report_from_status,
    server_report,
    status_of,
)

logger = logging.getLogger(__name__)

METRICS_TIMEOUT_SECONDS = 2.0
_recorded: set[str] = set()  # pod UIDs done in this process (saves a read per pod event)
MAX_REMEMBERED = 10_000


@kopf.on.event("pods", labels={MODEL_LABEL: kopf.PRESENT})
async def record_when_ready(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, memo: Any, **_: Any
) -> None:
    uid = str(body.get("metadata", {}).get("uid", ""))
    if uid in _recorded or body.get("metadata", {}).get("deletionTimestamp"):
        return
    if not is_ready(body):
        return
    runtime = getattr(memo, "runtime", None)
    if runtime is None:
        return
    try:
        await record(runtime.kube, namespace or "", labels[MODEL_LABEL], body)
    except (ApiException, OSError) as error:
        # Not fatal: the next event of the pod tries again; the model is served regardless.
        logger.warning("cannot record the start of %s: %s", body["metadata"].get("name"), error)
        return
    if len(_recorded) >= MAX_REMEMBERED:
        _recorded.clear()
    _recorded.add(uid)


def is_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


async def record(
    kube: Kube, namespace: str, model: str, pod: Mapping[str, Any]
) -> WakeTimeline | None:
    """Derive and record the start of `pod` (Ready) unless status.lastWake already has it."""
    uid = str((pod.get("metadata") or {}).get("uid", ""))
    owner_body = await kube.model(namespace, model)
    if owner_body is None:
        return None  # the model is gone
    last_wake = (owner_body.get("status") or {}).get("lastWake")
    if last_wake and last_wake.get("podUID") == uid:
        return None
    server = report_from_status(last_wake, uid) or await read_report(pod)
    pod_name = str(pod["metadata"]["name"])
    timeline = derive(
        WakeObjects(
            pod=pod,
            pod_events=await kube.pod_events(namespace, pod_name),
            model_events=await kube.events(namespace, "ModelDeployment", model),
            node_claim=await _node_claim(kube, str((pod.get("spec") or {}).get("nodeName", ""))),
            server=server,
        )
    )
    if timeline is None or not is_newer(timeline, last_wake):
        return None
    status = status_of(timeline)
    await kube.patch_status(namespace, model, {"lastWake": status})
    owner = Owner(
        name=model,
        namespace=namespace,
        uid=str(owner_body["metadata"]["uid"]),
    )
    stages = ", ".join(f"{s.name} {s.seconds:g}s" for s in timeline.stages[1:])
    await kube.post_event(
        owner,
        "WakeStages",
        f"{timeline.pod} ready {timeline.total_seconds:g}s after the scale-up: {stages}",
        timeline.stages[-1].ended,
    )
    for stage in timeline.stages[1:]:
        WAKE_STAGE.labels(namespace, model, stage.name).observe(stage.seconds)
    WAKE_STAGE.labels(namespace, model, "total").observe(timeline.total_seconds)
    logger.info("%s/%s: %s", namespace, model, status["summary"])
    return timeline


async def read_report(pod: Mapping[str, Any]) -> ServerReport | None:
    """The server's fetch and load from its /metrics; None if it does not answer."""
    address = (pod.get("status") or {}).get("podIP")
    if not address:
        return None
    url = f"http://{address}:{HTTP_PORT}/metrics"
    try:
        timeout = aiohttp.ClientTimeout(total=METRICS_TIMEOUT_SECONDS)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url) as response,
        ):
            if response.status != 200:
                return None
            return server_report(await response.text())
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        logger.info("no fetch report from %s: %s", url, error)
        return None


async def _node_claim(kube: Kube, node: str) -> dict[str, Any] | None:
    """Karpenter's NodeClaim of `node`; None without Karpenter (or without the right to read
    NodeClaims: the node stages are then left out)."""
    if not node:
        return None
    for claim in await kube.node_claims():
        if (claim.get("status") or {}).get("nodeName") == node:
            return claim
    return None
