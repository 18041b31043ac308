"""The CPU bridge's decision at fixed times (siesta.policy.bridge): wake, gpuAfter, hand-over,
windows, failure, and that it only ever bends the GPU's answer for demand at zero."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from siesta.api.models import ModelDeploymentSpec
from siesta.operator.observe import format_time
from siesta.operator.status import bridge_memory_from_status, bridge_status
from siesta.policy import Decision, Observed, Signals, decide
from siesta.policy.bridge import (
    BRIDGE_CONDITION,
    FAILURE_BACKOFF,
    BridgeDecision,
    BridgeMemory,
    BridgeState,
    GpuGate,
    bridge_decision,
    gate_gpu,
)
from support.specs import make_spec, utc

NOW = utc("2026-11-25T21:00:00")  # 22:00 in Berlin: the night caller
ASLEEP = Observed()
STARTING = Observed(replicas=1, starting=1, starting_since=NOW)
READY = Observed(replicas=1, ready=1)
CRASHING = Observed(
    replicas=1,
    failing=1,
    failure_reason="CrashLoopBackOff",
    failure="chat-bridge-0: CrashLoopBackOff: out of memory loading the model",
)
NIGHTS = {"name": "nights", "start": "0 20 * * *", "end": "0 7 * * *"}


def spec(**bridge: Any) -> ModelDeploymentSpec:
    return make_spec(
        bridge=bridge,
        scaling={"idleTimeout": "15m"},
        schedule={"timezone": "Europe/Berlin"},
    )


def step(
    model: ModelDeploymentSpec,
    gpu: Observed,
    bridge: Observed,
    signals: Signals,
    now: datetime = NOW,
    memory: BridgeMemory | None = None,
    **options: Any,
) -> tuple[BridgeDecision, Decision]:
    """The bridge's decision and the GPU's answer as the operator would write it."""
    found = bridge_decision(model, gpu, bridge, signals, now, memory, **options)
    return found, gate_gpu(decide(model, gpu, signals, now), found, gpu)


def held(count: int = 1, at: datetime = NOW) -> Signals:
    return Signals(pending_requests=count, last_request_time=at)


def on_bridge(count: int = 1, at: datetime = NOW) -> Signals:
    return Signals(bridge_in_flight=count, last_request_time=at)


def test_a_request_at_zero_wakes_the_bridge_with_the_gpu() -> None:
    bridge, gpu = step(spec(), ASLEEP, ASLEEP, held())
    assert (bridge.desired, bridge.state, bridge.gpu) == (1, BridgeState.WAKING, GpuGate.WAKE)
    assert bridge.reason == "1 request waiting at the gateway"
    assert (gpu.desired, gpu.rule) == (1, "demand")  # decide's own answer, untouched
    assert bridge.memory.demand_since == NOW


def test_with_gpu_after_the_gpu_waits_while_the_bridge_answers() -> None:
    model = spec(gpuAfter="5m")
    bridge, gpu = step(model, ASLEEP, ASLEEP, held())
    assert (bridge.desired, bridge.gpu) == (1, GpuGate.HOLD)
    assert (gpu.desired, gpu.rule) == (0, "bridge")
    assert gpu.reasons[0] == (
        "the bridge answers; the GPU replica wakes at 2026-11-25T21:05Z if requests go on "
        "(gpuAfter 5m)"
    )
    assert gpu.next_change == NOW + timedelta(minutes=5)


def test_a_lone_night_question_costs_no_gpu_node() -> None:
    model = spec(gpuAfter="5m")
    first, _ = step(model, ASLEEP, ASLEEP, held())
    answered = NOW + timedelta(seconds=30)
    # The bridge answered at 21:00:30; nothing since. At 21:05 the GPU stays asleep...
    at_due = NOW + timedelta(minutes=5)
    bridge, gpu = step(
        model, ASLEEP, READY, Signals(last_request_time=answered), at_due, first.memory
    )
    assert (bridge.desired, bridge.state, bridge.gpu) == (1, BridgeState.SERVING, GpuGate.HOLD)
    assert gpu.desired == 0
    assert bridge.next_change == answered + timedelta(minutes=15)  # its idle timeout
    # ...and after the idle timeout the bridge sleeps too.
    quiet = answered + timedelta(minutes=15)
    bridge, gpu = step(
        model, ASLEEP, READY, Signals(last_request_time=answered), quiet, bridge.memory
    )
    assert (bridge.desired, bridge.state, gpu.desired) == (0, BridgeState.DRAINING, 0)
    assert bridge.reason == "idle since 2026-11-25T21:00:30Z (idleTimeout 15m)"
    assert bridge.memory.demand_since is None


def test_requests_that_go_on_past_gpu_after_wake_the_gpu() -> None:
    model = spec(gpuAfter="5m")
    first, _ = step(model, ASLEEP, ASLEEP, held())
    later = NOW + timedelta(minutes=5)
    bridge, gpu = step(model, ASLEEP, READY, on_bridge(at=later), later, first.memory)
    assert bridge.gpu is GpuGate.WAKE
    assert (gpu.desired, gpu.rule) == (1, "bridge")
    assert gpu.reasons[0] == (
        "requests went on for gpuAfter 5m since 2026-11-25T21:00Z: waking the GPU replica"
    )
    assert bridge.desired == 1  # it keeps answering until the GPU is ready


def test_a_request_after_gpu_after_wakes_the_gpu_too() -> None:
    model = spec(gpuAfter="5m")
    first, _ = step(model, ASLEEP, ASLEEP, held())
    follow_up = NOW + timedelta(minutes=7)
    _, gpu = step(
        model, ASLEEP, READY, Signals(last_request_time=follow_up), follow_up, first.memory
    )
    assert gpu.desired == 1


def test_the_bridge_answers_while_the_gpu_wakes() -> None:
    bridge, _ = step(spec(), STARTING, READY, Signals(last_request_time=NOW - timedelta(hours=1)))
    assert (bridge.desired, bridge.state) == (1, BridgeState.SERVING)
    assert bridge.reason == "the GPU replica is waking: the bridge answers until it is ready"


def test_a_ready_gpu_takes_over_once_the_bridge_has_no_request() -> None:
    bridge, gpu = step(spec(), READY, READY, Signals(last_request_time=NOW))
    assert (bridge.desired, bridge.state) == (0, BridgeState.DRAINING)
    assert bridge.reason == "the GPU replica is ready and no request is on the bridge: handed over"
    assert gpu.desired == 1  # the GPU is not the bridge's business once it runs
    assert bridge.memory.demand_since is None


def test_streams_on_the_bridge_keep_it_until_they_end() -> None:
    bridge, _ = step(spec(), READY, READY, on_bridge(2))
    assert (bridge.desired, bridge.state) == (1, BridgeState.HANDING_OVER)
    assert bridge.reason == (
        "the GPU replica is ready; 2 requests still on the bridge: handing over when they end"
    )


def test_after_the_hand_over_the_bridge_drains_then_sleeps() -> None:
    draining, _ = step(spec(), READY, ASLEEP, Signals(), draining=True)
    assert (draining.desired, draining.state) == (0, BridgeState.DRAINING)
    asleep, _ = step(spec(), READY, ASLEEP, Signals())
    assert (asleep.desired, asleep.state, asleep.reason) == (
        0,
        BridgeState.ASLEEP,
        "the GPU replica serves",
    )


def test_a_window_keeps_one_bridge_replica_even_with_the_gpu_ready() -> None:
    model = spec(windows=[NIGHTS])
    bridge, _ = step(model, READY, READY, Signals())
    assert (bridge.desired, bridge.state) == (1, BridgeState.SERVING)
    assert bridge.reason == "inside bridge window nights: kept at one replica"
    assert bridge.next_change == utc("2026-11-26T06:00:00")  # 07:00 in Berlin


def test_outside_its_window_the_bridge_sleeps() -> None:
    model = spec(windows=[NIGHTS])
    noon = utc("2026-11-25T11:00:00")
    bridge, _ = step(model, ASLEEP, ASLEEP, Signals(), noon)
    assert (bridge.desired, bridge.state) == (0, BridgeState.ASLEEP)
    assert bridge.next_change == utc("2026-11-25T19:00:00")  # the window opens at 20:00


def test_in_a_window_short_requests_start_the_gpu_after_clock() -> None:
    model = spec(windows=[NIGHTS], gpuAfter="5m")
    seen = NOW - timedelta(seconds=10)  # answered so fast that no Lease showed it in flight
    bridge, gpu = step(model, ASLEEP, READY, Signals(last_request_time=seen))
    assert bridge.memory.demand_since == seen
    assert (bridge.gpu, gpu.desired) == (GpuGate.HOLD, 0)


def test_a_failing_bridge_goes_to_zero_and_the_gpu_wakes_at_once() -> None:
    model = spec(gpuAfter="5m")
    first, _ = step(model, ASLEEP, ASLEEP, held())
    later = NOW + timedelta(seconds=40)
    bridge, gpu = step(model, ASLEEP, CRASHING, held(at=later), later, first.memory)
    assert (bridge.desired, bridge.state, bridge.gpu) == (0, BridgeState.FAILING, GpuGate.WAKE)
    assert (gpu.desired, gpu.rule) == (1, "demand")  # decide's own wake, no longer held
    assert bridge.condition is not None
    assert (bridge.condition.type, bridge.condition.status) == (BRIDGE_CONDITION, False)
    assert bridge.condition.reason == "CrashLoopBackOff"
    assert bridge.condition.message == CRASHING.failure
    assert bridge.memory.failed_at == later


def test_a_bridge_that_failed_is_not_woken_again_before_its_backoff() -> None:
    model = spec(gpuAfter="5m")
    failed, _ = step(model, ASLEEP, CRASHING, held())
    soon = NOW + timedelta(minutes=3)
    bridge, gpu = step(model, ASLEEP, ASLEEP, held(at=soon), soon, failed.memory)
    assert (bridge.desired, bridge.state) == (0, BridgeState.FAILING)
    assert gpu.desired == 1  # nothing holds the GPU back meanwhile
    assert bridge.next_change == NOW + FAILURE_BACKOFF
    after = NOW + FAILURE_BACKOFF
    bridge, _ = step(model, ASLEEP, ASLEEP, held(at=after), after, failed.memory)
    assert (bridge.desired, bridge.state) == (1, BridgeState.WAKING)


def test_a_new_bridge_spec_is_tried_at_once() -> None:
    failed, _ = step(spec(gpuAfter="5m"), ASLEEP, CRASHING, held())
    fixed = spec(gpuAfter="5m", resources={"requests": {"memory": "16Gi"}})
    soon = NOW + timedelta(minutes=1)
    bridge, _ = step(fixed, ASLEEP, ASLEEP, held(at=soon), soon, failed.memory)
    assert (bridge.desired, bridge.state) == (1, BridgeState.WAKING)


def test_a_bridge_never_wakes_a_gpu_in_its_wake_backoff() -> None:
    model = spec(gpuAfter="5m")
    first, _ = step(model, ASLEEP, ASLEEP, held())
    later = NOW + timedelta(minutes=6)
    bridge, gpu = step(
        model,
        ASLEEP,
        READY,
        on_bridge(at=later),
        later,
        first.memory,
        gpu_wake_allowed=later + timedelta(minutes=1),
    )
    assert (bridge.gpu, gpu.desired) == (GpuGate.NONE, 0)


def test_the_gate_leaves_every_answer_but_demand_at_zero_alone() -> None:
    model = spec(gpuAfter="5m")
    hold = BridgeDecision(1, BridgeState.WAKING, "", gpu=GpuGate.HOLD, gpu_reason="held")
    window = Decision(desired=1, reasons=["inside window"], next_change=None, rule="schedule")
    assert gate_gpu(window, hold, ASLEEP) == window
    running = decide(model, READY, held(), NOW)
    assert gate_gpu(running, hold, READY) == running
    paused = replace(decide(model, ASLEEP, held(), NOW), rule="paused")
    assert gate_gpu(paused, hold, ASLEEP) == paused


def test_the_bridge_memory_survives_a_restart_in_status() -> None:
    failed, _ = step(spec(gpuAfter="5m"), ASLEEP, CRASHING, held())
    memory = replace(failed.memory, demand_since=NOW - timedelta(minutes=1))
    written = bridge_status(replace(failed, memory=memory), ASLEEP)
    assert written["failedAt"] == format_time(NOW)
    assert bridge_memory_from_status({"bridge": written}) == memory
    assert bridge_memory_from_status({}) == BridgeMemory()
