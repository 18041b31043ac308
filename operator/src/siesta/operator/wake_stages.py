"""A wake, stage by stage: from the operator's scale-up to the model server's Ready.

Pure: every time comes from an object (the pod's conditions and container state, the
Node, Karpenter's NodeClaim, the kubelet's and the operator's Events) or from what the
model server reported about its fetch and load (recorded in status.lastWake), so an
operator that restarts derives the same timeline. A stage whose evidence is missing (no
NodeClaim: the pod landed on a node that was already there; no Pulled Event) is left out
rather than guessed, and its time falls into the next stage that has evidence.

    scaled          the operator's ScaledUp Event: the wake's start
    podCreated      the StatefulSet controller created the pod
    nodeClaimed     Karpenter created a NodeClaim for it (only a node launched for this wake)
    nodeLaunched    the NodeClaim's Launched condition: the cloud instance exists
    nodeRegistered  the NodeClaim's Registered condition: the kubelet joined
    gpuAllocatable  the NodeClaim's Initialized condition: Ready, startup taints gone and
                    the requested resources (nvidia.com/gpu) allocatable
    scheduled       the pod's PodScheduled condition
    imagePulled     the kubelet's Pulled Event (sandbox set-up included; `image` says whether
                    it was pulled or "already present on machine")
    started         the server container's state.running.startedAt
    fetched         started + the server's download seconds (cache hit or miss)
    loaded          fetched + the server's load seconds
    ready           the pod's Ready condition
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from siesta.operator.observe import parse_time

STAGES = (
    "scaled",
    "podCreated",
    "nodeClaimed",
    "nodeLaunched",
    "nodeRegistered",
    "gpuAllocatable",
    "scheduled",
    "imagePulled",
    "started",
    "fetched",
    "loaded",
    "ready",
)
SERVER_CONTAINER = "server"
WAKE_EVENT = "ScaledUp"
# The StatefulSet controller creates the pod within a second or two of a scale-up; an
# older ScaledUp belongs to another start (a pod replaced later, a restart).
SCALE_TO_POD_SECONDS = 120.0


@dataclass(frozen=True)
class ServerReport:
    """What the model server said about this start (its /metrics)."""

    download_seconds: float
    load_seconds: float
    bytes: int = 0
    source: str = ""
    cache: str = ""
    """hit, miss or local."""
    connections: int = 0


@dataclass(frozen=True)
class WakeObjects:
    """Everything a wake's timeline is derived from, as the API returns it."""

    pod: Mapping[str, Any]
    pod_events: Sequence[Mapping[str, Any]] = ()
    model_events: Sequence[Mapping[str, Any]] = ()
    node_claim: Mapping[str, Any] | None = None
    server: ServerReport | None = None


@dataclass(frozen=True)
class Stage:
    name: str
    ended: datetime
    seconds: float
    """Since the previous stage with evidence."""


@dataclass(frozen=True)
class WakeTimeline:
    pod: str
    pod_uid: str
    stages: tuple[Stage, ...]
    server: ServerReport | None
    image_pulled: bool | None = None
    """True: the kubelet pulled the image; False: it was already on the node."""

    @property
    def started(self) -> datetime:
        return self.stages[0].ended

    @property
    def total_seconds(self) -> float:
        return round((self.stages[-1].ended - self.stages[0].ended).total_seconds(), 3)

    def seconds(self, name: str) -> float | None:
        return next((s.seconds for s in self.stages if s.name == name), None)

    def summary(self) -> str:
        """One line for `kubectl get md`: the total and the stages that cost most."""
        longest = sorted(self.stages[1:], key=lambda s: -s.seconds)[:3]
        parts = ", ".join(f"{s.name} {s.seconds:.0f}s" for s in longest if s.seconds >= 0.5)
        return f"{self.total_seconds:.0f}s" + (f" ({parts})" if parts else "")


def event_time(event: Mapping[str, Any]) -> datetime | None:
    """When an Event first happened, in either of the API's spellings."""
    for key in ("eventTime", "firstTimestamp", "lastTimestamp"):
        moment = parse_time(event.get(key))
        if moment is not None:
            return moment
    return parse_time((event.get("metadata") or {}).get("creationTimestamp"))


def _condition(obj: Mapping[str, Any], kind: str) -> datetime | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return parse_time(condition.get("lastTransitionTime"))
    return None


def _created(obj: Mapping[str, Any]) -> datetime | None:
    return parse_time((obj.get("metadata") or {}).get("creationTimestamp"))


def _started(pod: Mapping[str, Any]) -> datetime | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == SERVER_CONTAINER:
            running = (status.get("state") or {}).get("running") or {}
            return parse_time(running.get("startedAt"))
    return None


def _wake_start(model_events: Sequence[Mapping[str, Any]], pod_created: datetime) -> datetime:
    """The last ScaledUp just before the pod existed; the pod's creation if there is none
    (Events expire after an hour, a manual scale, a pod replaced by a rollout)."""
    scale_ups = [
        moment
        for event in model_events
        if event.get("reason") == WAKE_EVENT
        and (moment := event_time(event)) is not None
        and 0 <= (pod_created - moment).total_seconds() <= SCALE_TO_POD_SECONDS
    ]
    return max(scale_ups, default=pod_created)


