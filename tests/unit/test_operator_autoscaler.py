"""The node autoscaler's word on a pod waiting for a node, from Events as they are posted."""

from __future__ import annotations

from typing import Any

from siesta.operator.autoscaler import pod_event, verdict
from siesta.operator.status import Situation, build_status
from siesta.policy import Observed
from support.specs import utc

NOW = utc("2026-11-25T22:00:00")


def event(reason: str, message: str, at: str, **extra: Any) -> dict[str, Any]:
    return {
        "involvedObject": {"kind": "Pod", "name": "chat-0"},
        "reason": reason,
        "message": message,
        "type": extra.pop("type", "Normal"),
        "lastTimestamp": at,
        **extra,
    }


CA = event(
    "NotTriggerScaleUp",
    "pod didn't trigger scale-up: 2 node(s) didn't match Pod's node affinity/selector",
    "2026-11-25T21:59:00Z",
    source={"component": "cluster-autoscaler"},
)
KARPENTER = event(
    "FailedScheduling",
    'Failed to schedule pod, incompatible with nodepool "gpu", no instance type satisfied',
    "2026-11-25T21:59:30Z",
    type="Warning",
    reportingComponent="karpenter",
)
SCHEDULER = event(
    "FailedScheduling",
    "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
    "2026-11-25T21:59:50Z",
    type="Warning",
    source={"component": "default-scheduler"},
)


def test_cluster_autoscaler_and_karpenter_verdicts() -> None:
    assert verdict([pod_event(CA), pod_event(SCHEDULER)]) == (
        "cluster-autoscaler: pod didn't trigger scale-up: 2 node(s) didn't match Pod's "
        "node affinity/selector"
    )
    newest = verdict([pod_event(CA), pod_event(KARPENTER), pod_event(SCHEDULER)])
    assert newest.startswith('Karpenter: Failed to schedule pod, incompatible with nodepool "gpu"')
    assert verdict([pod_event(SCHEDULER)]) == ""


def test_the_verdict_is_shown_with_the_wait() -> None:
    waiting = Observed(replicas=1, starting=1, waiting_for_gpu=1, starting_since=NOW)
    situation = Situation(
        observed=waiting,
        waiting_message="0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
        autoscaler=verdict([pod_event(CA)]),
    )
    status = build_status(None, situation, None, NOW)
    assert status["phase"] == "WaitingForGPU"
    assert status["reasons"][1].startswith("autoscaler says: cluster-autoscaler: pod didn't")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["message"].endswith("didn't match Pod's node affinity/selector")
