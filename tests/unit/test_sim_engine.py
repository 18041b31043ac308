"""The simulator against small cases computed by hand: exact node-hours, waits, cold starts.

World in every case unless stated: node ready 180 s after it is requested, model load 60 s,
an empty node is removed 600 s after its pod is gone, load is queried every 30 s.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from siesta.api.models import ModelDeploymentSpec
from siesta.sim.compare import compare
from siesta.sim.engine import Outcome, SimResult, Simulation
from siesta.sim.policies import build_policy
from siesta.sim.report import summarize
from siesta.sim.traces import Trace, TraceRequest
from siesta.sim.world import World

T0 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # a Monday
HOUR = 3600.0


def spec(**sections: Any) -> ModelDeploymentSpec:
    document: dict[str, Any] = {
        "model": {"uri": "https://models.example.com/m.gguf"},
        "gpu": {"products": ["Tesla-T4"]},
        "replicas": {"min": 0, "max": 1},
        "scaling": {"idleTimeout": "15m", "scaleDownDelay": "5m", "wakeTimeout": "10m"},
        **sections,
    }
    return ModelDeploymentSpec.model_validate(document)


def trace(*requests: tuple[float, float]) -> Trace:
    """Requests as (seconds after T0, duration seconds)."""
    return Trace(
        tuple(TraceRequest(T0 + timedelta(seconds=at), duration) for at, duration in requests)
    )


def simulate(
    the_spec: ModelDeploymentSpec,
    the_trace: Trace,
    hours: float = 3.0,
    activator: bool = True,
    **world: Any,
) -> SimResult:
    resolved = World(**world).resolve(the_spec)
    end = T0 + timedelta(hours=hours)
    return Simulation(the_spec, resolved, the_trace, T0, end, activator=activator).run()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def waits(result: SimResult) -> list[float | None]:
    return [request.wait_seconds for request in result.requests]


def test_one_request_wakes_a_cold_model_and_the_node_lingers_after_it() -> None:
    # 1h: request held, node requested. +180 node ready, +240 model ready: wait 240 s.
    # Last activity at +240 (the request in flight): idle at +240+900 = +1140, scale to zero
    # (scaleDownDelay counts from the last activity); node removed 600 s later, at +1740.
    result = simulate(spec(), trace((HOUR, 10.0)))
    assert waits(result) == [240.0]
    [node] = result.nodes
    assert node.requested == at(HOUR)
    assert node.removed == at(HOUR + 1740)
    assert result.node_seconds() == 1740.0
    assert len(result.cold_starts) == 1
    assert result.cold_starts[0].start == at(HOUR)
    assert result.cold_starts[0].end == at(HOUR + 240)
    assert [(t, r) for t, r in result.replicas] == [(at(0), 0), (at(HOUR), 1), (at(HOUR + 1140), 0)]


def test_always_on_pays_for_every_hour_and_never_waits() -> None:
    always = build_policy("always-on", spec()).spec
    result = simulate(always, trace((600, 5.0), (3000, 5.0)), hours=2.0)
    assert waits(result) == [0.0, 0.0]
    assert result.node_seconds() == 2 * HOUR
    report = summarize(result, "", lambda _moment: False, 2.0)
    assert report.node_hours == 2.0
    assert report.cost == pytest.approx(2 * 0.526)
    assert report.share_of_always_on == 1.0
    assert report.cold_starts == 0
    assert report.pod_starts == 0  # the replica was there when the period began


def test_a_wake_while_the_empty_node_still_exists_only_loads_the_model() -> None:
    # The first wake ends with the pod gone at 1h+1140; its node would go at 1h+1740.
    # A request at 1h+1440 gets a pod on that node at once: ready after 60 s of model load.
    # Then idle from 1h+1500 -> pod gone at 1h+2400, node gone at 1h+3000. One node in all.
    result = simulate(spec(), trace((HOUR, 10.0), (HOUR + 1440, 10.0)))
    assert waits(result) == [240.0, 60.0]
    [node] = result.nodes
    assert (node.requested, node.removed) == (at(HOUR), at(HOUR + 3000))
    assert result.node_seconds() == 3000.0
    assert len(result.cold_starts) == 2
    assert len(result.pods) == 2


def test_requests_beyond_the_replicas_concurrency_queue_in_order() -> None:
    always = build_policy("always-on", spec()).spec
    result = simulate(
        always, trace((600, 10.0), (600, 10.0), (600, 10.0), (605, 1.0)), concurrency=1
    )
    assert waits(result) == [0.0, 10.0, 20.0, 25.0]
    assert all(request.outcome == Outcome.SERVED for request in result.requests)


def test_a_request_held_longer_than_wake_timeout_times_out() -> None:
    # wakeTimeout 1m < 240 s cold start: 503 at 1h+60. The wake goes on (demand was seen).
    # Last activity: the decision at the 1h+30 metric tick saw the request still held.
    # The replica is ready at 1h+240, idle at 1h+30+900 = 1h+930; node gone at 1h+1530.
    short = spec(scaling={"idleTimeout": "15m", "scaleDownDelay": "5m", "wakeTimeout": "1m"})
    result = simulate(short, trace((HOUR, 10.0)))
    [request] = result.requests
    assert request.outcome == Outcome.TIMED_OUT
    assert request.wait_seconds == 60.0
    assert result.node_seconds() == 1530.0
    assert result.cold_starts[0].end == at(HOUR + 60)


def test_prewarm_has_the_replica_ready_before_the_window_opens() -> None:
    # Window 08:00-09:00 UTC, prewarm 10m: node at 07:50, ready 07:53, model 07:54.
    # Request 08:30:05 (10 s) is served at once; last activity 08:30:05 (its request time).
    # 09:00 the window closes and idleness is long over: scale to zero, node gone at 09:10.
    windowed = spec(
        schedule={
            "timezone": "UTC",
            "prewarm": "10m",
            "windows": [{"name": "morning", "start": "0 8 * * *", "end": "0 9 * * *"}],
        }
    )
    result = simulate(windowed, trace((8.5 * HOUR + 5, 10.0)), hours=12.0)
    assert waits(result) == [0.0]
    [node] = result.nodes
    assert (node.requested, node.removed) == (at(7 * HOUR + 50 * 60), at(9 * HOUR + 600))
    assert result.node_seconds() == 80 * 60.0
    assert result.cold_starts == []
    [pod] = result.pods
    assert pod.ready_at == at(7 * HOUR + 54 * 60)


def test_without_an_activator_requests_at_zero_are_refused_at_once() -> None:
    windowed = spec(
        schedule={
            "timezone": "UTC",
            "windows": [{"name": "morning", "start": "0 8 * * *", "end": "0 9 * * *"}],
        }
    )
    result = simulate(
        windowed, trace((HOUR, 10.0), (8.5 * HOUR, 10.0)), hours=12.0, activator=False
    )
    assert [request.outcome for request in result.requests] == [Outcome.REJECTED, Outcome.SERVED]
    assert result.cold_starts == []
    # Window only: requested 08:00 (no prewarm), down at 09:00, node gone 09:10.
    assert result.node_seconds() == 70 * 60.0


def test_a_full_gateway_queue_refuses_requests() -> None:
    result = simulate(
        spec(), trace((HOUR, 1.0), (HOUR + 1, 1.0), (HOUR + 2, 1.0)), gateway_queue_size=2
    )
    assert [request.outcome for request in result.requests] == [
        Outcome.SERVED,
        Outcome.SERVED,
        Outcome.REJECTED,
    ]


def test_load_adds_a_second_replica_on_a_second_node() -> None:
    # max 2, target 3 per replica (default), concurrency 4: eight long requests at once mean
    # load 8 -> 2 replicas at the first metric tick after the burst (always-on keeps one).
    always = build_policy("always-on", spec(replicas={"min": 0, "max": 2})).spec
    burst = tuple((600.0, 600.0) for _ in range(8))
    result = simulate(always, trace(*burst))
    assert len(result.nodes) == 2
    second = result.nodes[1]
    assert second.requested == at(600)  # the load decision runs at the tick at 600 s
    assert result.pods[1].ready_at == at(600 + 240)
    assert waits(result) == [0.0] * 4 + [240.0] * 4


def test_same_seed_same_result_and_jitter_follows_the_seed() -> None:
    the_spec, the_trace = spec(), trace((HOUR, 10.0), (2 * HOUR, 10.0))
    world = World(node_provision_jitter_seconds=120)
    first = compare(the_spec, the_trace, world, ["siesta"], start=T0, end=at(3 * HOUR), seed=7)
    again = compare(the_spec, the_trace, world, ["siesta"], start=T0, end=at(3 * HOUR), seed=7)
    other = compare(the_spec, the_trace, world, ["siesta"], start=T0, end=at(3 * HOUR), seed=8)
    assert first.reports == again.reports
    assert first.reports != other.reports
    assert all(180 <= w <= 300 for w in [r.wait_seconds or 0 for r in first.results[0].requests])
