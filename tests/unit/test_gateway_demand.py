"""Demand Leases: contract names, and when a write is due under the rate limits."""

from __future__ import annotations

import pytest

from siesta.api.contract import (
    API_VERSION,
    IN_FLIGHT_ANNOTATION,
    MODEL_LABEL,
    PENDING_ANNOTATION,
    ModelKey,
    demand_lease_name,
)
from siesta.gateway.demand import (
    Counts,
    DemandTracker,
    ModelDemand,
    Written,
    due_at,
    lease_body,
    lease_patch,
    micro_time,
    renew_time,
    warm_interval,
)


def test_micro_time() -> None:
    assert micro_time(0.25) == "1970-01-01T00:00:00.250000Z"


def test_lease_body_follows_the_contract() -> None:
    body = lease_body(
        namespace="ai", model_name="m", model_uid="uid-1", pod_name="gw-0",
        counts=Counts(pending=3, in_flight=1), renew_wall=0.0,
    )  # fmt: skip
    meta = body["metadata"]
    assert body["apiVersion"] == "coordination.k8s.io/v1"
    assert meta["name"] == demand_lease_name("m", "gw-0")
    assert meta["namespace"] == "ai"
    assert meta["labels"] == {
        MODEL_LABEL: "m",
        "app.kubernetes.io/managed-by": "siesta-gateway",
    }
    assert meta["annotations"] == {
        PENDING_ANNOTATION: "3",
        IN_FLIGHT_ANNOTATION: "1",
    }
    assert meta["ownerReferences"] == [
        {
            "apiVersion": API_VERSION,
            "kind": "ModelDeployment",
            "name": "m",
            "uid": "uid-1",
        }
    ]
    assert body["spec"] == {
        "holderIdentity": "gw-0",
        "leaseDurationSeconds": 30,
        "renewTime": "1970-01-01T00:00:00.000000Z",
    }
    patch = lease_patch("gw-0", Counts(0, 2), 0.0)
    assert patch["metadata"]["annotations"][IN_FLIGHT_ANNOTATION] == "2"
    assert patch["spec"]["renewTime"] == body["spec"]["renewTime"]


def _written(pending: int, in_flight: int = 0, at: float = 100.0, seen: float = 1000.0) -> Written:
    return Written(Counts(pending, in_flight), at, seen)


@pytest.mark.parametrize(
    ("demand", "now", "expected"),
    [
        # nothing seen yet: nothing to write
        (ModelDemand(), 100.0, None),
        # first request ever: at once
        (ModelDemand(Counts(1, 0), 1000.0), 100.0, 100.0),
        # cold again (pending 0 -> 1) a moment after the last write: still at once
        (ModelDemand(Counts(1, 0), 1000.0, _written(0)), 100.1, 100.1),
        # pending changes while held: at most once a second
        (ModelDemand(Counts(5, 0), 1000.0, _written(1)), 100.2, 101.0),
        # held and unchanged: renew every 10 s
        (ModelDemand(Counts(5, 0), 1000.0, _written(5)), 100.2, 110.0),
        # pending back to 0 (forwarded): a change, once a second
        (ModelDemand(Counts(0, 5), 1000.0, _written(5)), 100.2, 101.0),
        # warm traffic: every 15 s at most
        (ModelDemand(Counts(0, 1), 1001.0, _written(0, 0)), 100.2, 115.0),
        # one long stream, nothing else: renewed every 15 s, so the operator (which stops
        # counting a Lease 30 s after its renewTime) never reads it as idle
        (ModelDemand(Counts(0, 1), 1000.0, _written(0, 1)), 140.0, 115.0),
        # quiet and all written: nothing due
        (ModelDemand(Counts(0, 0), 1000.0, _written(0, 0)), 200.0, None),
        # failed write: retried a second later, not in a tight loop
        (ModelDemand(Counts(1, 0), 1000.0, None, failed_at=100.0), 100.5, 101.0),
    ],
)
def test_due_at(demand: ModelDemand, now: float, expected: float | None) -> None:
    assert due_at(demand, now) == expected


def test_warm_interval_shrinks_for_short_idle_timeouts() -> None:
    assert warm_interval(None) == 15.0
    assert warm_interval(900.0) == 15.0
    assert warm_interval(9.0) == 3.0
    demand = ModelDemand(Counts(0, 1), 1001.0, _written(0, 0), warm_interval=3.0)
    assert due_at(demand, 100.2) == 103.0


def test_renew_time_is_now_while_requests_are_held_or_in_flight() -> None:
    assert renew_time(ModelDemand(Counts(1, 0), 5.0), wall=50.0) == 50.0
    assert renew_time(ModelDemand(Counts(0, 1), 5.0), wall=50.0) == 50.0
    assert renew_time(ModelDemand(Counts(0, 0), 5.0), wall=50.0) == 5.0


def test_tracker_cycle() -> None:
    tracker = DemandTracker()
    tracker.seen(ModelKey("ns", "m"), 1000.0)
    tracker.set_counts(ModelKey("ns", "m"), 1, 0)
    assert tracker.due(now=10.0) == [ModelKey("ns", "m")]
    tracker.wrote(ModelKey("ns", "m"), Counts(1, 0), 1000.0, now=10.0)
    assert tracker.due(now=10.5) == []
    assert tracker.next_due(now=10.5) == 20.0
    tracker.set_counts(ModelKey("ns", "m"), 0, 1)
    assert tracker.next_due(now=10.5) == 11.0
    tracker.failed(ModelKey("ns", "m"), now=11.0)
    assert tracker.next_due(now=11.0) == 12.0
