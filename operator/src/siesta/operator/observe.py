"""Pods and owned objects as the operator sees them: pure functions, no I/O.

Every pod of the current replica count is ready, starting or failing:
- starting: making progress: Pending (the scheduler's reason is kept and classified, see
  `pending_cause`), or running and loading (`/health` 503) without having restarted;
- failing: a container that has restarted and is not ready (CrashLoopBackOff, Error,
  OOMKilled) or cannot start (image pull, config errors). Its container's last words (the
  termination message, else the waiting message) are kept for the status.
Starting pods hold a scale-down (rule 5) only within scaling.startupTimeout; failing pods
never do (siesta.policy.decide).
"""

from __future__ import annotations

import re
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

# Why a pod is Pending, from the scheduler's message (PodScheduled=False): the first rule
# with an alternative whose words all appear wins (a pod lacking both a volume and a GPU
# is blocked first by its volume, which no new node fixes).
WAITING_FOR_GPU = "WaitingForGPU"
PENDING_CAUSES: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    (
        "VolumeNotBound",
        (("unbound", "persistentvolumeclaim"), ("didn't find available persistent volumes",)),
    ),
    ("VolumeMissing", (("persistentvolumeclaim", "not found"),)),
    ("VolumeNodeConflict", (("volume node affinity",),)),
    ("StorageClassMissing", (("storageclass",),)),
    ("QuotaExceeded", (("exceeded quota",),)),
    (
        WAITING_FOR_GPU,
        (
            ("nvidia.com/gpu",),
            ("node affinity",),
            ("affinity/selector",),
            ("node selector",),
            ("taint",),
            ("no nodes available",),
            ("insufficient",),
        ),
    ),
)
UNSCHEDULABLE = "Unschedulable"
REVISION_LABEL = "controller-revision-hash"
"""Set by the StatefulSet controller on each pod: the template revision it was made from."""

# The scheduler sums up its filters per node: "0/6 nodes are available: 1 node(s) didn't find
# available persistent volumes to bind, 5 node(s) didn't match Pod's node affinity/selector."
# Nodes turned away for these reasons are not the model's (wrong labels, a taint it does not
# tolerate): what stops the pod is said by the other nodes, those its GPU selection accepts.
# The reasons end with the first sentence (then "preemption: ..." or "no new claims ...").
_NODE_REASONS = re.compile(r"\d+/\d+ nodes are available: (.*?)(?:\.\s|\.?$)", re.S)
_ONE_REASON = re.compile(r",\s*(?=\d+ )")
NOT_SELECTED = ("affinity/selector", "untolerated taint", "node(s) had taint")


def node_reasons(message: str) -> list[str]:
    """The per-node reasons of a scheduler message ("5 node(s) didn't match ..."), in order."""
    found = _NODE_REASONS.search(message)
    if not found:
        return []
    return [part.strip() for part in _ONE_REASON.split(found.group(1)) if part.strip()]


def pending_cause(message: str) -> str:
    """Classify the scheduler's message: WaitingForGPU only when a node could help.

    Reasons given for nodes the model does not select are left out when other nodes say
    more: a cache volume that cannot bind on the one GPU node that matches is a volume
    problem, however many CPU nodes did not match the GPU selector.
    """
    reasons = node_reasons(message)
    selected = [r for r in reasons if not any(m in r.lower() for m in NOT_SELECTED)]
    text = (" ".join(selected) if selected else message).lower()
    for cause, alternatives in PENDING_CAUSES:
        if any(all(word in text for word in words) for words in alternatives):
            return cause
    return UNSCHEDULABLE


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
    """Why the pod is failing (CrashLoopBackOff, OOMKilled, ImagePullBackOff...), or None."""
    terminating: bool
    address: str = ""
    """status.podIP: where the operator reads a ready server's own /metrics."""
    last_words: str = ""
    """The container's termination message (its log's end with FallbackToLogsOnError) or
    the kubelet's waiting message: why it is failing, in its own words."""
    restarts: int = 0
    revision: str = ""
    """The template revision the pod was made from (its controller-revision-hash label)."""

    @property
    def pending_cause(self) -> str | None:
        """Why an unscheduled pod waits (see `pending_cause`); None if it is scheduled."""
        return pending_cause(self.unschedulable_message) if self.unschedulable else None


@dataclass(frozen=True)
class ChildView:
    """What the operator keeps of a StatefulSet or Service it owns (the children index)."""

    kind: str
    name: str
    config_hash: str
    replicas: int = 0
    immutable: Mapping[str, Any] | None = None
    """A StatefulSet's fields that cannot change in place (to tell update from re-create)."""
    update_revision: str = ""
    """A StatefulSet's status.updateRevision: the revision its current template makes."""
    revisions_known: bool = False
    """The StatefulSet controller has seen the latest template (observedGeneration)."""