def _pull(events: Sequence[Mapping[str, Any]], after: datetime) -> tuple[datetime, bool] | None:
    """When the image was there, and whether it was pulled (False: already present)."""
    pulled = sorted(
        (moment, "already present" not in str(event.get("message", "")))
        for event in events
        if event.get("reason") == "Pulled"
        and (moment := event_time(event)) is not None
        and moment >= after
    )
    return pulled[0] if pulled else None


def derive(objects: WakeObjects) -> WakeTimeline | None:
    """The timeline of the wake that made `objects.pod` Ready, or None before it is Ready."""
    pod = objects.pod
    created, ready = _created(pod), _condition(pod, "Ready")
    if created is None or ready is None:
        return None
    start = _wake_start(objects.model_events, created)
    ends: dict[str, datetime | None] = {"scaled": start, "podCreated": created}
    claim = objects.node_claim
    if claim is not None and (claimed := _created(claim)) is not None and claimed >= start:
        ends["nodeClaimed"] = claimed
        ends["nodeLaunched"] = _condition(claim, "Launched")
        ends["nodeRegistered"] = _condition(claim, "Registered")
        ends["gpuAllocatable"] = _condition(claim, "Initialized")
    ends["scheduled"] = _condition(pod, "PodScheduled")
    pull = _pull(objects.pod_events, created)
    started = _started(pod)
    if pull is not None:
        ends["imagePulled"] = pull[0]
    ends["started"] = started
    server = objects.server
    if server is not None and started is not None:
        fetched = started.timestamp() + server.download_seconds
        ends["fetched"] = datetime.fromtimestamp(fetched, start.tzinfo)
        ends["loaded"] = datetime.fromtimestamp(fetched + server.load_seconds, start.tzinfo)
    ends["ready"] = ready
    stages: list[Stage] = []
    previous = start
    for name in STAGES:
        moment = ends.get(name)
        if moment is None:
            continue
        moment = max(moment, previous)  # clocks of different writers; never negative
        stages.append(Stage(name, moment, round((moment - previous).total_seconds(), 3)))
        previous = moment
    metadata = pod.get("metadata") or {}
    return WakeTimeline(
        pod=str(metadata.get("name", "")),
        pod_uid=str(metadata.get("uid", "")),
        stages=tuple(stages),
        server=server,
        image_pulled=pull[1] if pull is not None else None,
    )


def server_report(exposition: str) -> ServerReport | None:
    """siesta-server's fetch and load from its /metrics text, or None if it has none yet."""
    values: dict[str, float] = {}
    info: dict[str, str] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "siesta_server_model_fetch_info" and sample.value == 1:
                info = dict(sample.labels)
            else:
                values[sample.name] = float(sample.value)
    download = values.get("siesta_server_model_download_seconds")
    load = values.get("siesta_server_model_load_seconds")
    if download is None or load is None or (download == 0 and load == 0):
        return None
    return ServerReport(
        download_seconds=round(download, 3),
        load_seconds=round(load, 3),
        bytes=int(values.get("siesta_server_download_bytes_total", 0)),
        source=info.get("source", ""),
        cache=info.get("cache", ""),
        connections=int(info.get("connections") or 0),
    )


def status_of(timeline: WakeTimeline) -> dict[str, Any]:
    """status.lastWake: each stage in seconds, the server's fetch, a summary line."""
    status: dict[str, Any] = {
        "pod": timeline.pod,
        "podUID": timeline.pod_uid,
        "startedAt": timeline.started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "totalSeconds": timeline.total_seconds,
        "stages": [{"name": s.name, "seconds": s.seconds} for s in timeline.stages[1:]],
        "summary": timeline.summary(),
    }
    if timeline.image_pulled is not None:
        status["image"] = "pulled" if timeline.image_pulled else "present"
    server = timeline.server
    if server is not None:
        status["fetch"] = {
            "source": server.source,
            "cache": server.cache,
            "bytes": server.bytes,
            "seconds": server.download_seconds,
            "connections": server.connections,
        }
    return status


def is_newer(timeline: WakeTimeline, last_wake: Mapping[str, Any] | None) -> bool:
    """Whether `timeline` ended after the start status.lastWake holds (startedAt is in whole
    seconds, so a start within a second of it is not newer): with several replicas, an
    operator that restarts must not put an older pod's start back into the status."""
    if not last_wake:
        return True
    started = parse_time(last_wake.get("startedAt"))
    if started is None:
        return True
    ready = started.timestamp() + float(last_wake.get("totalSeconds") or 0)
    return timeline.stages[-1].ended.timestamp() > ready + 1.0


def report_from_status(last_wake: Mapping[str, Any] | None, pod_uid: str) -> ServerReport | None:
    """The server report kept in status.lastWake for this pod (an operator that restarted
    after the pod's server was gone still has it)."""
    if not last_wake or last_wake.get("podUID") != pod_uid:
        return None
    fetch = last_wake.get("fetch") or {}
    stages = {s.get("name"): s.get("seconds") for s in last_wake.get("stages") or []}
    if "fetched" not in stages or "loaded" not in stages:
        return None
    return ServerReport(
        download_seconds=float(stages["fetched"]),
        load_seconds=float(stages["loaded"]),
        bytes=int(fetch.get("bytes", 0)),
        source=str(fetch.get("source", "")),
        cache=str(fetch.get("cache", "")),
        connections=int(fetch.get("connections", 0)),
    )
