"""Pods and owned objects as the operator sees them: pure functions, no I/O.

A pod the scheduler cannot place (PodScheduled=False, Unschedulable) is waiting for a GPU
node; any other pod that is not ready is starting (pulling, downloading, loading). Pods that
crash or fail to pull are neither: they are reported, and never hold a scale-down forever.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from siesta.api.contract import CONFIG_HASH_ANNOTATION
from siesta.api.models import ColdStart
from siesta.operator.render import STATEFULSET_IMMUTABLE_FIELDS
from siesta.policy import Observed

FAILING_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def format_time(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC, whole seconds (what Kubernetes writes)."""
    return _utc(moment) if moment is not None else None


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class PodView:
    """What the operator keeps of a pod (the value of the pods index)."""

    name: str
    uid: str
    ordinal: int
    created: datetime | None
    phase: str
    ready: bool
    ready_since: datetime | None
    scheduled_at: datetime | None
    unschedulable: bool
    unschedulable_message: str
    failing: str | None
    terminating: bool


@dataclass(frozen=True)
class ChildView:
    """What the operator keeps of a StatefulSet or Service it owns (the children index)."""

    kind: str
    name: str
    config_hash: str
    replicas: int = 0
    immutable: Mapping[str, Any] | None = None
    """A StatefulSet's fields that cannot change in place (to tell update from re-create)."""


def child_view(body: Mapping[str, Any]) -> ChildView:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    kind = str(body.get("kind") or "")
    immutable = (
        {key: spec[key] for key in STATEFULSET_IMMUTABLE_FIELDS if key in spec}
        if kind == "StatefulSet"
        else None
    )
    return ChildView(
        kind=kind,
        name=str(meta.get("name", "")),
        config_hash=str((meta.get("annotations") or {}).get(CONFIG_HASH_ANNOTATION, "")),
        replicas=int(spec.get("replicas") or 0),
        immutable=immutable,
    )


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind:
            return condition  # type: ignore[no-any-return]
    return None


def _ordinal(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def _failing(status: Mapping[str, Any]) -> str | None:
    if status.get("phase") == "Failed":
        return str(status.get("reason") or "Failed")
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in FAILING_REASONS:
            return str(waiting["reason"])
    return None


def pod_view(body: Mapping[str, Any]) -> PodView:
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    ready = _condition(status, "Ready")
    scheduled = _condition(status, "PodScheduled")
    is_ready = bool(ready and ready.get("status") == "True")
    unschedulable = bool(
        scheduled
        and scheduled.get("status") == "False"
        and scheduled.get("reason") == "Unschedulable"
    )
    return PodView(
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        ordinal=_ordinal(str(meta.get("name", ""))),
        created=parse_time(meta.get("creationTimestamp")),
        phase=str(status.get("phase") or "Pending"),
        ready=is_ready,
        ready_since=parse_time(ready.get("lastTransitionTime")) if ready and is_ready else None,
        scheduled_at=(
            parse_time(scheduled.get("lastTransitionTime"))
            if scheduled and scheduled.get("status") == "True"
            else None
        ),
        unschedulable=unschedulable,
        unschedulable_message=str(scheduled.get("message", ""))
        if scheduled and unschedulable
        else "",
        failing=_failing(status),
        terminating=bool(meta.get("deletionTimestamp")),
    )


def _wanted(pods: Iterable[PodView], replicas: int) -> list[PodView]:
    """Pods that belong to the current replica count and are not going away."""
    return [p for p in pods if not p.terminating and 0 <= p.ordinal < replicas]


def observe(replicas: int, pods: Iterable[PodView]) -> Observed:
    """The policy's view: a replica that has no pod yet is starting, a failing one is neither."""
    wanted = _wanted(pods, replicas)
    ready = sum(1 for p in wanted if p.ready)
    failing = sum(1 for p in wanted if not p.ready and p.failing)
    waiting = sum(1 for p in wanted if not p.ready and p.unschedulable)
    starting = max(replicas - ready - failing, 0)
    return Observed(
        replicas=replicas, ready=ready, starting=starting, waiting_for_gpu=min(waiting, starting)
    )


def failing_pods(replicas: int, pods: Iterable[PodView]) -> list[PodView]:
    return [p for p in _wanted(pods, replicas) if not p.ready and p.failing]


def waiting_message(replicas: int, pods: Iterable[PodView]) -> str:
    for pod in _wanted(pods, replicas):
        if pod.unschedulable and not pod.ready:
            return pod.unschedulable_message
    return ""


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round(max((end - start).total_seconds(), 0.0), 3)


def cold_start(pods: Iterable[PodView], previous: ColdStart | None) -> ColdStart | None:
    """The last completed start (pod created -> scheduled -> ready) and any start in progress.

    Derived from pod timestamps only, so an operator restart computes the same answer.
    """
    live = [p for p in pods if not p.terminating]
    finished = [p for p in live if p.ready and p.ready_since and p.created]
    in_progress = [p.created for p in live if not p.ready and p.created]
    started_at = _utc(min(in_progress)) if in_progress else None
    if finished:
        latest = max(finished, key=lambda p: p.ready_since or p.created)  # type: ignore[arg-type,return-value]
        scheduled = latest.scheduled_at or latest.created
        return ColdStart(
            last_seconds=_seconds(latest.created, latest.ready_since),
            pending_seconds=_seconds(latest.created, scheduled),
            loading_seconds=_seconds(scheduled, latest.ready_since),
            started_at=started_at,
        )
    if previous is None and started_at is None:
        return None
    base = previous or ColdStart()
    return ColdStart(
        last_seconds=base.last_seconds,
        pending_seconds=base.pending_seconds,
        loading_seconds=base.loading_seconds,
        started_at=started_at,
    )