def child_view(body: Mapping[str, Any]) -> ChildView:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
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
        update_revision=str(status.get("updateRevision") or ""),
        revisions_known=int(status.get("observedGeneration") or 0)
        >= int(meta.get("generation") or 1),
    )


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind:
            return condition  # type: ignore[no-any-return]
    return None


def _ordinal(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def _containers(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def _failing(status: Mapping[str, Any]) -> str | None:
    """A reason when a container cannot start or has exited with an error (restarted)."""
    if status.get("phase") == "Failed":
        return str(status.get("reason") or "Failed")
    for container in _containers(status):
        state = container.get("state") or {}
        waiting = state.get("waiting") or {}
        terminated = state.get("terminated") or {}
        last = (container.get("lastState") or {}).get("terminated") or {}
        if waiting.get("reason") in FAILING_REASONS:
            # CrashLoopBackOff says that it restarts; the exit says why (OOMKilled, Error).
            if waiting["reason"] == "CrashLoopBackOff" and last.get("reason") == "OOMKilled":
                return "OOMKilled"
            return str(waiting["reason"])
        if terminated and terminated.get("exitCode") not in (None, 0):
            return str(terminated.get("reason") or "Error")
        if last and last.get("exitCode") not in (None, 0) and not container.get("ready"):
            # Restarted and not ready again: the same crash loop as in its back-off.
            return "OOMKilled" if last.get("reason") == "OOMKilled" else "CrashLoopBackOff"
    return None


def _last_words(status: Mapping[str, Any]) -> str:
    """The newest thing a failing container said: termination message, else waiting message."""
    for container in _containers(status):
        state = container.get("state") or {}
        for terminated in (
            state.get("terminated") or {},
            (container.get("lastState") or {}).get("terminated") or {},
        ):
            message = str(terminated.get("message") or "").strip()
            if message and terminated.get("exitCode") not in (None, 0):
                return _tail_line(message)
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in FAILING_REASONS and waiting.get("message"):
            return _tail_line(str(waiting["message"]))
    return ""


def _tail_line(message: str, limit: int = 400) -> str:
    """The last non-empty line (a log fallback ends with the error), at most `limit` chars."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    text = lines[-1] if lines else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _restarts(status: Mapping[str, Any]) -> int:
    return sum(int(c.get("restartCount") or 0) for c in _containers(status))


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
        failing=None if is_ready else _failing(status),
        terminating=bool(meta.get("deletionTimestamp")),
        last_words=_last_words(status),
        restarts=_restarts(status),
        address=str(status.get("podIP") or ""),
        revision=str((meta.get("labels") or {}).get(REVISION_LABEL) or ""),
    )


def _wanted(pods: Iterable[PodView], replicas: int) -> list[PodView]:
    """Pods that belong to the current replica count and are not going away."""
    return [p for p in pods if not p.terminating and 0 <= p.ordinal < replicas]


def observe(replicas: int, pods: Iterable[PodView], scaled_at: datetime | None = None) -> Observed:
    """The policy's view: a replica that has no pod yet is starting, a failing one is not.

    `scaled_at` (the last replica change) is when a replica without a pod object started
    (the StatefulSet controller may be unable to create it, e.g. over a quota).
    """
    wanted = _wanted(pods, replicas)
    ready = sum(1 for p in wanted if p.ready)
    failing = failing_pods(replicas, wanted)
    starting = [p for p in wanted if not p.ready and not p.failing]
    waiting = sum(1 for p in starting if p.pending_cause == WAITING_FOR_GPU)
    count = max(replicas - ready - len(failing), 0)
    created = [p.created for p in starting if p.created is not None]
    if count > len(starting) and scaled_at is not None:
        created.append(scaled_at)
    return Observed(
        replicas=replicas,
        ready=ready,
        starting=count,
        waiting_for_gpu=min(waiting, count),
        failing=len(failing),
        failure_reason=str(failing[0].failing) if failing else "",
        failure=failure_text(failing[0]) if failing else "",
        starting_since=min(created) if created else None,
    )


def failure_text(pod: PodView) -> str:
    """`pod: reason: last words`, one line."""
    words = f": {pod.last_words}" if pod.last_words else ""
    return f"{pod.name}: {pod.failing}{words}"


def failing_pods(replicas: int, pods: Iterable[PodView]) -> list[PodView]:
    return [p for p in _wanted(pods, replicas) if not p.ready and p.failing]


def waiting_message(replicas: int, pods: Iterable[PodView]) -> str:
    for pod in _wanted(pods, replicas):
        if pod.unschedulable and not pod.ready:
            return pod.unschedulable_message
    return ""


def pending_pods(replicas: int, pods: Iterable[PodView]) -> list[PodView]:
    """Unscheduled pods that wait for something other than a GPU node (volume, quota...)."""
    return [
        p
        for p in _wanted(pods, replicas)
        if not p.ready and not p.failing and p.pending_cause not in (None, WAITING_FOR_GPU)
    ]


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
