"""Scaling on the real control plane: schedule windows, gateway demand, restarts, peering."""

from __future__ import annotations

import time

import pytest

from localworld.cluster import Cluster, holds
from localworld.operator_env import (
    OperatorRunner,
    demand_lease,
    model_deployment,
    scale_events,
    status,
    sts_replicas,
    wait_for,
)

pytestmark = pytest.mark.cluster

CPU = {"count": 0}  # these tests are about replicas, not placement: no GPU node needed


def test_schedule_window_opens_and_closes(
    cluster: Cluster, namespace: str, operator_runner: OperatorRunner
) -> None:
    # Put the operator's clock 20 s before a minute boundary (room for a slow start on a busy
    # machine); the window opens every minute (prewarm 2 s early) and lasts 6 s.
    offset = 40 - (time.time() % 60)
    operator_runner.start(SIESTA_CLOCK_OFFSET_SECONDS=f"{offset:.3f}")
    window = {"name": "burst", "start": "* * * * *", "duration": "6s", "minReplicas": 2}
    spec = {
        "gpu": CPU,
        "replicas": {"min": 0, "max": 3},
        "schedule": {"timezone": "Europe/Berlin", "prewarm": "2s", "windows": [window]},
        "scaling": {"idleTimeout": "2s", "scaleDownDelay": "1s"},
    }
    cluster.apply(model_deployment("sched", **spec), namespace)
    before = wait_for(
        "first status",
        lambda: (s := status(cluster, "sched", namespace)).get("nextTransition") and s,
    )
    assert before["desiredReplicas"] == 0
    assert before["phase"] == "ScaledToZero"
    transition = before["nextTransition"]
    assert transition["replicas"] == 2
    assert transition["reason"] == "prewarming window burst: at least 2 replicas"
    assert transition["time"].endswith(":58Z")

    wait_for(
        "window open: 2 replicas",
        lambda: sts_replicas(cluster, "sched", namespace) == 2,
        timeout=30,
    )
    opened = wait_for(
        "phase Ready",
        lambda: (s := status(cluster, "sched", namespace)).get("phase") == "Ready" and s,
    )
    assert opened["reason"].startswith(("prewarming window burst", "inside window burst"))
    wait_for(
        "window closed: 0 replicas",
        lambda: sts_replicas(cluster, "sched", namespace) == 0,
        timeout=20,
    )
    events = scale_events(cluster, "sched", namespace)
    assert [e["reason"] for e in events] == ["ScaledUp", "ScaledDown"]
    assert "window burst" in events[0]["message"]


def test_gateway_demand_wakes_a_model_at_once(
    cluster: Cluster, namespace: str, operator_runner: OperatorRunner
) -> None:
    running = operator_runner.start()
    spec = {
        "gpu": CPU,
        "replicas": {"min": 0, "max": 2},
        "scaling": {"idleTimeout": "3s", "scaleDownDelay": "1s"},
    }
    cluster.apply(model_deployment("wake", **spec), namespace)
    wait_for(
        "ScaledToZero", lambda: status(cluster, "wake", namespace).get("phase") == "ScaledToZero"
    )
    calls_before = running.metric_sum("siesta_operator_api_calls_total")

    started = time.monotonic()
    cluster.apply(demand_lease("wake", pending=2, duration=30), namespace)
    wait_for(
        "1 replica",
        lambda: sts_replicas(cluster, "wake", namespace) == 1,
        timeout=10,
        interval=0.05,
    )
    assert (
        time.monotonic() - started < 3.0
    )  # kubectl round trips included; the benchmark measures it
    woken = wait_for(
        "phase Ready",
        lambda: (s := status(cluster, "wake", namespace)).get("phase") == "Ready" and s,
    )
    assert any(
        "request(s) waiting at the gateway" in r
        for r in [*woken["reasons"], scale_events(cluster, "wake", namespace)[0]["message"]]
    )
    # The lease says nothing is pending any more: after idleTimeout the model sleeps again.
    cluster.apply(demand_lease("wake", pending=0, duration=30), namespace)
    wait_for("back to zero", lambda: sts_replicas(cluster, "wake", namespace) == 0, timeout=20)
    assert running.metric_sum("siesta_operator_api_calls_total") - calls_before < 30


def test_operator_killed_mid_scale_converges_without_duplicates(
    cluster: Cluster, namespace: str, operator_runner: OperatorRunner
) -> None:
    first = operator_runner.start()
    spec = {
        "gpu": CPU,
        "replicas": {"min": 0, "max": 2},
        "scaling": {"idleTimeout": "4s", "scaleDownDelay": "1s"},
    }
    cluster.apply(model_deployment("crash", **spec), namespace)
    wait_for(
        "ScaledToZero", lambda: status(cluster, "crash", namespace).get("phase") == "ScaledToZero"
    )
    cluster.apply(demand_lease("crash", pending=1, duration=60), namespace)
    wait_for("scale written", lambda: sts_replicas(cluster, "crash", namespace) == 1, interval=0.02)
    first.kill()  # right after the /scale write: status and event may or may not be written
    posted_before = {e["metadata"]["name"] for e in scale_events(cluster, "crash", namespace)}

    second = operator_runner.start()
    settled = wait_for(
        "status Ready after the restart",
        lambda: (s := status(cluster, "crash", namespace)).get("phase") == "Ready" and s,
        timeout=30,
    )
    assert settled["desiredReplicas"] == 1
    holds("1 replica", lambda: sts_replicas(cluster, "crash", namespace) == 1, seconds=2)
    posted_after = [
        e["reason"]
        for e in scale_events(cluster, "crash", namespace)
        if e["metadata"]["name"] not in posted_before
    ]
    assert posted_after == []
    # The restarted operator never re-scaled what was already right.
    assert second.metric_sum("siesta_operator_scale_changes_total") == 0

    # Demand ends; killed again while waiting out the idle timeout, the memory (lastActiveTime)
    # lives in status, so the third instance scales down on time, once.
    cluster.apply(demand_lease("crash", pending=0, duration=60), namespace)
    time.sleep(1)
    second.kill()
    third = operator_runner.start()
    wait_for("scaled to zero", lambda: sts_replicas(cluster, "crash", namespace) == 0, timeout=30)
    assert third.metric_sum("siesta_operator_scale_changes_total", direction="down") == 1
    reasons = [e["reason"] for e in scale_events(cluster, "crash", namespace)]
    assert reasons.count("ScaledDown") == 1
    assert reasons.count("ScaledUp") <= 1


def test_peering_lets_one_instance_act(
    cluster: Cluster, namespace: str, operator_runner: OperatorRunner
) -> None:
    older = operator_runner.start()
    newer = operator_runner.start()
    wait_for(
        "the older instance to pause",
        lambda: "Pausing operations" in older.proc.log_tail(200),
        timeout=30,
    )
    spec = {"gpu": CPU, "replicas": {"min": 1, "max": 1}}
    cluster.apply(model_deployment("peer", **spec), namespace)
    wait_for("1 replica", lambda: sts_replicas(cluster, "peer", namespace) == 1, timeout=30)
    wait_for("Ready", lambda: status(cluster, "peer", namespace).get("phase") == "Ready")
    wait_for("the ScaledUp event", lambda: scale_events(cluster, "peer", namespace))
    holds(
        "one ScaledUp event",
        lambda: [e["reason"] for e in scale_events(cluster, "peer", namespace)] == ["ScaledUp"],
        seconds=2,
    )
    assert newer.metric_sum("siesta_operator_scale_changes_total") == 1
    assert older.metric_sum("siesta_operator_scale_changes_total") == 0
