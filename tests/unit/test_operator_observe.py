"""Pods, Leases and Prometheus results as the policy sees them (pure adapters, no I/O)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from siesta.api.contract import IN_FLIGHT_ANNOTATION, PENDING_ANNOTATION
from siesta.api.models import ColdStart
from siesta.operator.demand import LeaseView, demand, lease_view
from siesta.operator.load import DEFAULT_QUERY, LoadReading, interpret, render_query
from siesta.operator.observe import (
    PodView,
    cold_start,
    failing_pods,
    observe,
    pod_view,
    waiting_message,
)
from siesta.policy import Observed
from support.specs import utc

T0 = utc("2026-11-25T09:00:00")


def pod(
    name: str = "m-0",
    *,
    ready: bool = False,
    scheduled: bool | None = True,
    created: int = 0,
    scheduled_at: int = 10,
    ready_at: int = 70,
    waiting: str | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    def at(seconds: int) -> str:
        return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")

    conditions: list[dict[str, Any]] = []
    if scheduled is True:
        conditions.append(
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": at(scheduled_at)}
        )
    elif scheduled is False:
        conditions.append(
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                "lastTransitionTime": at(1),
            }
        )
    conditions.append(
        {
            "type": "Ready",
            "status": "True" if ready else "False",
            "lastTransitionTime": at(ready_at if ready else 1),
        }
    )
    statuses = [{"name": "server", "state": {"waiting": {"reason": waiting}}}] if waiting else []
    meta: dict[str, Any] = {"name": name, "uid": f"uid-{name}", "creationTimestamp": at(created)}
    if deleting:
        meta["deletionTimestamp"] = at(100)
    return {
        "metadata": meta,
        "status": {
            "phase": "Running" if scheduled else "Pending",
            "conditions": conditions,
            "containerStatuses": statuses,
        },
    }


def views(*bodies: dict[str, Any]) -> list[PodView]:
    return [pod_view(body) for body in bodies]


@pytest.mark.parametrize(
    ("replicas", "pods", "expected"),
    [
        (0, [], Observed(0, 0, 0, 0)),
        (1, [], Observed(1, 0, 1, 0)),  # the pod is not even created yet: starting
        (1, [pod(ready=True)], Observed(1, 1, 0, 0)),
        (1, [pod(scheduled=False)], Observed(1, 0, 1, 1, starting_since=T0)),
        (1, [pod(scheduled=True)], Observed(1, 0, 1, 0, starting_since=T0)),  # loading
        (
            2,
            [pod("m-0", ready=True), pod("m-1", scheduled=False)],
            Observed(2, 1, 1, 1, starting_since=T0),
        ),
        # Scaling down: the pod above the replica count and terminating pods do not count.
        (1, [pod("m-0", ready=True), pod("m-1", ready=True, deleting=True)], Observed(1, 1, 0, 0)),
        (0, [pod("m-0", ready=True, deleting=True)], Observed(0, 0, 0, 0)),
        # A crash-looping pod is neither ready nor starting: it cannot block a scale-down.
        (
            1,
            [pod(waiting="CrashLoopBackOff")],
            Observed(
                1,
                0,
                0,
                0,
                failing=1,
                failure_reason="CrashLoopBackOff",
                failure="m-0: CrashLoopBackOff",
            ),
        ),
        (1, [pod(waiting="ContainerCreating")], Observed(1, 0, 1, 0, starting_since=T0)),
    ],
)
def test_observe(replicas: int, pods: list[dict[str, Any]], expected: Observed) -> None:
    assert observe(replicas, views(*pods)) == expected


def test_failing_and_waiting_messages() -> None:
    pods = views(pod("m-0", waiting="ImagePullBackOff"), pod("m-1", scheduled=False))
    assert [p.name for p in failing_pods(2, pods)] == ["m-0"]
    assert "Insufficient nvidia.com/gpu" in waiting_message(2, pods)
    assert waiting_message(1, pods) == ""


def test_cold_start_phases_from_timestamps() -> None:
    done = cold_start(views(pod(ready=True, scheduled_at=150, ready_at=205)), None)
    assert done == ColdStart(
        last_seconds=205, pending_seconds=150, loading_seconds=55, started_at=None
    )
    starting = cold_start(views(pod("m-1", scheduled=False, created=300)), done)
    assert starting is not None
    assert starting.last_seconds == 205
    assert starting.started_at == "2026-11-25T09:05:00Z"
    assert cold_start([], None) is None


def lease(renew: int, duration: int = 30, pending: int = 0, in_flight: int = 0) -> LeaseView:
    body = {
        "metadata": {
            "name": "m-demand-0a1b2c3d",
            "annotations": {
                PENDING_ANNOTATION: str(pending),
                IN_FLIGHT_ANNOTATION: str(in_flight),
            },
        },
        "spec": {
            "holderIdentity": "gateway-0",
            "leaseDurationSeconds": duration,
            "renewTime": (T0 + timedelta(seconds=renew)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        },
    }
    return lease_view(body)


def test_demand_counts_only_fresh_leases() -> None:
    now = T0 + timedelta(seconds=60)
    wanted = demand([lease(50, pending=3), lease(0, pending=7)], now)  # the second expired at 30s
    assert wanted.pending_requests == 3
    assert wanted.last_request_time == T0 + timedelta(seconds=50)
    assert wanted.next_expiry == T0 + timedelta(seconds=80)


def test_in_flight_requests_mean_active_now() -> None:
    now = T0 + timedelta(seconds=60)
    wanted = demand([lease(40, in_flight=2)], now)
    assert wanted.in_flight_requests == 2
    assert wanted.last_request_time == now


def test_demand_without_leases_and_bad_annotations() -> None:
    assert demand([], T0).pending_requests == 0
    body = {"metadata": {"annotations": {PENDING_ANNOTATION: "lots"}}, "spec": {}}
    assert lease_view(body).pending == 0
    assert lease_view(body).renew_time is None


def test_render_query() -> None:
    assert render_query(None, "ai", "chat") == DEFAULT_QUERY.replace("$namespace", "ai").replace(
        "$name", "chat"
    )
    assert 'namespace="ai",modeldeployment="chat"' in render_query(None, "ai", "chat")
    assert render_query('up{job="$name"}', "ai", "chat") == 'up{job="chat"}'


@pytest.mark.parametrize(
    ("result", "ready", "expected"),
    [
        ([], 0, LoadReading(0.0)),
        ([], 1, LoadReading(None, "query returned no data while replicas are ready")),
        ([{"metric": {}, "value": [1, "4"]}], 1, LoadReading(4.0)),
        (
            [
                {"metric": {"a": "1"}, "value": [1, "1.5"]},
                {"metric": {"a": "2"}, "value": [1, "2"]},
            ],
            1,
            LoadReading(3.5),
        ),
        ([1700000000.0, "2"], 0, LoadReading(2.0)),
    ],
)
def test_interpret(result: Any, ready: int, expected: LoadReading) -> None:
    assert interpret(result, ready) == expected


def test_interpret_rejects_nan() -> None:
    reading = interpret([{"metric": {}, "value": [1, "NaN"]}], 1)
    assert reading.value is None
    assert "unusable" in reading.error
