"""The CPU bridge's decision (docs/bridge.md): one pure function, and how it bends the GPU's.

A model with `spec.bridge` has a second, CPU-only StatefulSet of at most one replica that
answers while the GPU replica wakes. `bridge_decision` says how many bridge replicas to
run, in which state the bridge is and why, and what it means for the GPU replica
(`GpuGate`); `gate_gpu` applies that to the GPU's own `decide()` answer. A model without a
bridge never reaches this module, so its decision is exactly what it was.

Rules, in order:
1. A failing bridge (crash loop, pull error, not ready within startupTimeout) goes to zero
   at once and stays there for FAILURE_BACKOFF (or until spec.bridge changes); meanwhile the
   GPU decides as if there were no bridge, and if requests were going on it wakes at once.
2. Inside a bridge window the bridge is kept at one replica.
3. A ready GPU replica takes over: the bridge goes to zero once its last stream has ended.
4. Otherwise requests held or on the bridge wake it (or keep it), a waking GPU replica keeps
   it, and it sleeps after the model's idle timeout.
GPU gating (spec.bridge.gpuAfter): while the bridge answers a burst of requests that began
less than gpuAfter ago, a wake of the GPU for those requests is held back; once requests go on
past gpuAfter the GPU wakes. Unset, gpuAfter is zero: the GPU wakes with the bridge.
Fail toward GPU off: the bridge never raises the GPU above what requests ask for, and its
memory (`BridgeMemory`, kept in status.bridge) survives an operator restart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache

from siesta.api.durations import format_duration
from siesta.api.models import BridgeSettings, ModelDeploymentSpec, Schedule, ScheduleWindow
from siesta.policy.decide import serving_condition, when
from siesta.policy.model import Condition, Decision, Observed, Signals
from siesta.policy.schedule import SEARCH_HORIZON, CompiledSchedule, ScheduleError

BRIDGE_CONDITION = "BridgeServing"
FAILURE_BACKOFF = timedelta(minutes=10)
"""A bridge that failed is not woken again for this long: a broken bridge (a bad URI, too
little memory) must not hold each wake of the GPU back by a crash's worth of seconds."""
BRIDGE_RULE = "bridge"
"""The rule label (siesta_operator_decisions_total) of a GPU answer the bridge changed."""


class BridgeState(StrEnum):
    ASLEEP = "Asleep"
    WAKING = "Waking"
    SERVING = "Serving"
    HANDING_OVER = "HandingOver"
    DRAINING = "Draining"
    FAILING = "Failing"


class GpuGate(StrEnum):
    NONE = "none"
    """The GPU decides as if there were no bridge."""
    HOLD = "hold"
    """A wake of the GPU for demand waits: the bridge answers, gpuAfter has not passed."""
    WAKE = "wake"
    """Requests went on past gpuAfter (or the bridge failed while they did): wake the GPU."""


@dataclass(frozen=True)
class BridgeMemory:
    """What the bridge decision keeps between steps (persisted in status.bridge)."""

    desired: int = 0
    """The bridge replicas last decided (a re-created StatefulSet starts with these)."""
    state: BridgeState = BridgeState.ASLEEP
    since: datetime | None = None
    """When `state` began."""
    demand_since: datetime | None = None
    """When the burst of requests the bridge answers began (gpuAfter counts from here)."""
    failed_at: datetime | None = None
    failure: str = ""
    failed_spec: str = ""
    """`settings_key` of the spec.bridge that failed: a new one is tried at once."""


@dataclass(frozen=True)
class BridgeDecision:
    desired: int
    state: BridgeState
    reason: str
    gpu: GpuGate = GpuGate.NONE
    gpu_reason: str = ""
    next_change: datetime | None = None
    condition: Condition | None = None
    memory: BridgeMemory = BridgeMemory()


def settings_key(settings: BridgeSettings) -> str:
    """A short hash of spec.bridge: a failure is remembered for this spec only."""
    return hashlib.sha256(settings.model_dump_json().encode()).hexdigest()[:12]


def bridge_windows(windows: Sequence[ScheduleWindow], timezone: str) -> CompiledSchedule:
    """spec.bridge.windows as a schedule whose floor is the bridge's: 0 or 1 replica
    (raises ScheduleError). Used by the decision, `siesta preview` and the simulator."""
    return _compiled_windows(Schedule(timezone=timezone, windows=list(windows)).model_dump_json())


@lru_cache(maxsize=256)
def _compiled_windows(schedule_json: str) -> CompiledSchedule:
    # Parsing crons dominates a decision's cost; a compiled schedule is immutable.
    return CompiledSchedule(Schedule.model_validate_json(schedule_json), 0, 1)


