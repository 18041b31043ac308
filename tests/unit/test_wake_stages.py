"""wake_stages: a wake's timeline from objects shaped as the API returns them.

The pod, NodeClaim (Karpenter v1) and Events below follow what kube-apiserver, the
kubelet and Karpenter write on EKS; the server's report is siesta-server's own /metrics.
"""

from __future__ import annotations

from typing import Any

from siesta.operator.wake_stages import (
    ServerReport,
    WakeObjects,
    derive,
    is_newer,
    report_from_status,
    server_report,
    status_of,
)
from siesta_server.metrics import ServerMetrics


def pod(ready: bool = True) -> dict[str, Any]:
    conditions = [
        {"type": "PodReadyToStartContainers", "status": "True",
         "lastTransitionTime": "2026-12-05T22:01:07Z"},
        {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-12-05T22:01:05Z"},
        {"type": "Ready", "status": "True" if ready else "False",
         "lastTransitionTime": "2026-12-05T22:01:40Z"},
        {"type": "ContainersReady", "status": "True" if ready else "False",
         "lastTransitionTime": "2026-12-05T22:01:40Z"},
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-05T22:01:05Z"},
    ]  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "reception-0",
            "namespace": "clinic",
            "uid": "0f9c-pod",
            "creationTimestamp": "2026-12-05T22:00:00Z",
            "labels": {"siesta.dev/modeldeployment": "reception"},
        },
        "spec": {"nodeName": "ip-10-0-1-17.eu-central-1.compute.internal"},
        "status": {
            "phase": "Running",
            "conditions": conditions,
            "containerStatuses": [
                {
                    "name": "server",
                    "ready": ready,
                    "restartCount": 0,
                    "image": "ghcr.io/siesta/siesta-server:1.4.0-cuda",
                    "state": {"running": {"startedAt": "2026-12-05T22:01:20Z"}},
                }
            ],
        },
    }


NODE_CLAIM: dict[str, Any] = {
    "apiVersion": "karpenter.sh/v1",
    "kind": "NodeClaim",
    "metadata": {"name": "gpu-x7k2p", "creationTimestamp": "2026-12-05T22:00:02Z"},
    "status": {
        "nodeName": "ip-10-0-1-17.eu-central-1.compute.internal",
        "conditions": [
            {"type": "Launched", "status": "True", "lastTransitionTime": "2026-12-05T22:00:06Z"},
            {"type": "Registered", "status": "True",
             "lastTransitionTime": "2026-12-05T22:00:40Z"},
            {"type": "Initialized", "status": "True",
             "lastTransitionTime": "2026-12-05T22:01:04Z"},
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-05T22:01:04Z"},
        ],
    },
}  # fmt: skip


def kubelet_event(reason: str, at: str, message: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"reception-0.{reason.lower()}", "namespace": "clinic"},
        "involvedObject": {"kind": "Pod", "name": "reception-0", "uid": "0f9c-pod"},
        "reason": reason,
        "message": message,
        "source": {"component": "kubelet", "host": "ip-10-0-1-17"},
        "firstTimestamp": at,
        "lastTimestamp": at,
        "eventTime": None,
        "count": 1,
        "type": "Normal",
    }


POD_EVENTS = [
    {**kubelet_event("Scheduled", "2026-12-05T22:01:05Z", "Successfully assigned ..."),
     "source": {"component": "default-scheduler"}},
    kubelet_event("Pulling", "2026-12-05T22:01:06Z", 'Pulling image "siesta-server:1.4.0-cuda"'),
    kubelet_event("Pulled", "2026-12-05T22:01:18Z",
                  'Successfully pulled image "siesta-server:1.4.0-cuda" in 12.1s'),
    kubelet_event("Started", "2026-12-05T22:01:20Z", "Started container server"),
]  # fmt: skip
SCALED_UP = {
    "reason": "ScaledUp",
    "message": "0 -> 1: 1 request waiting",
    "firstTimestamp": "2026-12-05T21:59:59Z",
    "involvedObject": {"kind": "ModelDeployment", "name": "reception"},
}
OLD_SCALE_UP = {**SCALED_UP, "firstTimestamp": "2026-12-05T08:00:00Z"}
LATER_SCALE_UP = {**SCALED_UP, "firstTimestamp": "2026-12-05T22:05:00Z"}
REPORT = ServerReport(
    download_seconds=9.5, load_seconds=6.0, bytes=4_000_000_000, source="s3", cache="miss",
    connections=8,
)  # fmt: skip


