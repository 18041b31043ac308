"""Starting vs failing pods and why Pending pods wait: pure classification of pod objects as
a kubelet and the scheduler write them (no I/O, fixed times)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from siesta.operator.observe import node_reasons, observe, pending_cause, pending_pods, pod_view
from support.specs import utc

T0 = utc("2026-11-25T09:00:00")
MISSING = "model file not found: /models/does-not-exist.gguf"


def at(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def running_pod(
    name: str = "m-0",
    *,
    ready: bool = False,
    state: dict[str, Any] | None = None,
    last: dict[str, Any] | None = None,
    restarts: int = 0,
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "server",
        "ready": ready,
        "restartCount": restarts,
        "state": state or {"running": {"startedAt": at(5)}},
    }
    if last is not None:
        container["lastState"] = {"terminated": last}
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "creationTimestamp": at(0)},
        "status": {
            "phase": "Running",
            "podIP": "10.244.1.7",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": at(1)},
                {"type": "Ready", "status": "True" if ready else "False"},
            ],
            "containerStatuses": [container],
        },
    }


def pending_pod(message: str, name: str = "m-0") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "creationTimestamp": at(0)},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": message,
                }
            ],
        },
    }


CRASHED = {"exitCode": 1, "reason": "Error", "message": MISSING + "\n", "finishedAt": at(9)}


def test_crash_loop_back_off_with_the_servers_last_words() -> None:
    body = running_pod(
        state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}},
        last=CRASHED,
        restarts=3,
    )
    view = pod_view(body)
    assert (view.failing, view.last_words, view.restarts) == ("CrashLoopBackOff", MISSING, 3)
    assert view.address == "10.244.1.7"
    observed = observe(1, [view])
    assert (observed.starting, observed.failing) == (0, 1)
    assert observed.failure == f"m-0: CrashLoopBackOff: {MISSING}"


def test_restarted_and_loading_again_is_still_failing() -> None:
    """Between back-offs the container runs (and loads) again; it must not flip to
    "starting" and hold the model up on every restart."""
    view = pod_view(running_pod(last=CRASHED, restarts=1))
    assert view.failing == "CrashLoopBackOff"
    assert view.last_words == MISSING
    assert observe(1, [view]).starting == 0


def test_a_restarted_pod_that_is_ready_again_is_serving() -> None:
    view = pod_view(running_pod(ready=True, last=CRASHED, restarts=1))
    assert view.failing is None
    assert observe(1, [view]).ready == 1


def test_oom_killed() -> None:
    last = {"exitCode": 137, "reason": "OOMKilled", "finishedAt": at(9)}
    body = running_pod(state={"waiting": {"reason": "CrashLoopBackOff"}}, last=last, restarts=2)
    assert pod_view(body).failing == "OOMKilled"


def test_first_exit_before_any_restart() -> None:
    state = {"terminated": {"exitCode": 1, "reason": "Error", "message": "HTTP 404 Not Found"}}
    view = pod_view(running_pod(state=state))
    assert (view.failing, view.last_words) == ("Error", "HTTP 404 Not Found")


def test_image_pull_error_uses_the_kubelets_message() -> None:
    state = {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x"'}}
    view = pod_view(running_pod(state=state))
    assert (view.failing, view.last_words) == ("ImagePullBackOff", 'Back-off pulling image "x"')


def test_log_fallback_message_keeps_its_last_line() -> None:
    """FallbackToLogsOnError: the message is the log's end; its last line says most."""
    last = {**CRASHED, "message": "INFO listening\nTraceback ...\nRuntimeError: boom\n"}
    body = running_pod(state={"waiting": {"reason": "CrashLoopBackOff"}}, last=last, restarts=1)
    assert pod_view(body).last_words == "RuntimeError: boom"