def bridge_window(spec: ModelDeploymentSpec, now: datetime) -> tuple[str | None, datetime | None]:
    """(the bridge window open now, when the windows next open or close)."""
    settings = spec.bridge
    if settings is None or not settings.windows:
        return None, None
    try:
        schedule = bridge_windows(settings.windows, spec.schedule.timezone)
    except ScheduleError:
        return None, None  # the model's own ScheduleValid condition says what is wrong
    floor = schedule.floor_at(now)
    change = schedule.next_change(now)
    later = change.time if change is not None else now + SEARCH_HORIZON
    return (floor.window if floor.replicas > 0 else None), later


def _requests(count: int, what: str) -> str:
    return f"{count} request{'s' if count != 1 else ''} {what}"


def _demand_since(
    previous: datetime | None,
    gpu: Observed,
    bridge: Observed,
    active: bool,
    signals: Signals,
    idle_timeout: timedelta,
    now: datetime,
) -> datetime | None:
    """The start of the burst the bridge answers; None once the GPU serves or all is quiet."""
    if gpu.ready > 0:
        return None
    last = signals.last_request_time
    recent = last is not None and now < last + idle_timeout
    if previous is not None:
        return previous if active or recent else None
    if active:
        return now
    if bridge.ready > 0 and recent:
        # A ready bridge (a window) answers at once: a short request may never show on a
        # Lease as held or in flight, only as its renewTime.
        return last
    return None


def bridge_decision(
    spec: ModelDeploymentSpec,
    gpu: Observed,
    bridge: Observed,
    signals: Signals,
    now: datetime,
    memory: BridgeMemory | None = None,
    *,
    draining: bool = False,
    gpu_wake_allowed: datetime | None = None,
) -> BridgeDecision:
    """The bridge's replicas, state and reason, and its word on the GPU replica.

    `gpu` and `bridge` are the two StatefulSets as observed; `draining`: a bridge pod is
    still terminating; `gpu_wake_allowed`: the GPU's wake backoff (status.wakeBackoff)."""
    if now.tzinfo is None:
        raise ValueError("bridge_decision() needs a timezone-aware `now`")
    settings = spec.bridge
    memory = memory or BridgeMemory()
    if settings is None:
        return BridgeDecision(0, BridgeState.ASLEEP, "no bridge", memory=BridgeMemory())
    idle_timeout = spec.scaling.idle_timeout_delta
    active = signals.pending_requests > 0 or signals.bridge_in_flight > 0
    demand_since = _demand_since(
        memory.demand_since, gpu, bridge, active, signals, idle_timeout, now
    )
    key = settings_key(settings)
    serving = serving_condition(spec, bridge, now)
    if not serving.status and bridge.replicas > 0:
        memory = replace(memory, failed_at=now, failure=serving.message, failed_spec=key)
    memory = replace(memory, demand_since=demand_since)

    retry_at = memory.failed_at + FAILURE_BACKOFF if memory.failed_at is not None else None
    if retry_at is not None and memory.failed_spec == key and now < retry_at:
        decision = _failed(memory, gpu, active, retry_at, serving)
    else:
        decision = _healthy(spec, settings, gpu, bridge, signals, now, memory, draining)
        gate, gpu_reason, due = _gate(settings, gpu, signals, demand_since, active, now)
        later = [t for t in (decision.next_change, due) if t is not None and t > now]
        decision = replace(
            decision, gpu=gate, gpu_reason=gpu_reason, next_change=min(later) if later else None
        )
    if decision.gpu is GpuGate.WAKE and gpu_wake_allowed is not None and now < gpu_wake_allowed:
        decision = replace(decision, gpu=GpuGate.NONE, gpu_reason="")  # the GPU's backoff rules
    since = memory.since if memory.state == decision.state and memory.since else now
    remembered = replace(memory, desired=decision.desired, state=decision.state, since=since)
    return replace(decision, memory=remembered)


def _failed(
    memory: BridgeMemory,
    gpu: Observed,
    active: bool,
    retry_at: datetime,
    serving: Condition,
) -> BridgeDecision:
    reason = (
        f"the bridge failed ({memory.failure}); not woken again before {when(retry_at)} "
        "or a change of spec.bridge: the GPU replica serves"
    )
    waiting = active or memory.demand_since is not None
    gate = GpuGate.WAKE if waiting and gpu.replicas == 0 else GpuGate.NONE
    reason_of_condition = serving.reason if not serving.status else "BridgeFailed"
    return BridgeDecision(
        desired=0,
        state=BridgeState.FAILING,
        reason=reason,
        gpu=gate,
        gpu_reason="the bridge failed while requests waited: waking the GPU replica at once"
        if gate is GpuGate.WAKE
        else "",
        next_change=retry_at,
        condition=Condition(BRIDGE_CONDITION, False, reason_of_condition, memory.failure),
    )


