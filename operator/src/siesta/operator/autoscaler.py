"""What the node autoscaler says about a pod it will not (or cannot) provision for. Pure.

A Pending pod's scheduler message says why no *existing* node fits; whether a *new* node
will come is the autoscaler's word, posted as Events on the pod: cluster-autoscaler's
`NotTriggerScaleUp` ("pod didn't trigger scale-up: ..."), Karpenter's Warning events
(reporting component `karpenter`, e.g. "Failed to schedule pod, incompatible with nodepool
..."). The newest such Event is shown with the model's waiting reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from siesta.operator.observe import parse_time

CLUSTER_AUTOSCALER_REASONS = frozenset({"NotTriggerScaleUp", "FailedScaleUp"})


@dataclass(frozen=True)
class PodEvent:
    """The parts of a core/v1 Event about a pod that tell an autoscaler's verdict."""

    pod: str
    reason: str
    message: str
    component: str
    warning: bool
    at: datetime | None


def pod_event(body: Mapping[str, Any]) -> PodEvent:
    source = body.get("source") or {}
    component = str(
        body.get("reportingComponent")
        or source.get("component")
        or body.get("reportingController")
        or ""
    )
    stamp = body.get("lastTimestamp") or body.get("eventTime") or body.get("firstTimestamp")
    return PodEvent(
        pod=str((body.get("involvedObject") or {}).get("name", "")),
        reason=str(body.get("reason") or ""),
        message=str(body.get("message") or "").strip(),
        component=component,
        warning=body.get("type") == "Warning",
        at=parse_time(stamp) if isinstance(stamp, str) else None,
    )


def _autoscaler(event: PodEvent) -> str | None:
    if event.reason in CLUSTER_AUTOSCALER_REASONS:
        return "cluster-autoscaler"
    if "karpenter" in event.component.lower() and event.warning:
        return "Karpenter"
    return None


def verdict(events: Iterable[PodEvent]) -> str:
    """The newest autoscaler event as `who: message` ("" when no autoscaler has spoken)."""
    found = [(e, who) for e in events if (who := _autoscaler(e)) is not None and e.message]
    if not found:
        return ""
    event, who = max(found, key=lambda pair: pair[0].at.timestamp() if pair[0].at else 0.0)
    return f"{who}: {event.message}"