def test_a_clean_exit_is_not_failing() -> None:
    last = {"exitCode": 0, "reason": "Completed", "finishedAt": at(9)}
    assert pod_view(running_pod(last=last, restarts=1)).failing is None


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        ("0/3 nodes are available: 3 Insufficient nvidia.com/gpu.", "WaitingForGPU"),
        (
            "0/4 nodes are available: 4 node(s) didn't match Pod's node affinity/selector. "
            "preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling.",
            "WaitingForGPU",
        ),
        (
            "0/2 nodes are available: 2 node(s) had untolerated taint {nvidia.com/gpu: }.",
            "WaitingForGPU",
        ),
        ("no nodes available to schedule pods", "WaitingForGPU"),
        (
            "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims. "
            "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
            "VolumeNotBound",
        ),
        ('persistentvolumeclaim "model-cache-m-0" not found', "VolumeMissing"),
        (
            "0/3 nodes are available: 3 node(s) had volume node affinity conflict.",
            "VolumeNodeConflict",
        ),
        ('storageclass.storage.k8s.io "fast" not found', "StorageClassMissing"),
        ("0/3 nodes are available: 3 Too many pods.", "Unschedulable"),
        # kube-scheduler 1.35's words for a Karpenter GPU node whose provisioner does not
        # serve it, beside the CPU nodes the GPU selector turns away: a volume problem.
        (
            "0/6 nodes are available: 1 node(s) didn't find available persistent volumes to "
            "bind, 5 node(s) didn't match Pod's node affinity/selector. preemption: 0/6 nodes "
            "are available: 6 Preemption is not helpful for scheduling.",
            "VolumeNotBound",
        ),
        (
            "0/4 nodes are available: 1 node(s) had volume node affinity conflict, 1 node(s) "
            "had untolerated taint {siesta.test/simulated: true}, 2 node(s) didn't match "
            "Pod's node affinity/selector. preemption: 0/4 nodes are available: 4 Preemption "
            "is not helpful for scheduling.",
            "VolumeNodeConflict",
        ),
        # kube-scheduler 1.35 on the test cluster, the README's model beside kwok's nodes.
        (
            "0/5 nodes are available: 2 node(s) didn't match Pod's node affinity/selector, 3 "
            "node(s) had untolerated taint(s). no new claims to deallocate, preemption: 0/5 "
            "nodes are available: 5 Preemption is not helpful for scheduling.",
            "WaitingForGPU",
        ),
        # Every node turned away by selection: only a new node helps.
        (
            "0/5 nodes are available: 1 node(s) had untolerated taint {siesta.test/simulated: "
            "true}, 4 node(s) didn't match Pod's node affinity/selector. preemption: 0/5 nodes "
            "are available: 5 Preemption is not helpful for scheduling.",
            "WaitingForGPU",
        ),
        # The GPU node matches but its GPU is taken, the others do not match.
        (
            "0/3 nodes are available: 1 Insufficient nvidia.com/gpu, 2 node(s) didn't match "
            "Pod's node affinity/selector. preemption: 0/3 nodes are available: 1 No "
            "preemption victims found for incoming pod, 2 Preemption is not helpful for "
            "scheduling.",
            "WaitingForGPU",
        ),
        (
            "0/3 nodes are available: 1 Too many pods, 2 node(s) didn't match Pod's node "
            "affinity/selector.",
            "Unschedulable",
        ),
    ],
)
def test_pending_causes(message: str, cause: str) -> None:
    assert pending_cause(message) == cause


def test_node_reasons_split_per_node_group() -> None:
    message = (
        "0/4 nodes are available: 1 node(s) had untolerated taint {a: b}, 3 Insufficient cpu. "
        "preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling."
    )
    assert node_reasons(message) == ["1 node(s) had untolerated taint {a: b}", "3 Insufficient cpu"]
    assert node_reasons("no nodes available to schedule pods") == []
    assert node_reasons(
        "0/2 nodes are available: 2 node(s) had untolerated taint(s). no new claims to "
        "deallocate, preemption: 0/2 nodes are available: 2 Preemption is not helpful."
    ) == ["2 node(s) had untolerated taint(s)"]


def test_only_gpu_waits_count_as_waiting_for_gpu() -> None:
    volume = pod_view(
        pending_pod("0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims.")
    )
    gpu = pod_view(pending_pod("0/1 nodes are available: 1 Insufficient nvidia.com/gpu.", "m-1"))
    observed = observe(2, [volume, gpu])
    assert (observed.starting, observed.waiting_for_gpu) == (2, 1)
    assert observed.starting_since == T0
    assert [p.name for p in pending_pods(2, [volume, gpu])] == ["m-0"]


def test_a_replica_without_a_pod_starts_when_it_was_scaled() -> None:
    """Over a quota the StatefulSet controller never creates the pod: its start is the
    scale-up, so startupTimeout still ends it."""
    scaled = T0 + timedelta(minutes=3)
    assert observe(1, [], scaled_at=scaled).starting_since == scaled
    assert observe(1, []).starting_since is None
