"""A wake's stages on the real control plane: the operator (as its ServiceAccount) scales a
model up on a gateway's demand Lease, kwok plays the pod to Ready, and the operator writes
status.lastWake from the real objects: its ScaledUp Event, the pod's conditions and
container state; a WakeStages Event; the `Wake` printer column; the histogram.

kwok pods have no server to report a fetch and no kubelet to report a pull, and there is
no Karpenter here: those stages are covered by tests/unit/test_wake_stages.py on objects
shaped like the real ones; here the timeline must hold what the cluster does write.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from localworld.cluster import Cluster
from localworld.operator_env import (
    T4,
    OperatorRunner,
    demand_lease,
    get,
    model_deployment,
    scale_events,
    status,
    wait_for,
)
from siesta.operator.wake_stages import event_time

pytestmark = pytest.mark.cluster


def test_a_wake_is_recorded_by_stage_from_real_objects(
    cluster: Cluster, namespace: str, operator_runner: OperatorRunner
) -> None:
    operator = operator_runner.start()
    cluster.apply(model_deployment("night", gpu={"products": [T4]}), namespace)
    cluster.apply(demand_lease("night", pending=1, duration=120), namespace)
    wake = wait_for(
        "status.lastWake",
        lambda: status(cluster, "night", namespace).get("lastWake"),
        timeout=90,
    )
    pod = get(cluster, "pod", "night-0", namespace)
    assert pod is not None
    assert wake["pod"] == "night-0"
    assert wake["podUID"] == pod["metadata"]["uid"]
    # The wake starts at the operator's ScaledUp Event, and ends at the pod's Ready.
    scaled_up = [e for e in scale_events(cluster, "night", namespace) if e["reason"] == "ScaledUp"]
    assert scaled_up
    started = event_time(scaled_up[-1])
    assert started is not None
    assert wake["startedAt"] == started.strftime("%Y-%m-%dT%H:%M:%SZ")
    ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    assert wake["totalSeconds"] == pytest.approx(
        (
            datetime.fromisoformat(ready["lastTransitionTime"].replace("Z", "+00:00")) - started
        ).total_seconds(),
        abs=0.01,
    )
    stages = {stage["name"]: stage["seconds"] for stage in wake["stages"]}
    assert next(iter(stages)) == "podCreated"
    assert list(stages)[-1] == "ready"
    assert "scheduled" in stages
    assert sum(stages.values()) == pytest.approx(wake["totalSeconds"], abs=0.01)
    assert all(seconds >= 0 for seconds in stages.values())
    assert wake["summary"].startswith(f"{wake['totalSeconds']:.0f}s")

    events = cluster.get_json(
        "events", "-n", namespace, "--field-selector", "involvedObject.name=night,reason=WakeStages"
    )["items"]
    assert len(events) == 1
    assert events[0]["message"].startswith("night-0 ready ")
    columns = cluster.kubectl("get", "md", "night", "-n", namespace).stdout.splitlines()
    assert "WAKE" in columns[0]
    assert wake["summary"].split(" ")[0] in columns[1]
    stage = {"namespace": namespace, "modeldeployment": "night"}
    assert (
        operator.metric_sum("siesta_operator_wake_stage_seconds_count", **stage) == len(stages) + 1
    )

    # A restarted operator finds the pod recorded: no second Event, the same status.
    for running in operator_runner.running:
        running.stop()
    operator_runner.start()
    restarted = operator_runner.running[-1]
    # The restarted operator has seen the Ready pod (its model loop ran) and recorded nothing.
    wait_for(
        "the restarted operator's pass",
        lambda: restarted.metric_sum("siesta_operator_ready_replicas", **stage) == 1,
        timeout=30,
    )
    assert restarted.metric_sum("siesta_operator_wake_stage_seconds_count", **stage) == 0
    assert status(cluster, "night", namespace)["lastWake"] == wake
    events = cluster.get_json(
        "events", "-n", namespace, "--field-selector", "involvedObject.name=night,reason=WakeStages"
    )["items"]
    assert len(events) == 1