def test_a_wake_on_a_new_gpu_node_by_stage() -> None:
    timeline = derive(
        WakeObjects(
            pod(),
            POD_EVENTS,
            [OLD_SCALE_UP, SCALED_UP, LATER_SCALE_UP],
            NODE_CLAIM,
            REPORT,
        )
    )
    assert timeline is not None
    assert [(s.name, s.seconds) for s in timeline.stages] == [
        ("scaled", 0.0),  # the last ScaledUp before the pod: 21:59:59
        ("podCreated", 1.0),
        ("nodeClaimed", 2.0),
        ("nodeLaunched", 4.0),
        ("nodeRegistered", 34.0),
        ("gpuAllocatable", 24.0),
        ("scheduled", 1.0),
        ("imagePulled", 13.0),
        ("started", 2.0),
        ("fetched", 9.5),
        ("loaded", 6.0),
        ("ready", 4.5),
    ]
    assert timeline.total_seconds == 101.0
    assert timeline.image_pulled is True
    assert timeline.summary() == "101s (nodeRegistered 34s, gpuAllocatable 24s, imagePulled 13s)"
    status = status_of(timeline)
    assert {"name": "fetched", "seconds": 9.5} in status["stages"]
    assert status["fetch"] == {
        "source": "s3", "cache": "miss", "bytes": 4_000_000_000, "seconds": 9.5, "connections": 8
    }  # fmt: skip
    assert status["startedAt"] == "2026-12-05T21:59:59Z"
    assert status["image"] == "pulled"
    # What an operator restarted after the server is gone reads back: the same timeline.
    again = derive(
        WakeObjects(
            pod(),
            POD_EVENTS,
            [SCALED_UP],
            NODE_CLAIM,
            report_from_status(status, "0f9c-pod"),
        )
    )
    assert again == timeline
    assert report_from_status(status, "another-pod") is None
    # Another replica that became ready earlier (or in the same second) is not newer.
    assert not is_newer(timeline, status)
    later = {**status, "startedAt": "2026-12-05T21:50:00Z"}
    assert is_newer(timeline, later)
    assert is_newer(timeline, None)


def test_a_node_already_there_and_a_cached_image_have_no_node_or_pull_time() -> None:
    events = [
        e if e["reason"] != "Pulled" else {**e, "message": "Container image already present"}
        for e in POD_EVENTS
        if e["reason"] != "Pulling"
    ]
    old_claim = {**NODE_CLAIM, "metadata": {"creationTimestamp": "2026-12-05T07:00:00Z"}}
    timeline = derive(WakeObjects(pod(), events, [SCALED_UP], old_claim, None))
    assert timeline is not None
    names = [s.name for s in timeline.stages]
    assert names == ["scaled", "podCreated", "scheduled", "imagePulled", "started", "ready"]
    assert timeline.image_pulled is False
    assert "fetch" not in status_of(timeline)
    assert status_of(timeline)["image"] == "present"


def test_no_timeline_before_ready_and_no_scale_event_starts_at_the_pod() -> None:
    assert derive(WakeObjects(pod(ready=False), POD_EVENTS, [SCALED_UP])) is None
    timeline = derive(WakeObjects(pod(), [], [], None, None))
    assert timeline is not None
    # Without a ScaledUp Event (a manual scale) the wake starts with the pod.
    assert [(s.name, s.seconds) for s in timeline.stages] == [
        ("scaled", 0.0),
        ("podCreated", 0.0),
        ("scheduled", 65.0),
        ("started", 15.0),
        ("ready", 20.0),
    ]


def test_server_report_from_siesta_servers_own_metrics() -> None:
    metrics = ServerMetrics()
    assert server_report(metrics.render().decode()) is None  # still loading
    metrics.fetched("s3", "miss", 8)
    metrics.download_seconds.set(9.5)
    metrics.download_bytes.inc(4_000_000_000)
    metrics.model_load_seconds.set(6.0)
    assert server_report(metrics.render().decode()) == REPORT


def test_the_status_fits_the_crds_model() -> None:
    from siesta.api.models import LastWake

    timeline = derive(WakeObjects(pod(), POD_EVENTS, [SCALED_UP], NODE_CLAIM, REPORT))
    assert timeline is not None
    status = status_of(timeline)
    assert LastWake.model_validate(status).model_dump(by_alias=True, exclude_none=True) == status