def _healthy(
    spec: ModelDeploymentSpec,
    settings: BridgeSettings,
    gpu: Observed,
    bridge: Observed,
    signals: Signals,
    now: datetime,
    memory: BridgeMemory,
    draining: bool,
) -> BridgeDecision:
    """Rules 2-4, for a bridge that is not failing."""
    window, window_change = bridge_window(spec, now)
    awake = bridge.replicas > 0

    def up(reason: str, wake: datetime | None = None) -> BridgeDecision:
        state = BridgeState.SERVING if bridge.ready > 0 else BridgeState.WAKING
        return _answer(1, state, reason, wake, window_change)

    def down(reason: str, wake: datetime | None = None) -> BridgeDecision:
        state = BridgeState.DRAINING if awake or draining else BridgeState.ASLEEP
        return _answer(0, state, reason, wake, window_change)

    if spec.paused:
        held = min(bridge.replicas, 1)
        return (up if held else down)(f"paused: holding {held} bridge replica(s)")
    if window is not None:
        return up(f"inside bridge window {window}: kept at one replica")
    if gpu.ready > 0:
        if awake and signals.bridge_in_flight > 0:
            streams = _requests(signals.bridge_in_flight, "still on the bridge")
            reason = f"the GPU replica is ready; {streams}: handing over when they end"
            return _answer(1, BridgeState.HANDING_OVER, reason, None, window_change)
        if awake:
            return down("the GPU replica is ready and no request is on the bridge: handed over")
        return down("the GPU replica serves")
    if signals.pending_requests > 0:
        return up(_requests(signals.pending_requests, "waiting at the gateway"))
    if signals.bridge_in_flight > 0:
        return up(_requests(signals.bridge_in_flight, "on the bridge"))
    if awake and gpu.replicas > 0:
        return up("the GPU replica is waking: the bridge answers until it is ready")
    if not awake:
        return down("no requests")
    timeout = spec.scaling.idle_timeout_delta
    last = signals.last_request_time or memory.since or now
    idle_at = last + timeout
    if now < idle_at:
        return up(
            f"last request {when(last)}; idle timeout {format_duration(timeout)} ends "
            f"{when(idle_at)}",
            idle_at,
        )
    return down(f"idle since {when(last)} (idleTimeout {format_duration(timeout)})")


def _answer(
    desired: int,
    state: BridgeState,
    reason: str,
    wake: datetime | None,
    window_change: datetime | None,
) -> BridgeDecision:
    later = [t for t in (wake, window_change) if t is not None]
    condition = Condition(BRIDGE_CONDITION, True, state.value, reason)
    return BridgeDecision(
        desired, state, reason, next_change=min(later) if later else None, condition=condition
    )


def _gate(
    settings: BridgeSettings,
    gpu: Observed,
    signals: Signals,
    demand_since: datetime | None,
    active: bool,
    now: datetime,
) -> tuple[GpuGate, str, datetime | None]:
    """(the gate, why, when it may change) for a healthy bridge."""
    if gpu.replicas > 0 or demand_since is None:
        return GpuGate.NONE, "", None
    after = settings.gpu_after_delta or timedelta(0)
    due = demand_since + after
    last = signals.last_request_time
    goes_on = active or (last is not None and last >= due)
    if now >= due and goes_on:
        if not after:
            return (
                GpuGate.WAKE,
                "requests for the model: the GPU replica wakes with the bridge",
                None,
            )
        return (
            GpuGate.WAKE,
            f"requests went on for gpuAfter {format_duration(after)} since {when(demand_since)}: "
            "waking the GPU replica",
            None,
        )
    if now < due:
        return (
            GpuGate.HOLD,
            f"the bridge answers; the GPU replica wakes at {when(due)} if requests go on "
            f"(gpuAfter {format_duration(after)})",
            due,
        )
    return (
        GpuGate.HOLD,
        f"requests stopped within gpuAfter {format_duration(after)}: the bridge answered them, "
        "the GPU replica stays asleep",
        None,
    )


def gate_gpu(decision: Decision, bridge: BridgeDecision, observed: Observed) -> Decision:
    """The GPU's `decide()` answer as the bridge bends it (only ever for demand at zero).

    HOLD keeps a wake that only held requests ask for (rule "demand") at zero; WAKE lifts
    an answer of zero to one. Paused models and manual overrides are left alone."""
    if observed.replicas > 0 or decision.rule in ("paused", "manual"):
        return decision
    later = [t for t in (decision.next_change, bridge.next_change) if t is not None]
    next_change = min(later) if later else None
    held = bridge.gpu is GpuGate.HOLD and decision.rule == "demand" and decision.desired > 0
    woken = bridge.gpu is GpuGate.WAKE and decision.desired == 0
    if held or woken:
        desired = 1 if woken else 0
        return replace(
            decision,
            desired=desired,
            rule=BRIDGE_RULE,
            reasons=[bridge.gpu_reason, *decision.reasons],
            next_change=next_change,
            memory=replace(decision.memory, desired=desired),
        )
    if bridge.gpu is GpuGate.HOLD:
        return replace(decision, next_change=next_change)
    return decision
