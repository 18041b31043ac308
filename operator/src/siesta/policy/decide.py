"""The scaling decision: one pure function from (spec, observed, signals, now, memory).

The operator, `siesta explain`, `siesta preview` and `siesta simulate` all call `decide`,
so what users preview is exactly what the operator does. Rules, in order of precedence:

7. `paused` freezes replicas; a manual override (`kubectl scale`) pins them until it expires.
1. Schedule windows set a floor (prewarm opens them early); replicas.min is the base floor.
2. Load sets a target: ceil(load / targetPerReplica).
3. Requests held at the gateway wake a model at zero (>= 1 replica).
4. A model with replicas stays at >= 1 until it has been idle for idleTimeout; every
   scale-down waits until the lower answer has held for scaleDownDelay (for the step to
   zero the wait counts from the last activity).
5. No scale-down while a replica is still starting or loading and making progress: within
   scaling.startupTimeout of its start, and never for a failing replica (crash loop, image
   pull error): those go back to the floor like any idle model, and the condition
   ModelServing=False says why.
6. Missing metrics never lower a serving model: the operator falls back to the servers' own
   load (or the gateways' in-flight counts) and names the source; with no source at all it
   holds, and says so in a condition.
Everything is clamped to replicas.max.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from siesta.api.contract import DEFAULT_TARGET_PER_REPLICA, MODEL_SERVING_CONDITION
from siesta.api.durations import format_duration
from siesta.api.models import ModelDeploymentSpec, Schedule
from siesta.policy.idle import GapHistory, learned_idle_timeout, observe_request
from siesta.policy.model import (
    Condition,
    Decision,
    ManualOverride,
    Memory,
    Observed,
    Signals,
    Transition,
)
from siesta.policy.prewarm import DemandPattern, learned_prewarm, observe_arrival
from siesta.policy.schedule import SEARCH_HORIZON, CompiledSchedule, FloorAt, ScheduleError


def when(moment: datetime) -> str:
    """Timestamps in reasons: short, UTC, unambiguous."""
    moment = moment.astimezone(UTC)
    return (
        moment.strftime("%Y-%m-%dT%H:%MZ")
        if moment.second == 0
        else moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    )


def _latest(*moments: datetime | None) -> datetime | None:
    known = [m for m in moments if m is not None]
    return max(known) if known else None


def _replicas(count: int) -> str:
    return f"{count} replica" if count == 1 else f"{count} replicas"


@lru_cache(maxsize=1024)
def _compile_cached(schedule_json: str, minimum: int, maximum: int) -> CompiledSchedule:
    return CompiledSchedule(Schedule.model_validate_json(schedule_json), minimum, maximum)


def _compile(spec: ModelDeploymentSpec) -> tuple[CompiledSchedule | None, Condition]:
    # Parsing crons dominates the cost of a decision; a compiled schedule is immutable.
    try:
        schedule = _compile_cached(
            spec.schedule.model_dump_json(), spec.replicas.min, spec.replicas.max
        )
    except ScheduleError as error:
        return None, Condition("ScheduleValid", False, "InvalidSchedule", str(error))
    return schedule, Condition("ScheduleValid", True, "Valid", "schedule parsed")


def _manual_override(
    spec: ModelDeploymentSpec,
    previous: ManualOverride | None,
    schedule: CompiledSchedule | None,
    now: datetime,
) -> tuple[ManualOverride | None, ManualOverride | None, bool]:
    """Returns (active override, override to remember, whether spec.manualReplicas should be cleared)."""
    wanted = spec.manual_replicas
    if wanted is None:
        return None, None, False
    if previous is not None and previous.replicas == wanted:
        if now < previous.until:
            return previous, previous, False
        return None, previous, True  # expired: remembered so it is not restarted
    until = now + spec.scaling.override_duration_delta
    change = schedule.next_change(now) if schedule else None
    if change is not None and change.time < until:
        until = change.time
    fresh = ManualOverride(wanted, now, until)
    return fresh, fresh, False


def _floor_reason(floor: FloorAt, spec: ModelDeploymentSpec) -> str:
    if floor.window is None:
        outside = (
            "outside schedule windows; " if spec.schedule.windows and floor.replicas == 0 else ""
        )
        if floor.holiday is not None:
            outside = f"holiday: {floor.holiday}, no window opens; "
        return f"{outside}replicas.min is {floor.replicas}"
    verb = "prewarming" if floor.prewarming else "inside"
    return f"{verb} window {floor.window}: at least {_replicas(floor.replicas)}"


@dataclass(frozen=True)
class _Answer:
    """One rule's answer: the count, why, and what it adds to memory and wake-up times."""

    desired: int
    rule: str
    reasons: list[str]
    wake: tuple[datetime, ...] = ()
    scale_down_since: datetime | None = None


def _metrics_condition(signals: Signals) -> Condition:
    if signals.load is not None and signals.load_source != "prometheus":
        why = f"{signals.load_error}; " if signals.load_error else ""
        message = f"{why}load is {signals.load:g} from the {signals.load_source}"
        return Condition("MetricsAvailable", True, "Fallback", message)
    if signals.load is not None:
        return Condition("MetricsAvailable", True, "QuerySucceeded", f"load is {signals.load:g}")
    message = signals.load_error or "no data"
    return Condition(
        "MetricsAvailable", False, "MetricsUnavailable", f"{message}; holding replicas"
    )


def _last_active(
    previous: Memory, signals: Signals, current: int, now: datetime
) -> datetime | None:
    active = signals.pending_requests > 0 or (signals.load is not None and signals.load > 0)
    last_active = _latest(
        previous.last_active_time, signals.last_request_time, now if active else None
    )
    if last_active is None and current > 0:
        return now  # a replica nobody has used yet still gets a full idle timeout
    return last_active


def _schedule_wake(schedule: CompiledSchedule | None, now: datetime) -> tuple[datetime, ...]:
    change = schedule.next_change(now) if schedule else None
    if change is not None:
        return (change.time,)
    if schedule is not None and schedule.windows:
        return (now + SEARCH_HORIZON,)  # look again: the next change is further away
    return ()


def startup_deadline(spec: ModelDeploymentSpec, observed: Observed) -> datetime | None:
    """When the oldest starting replica stops counting as "starting" (rule 5)."""
    if observed.starting == 0 or observed.starting_since is None:
        return None
    return observed.starting_since + spec.scaling.startup_timeout_delta


def serving_condition(spec: ModelDeploymentSpec, observed: Observed, now: datetime) -> Condition:
    """ModelServing: False while replicas fail or overstay startupTimeout, saying why."""
    if observed.failing > 0:
        reason = observed.failure_reason or "ReplicaFailing"
        return Condition(MODEL_SERVING_CONDITION, False, reason, observed.failure)
    deadline = startup_deadline(spec, observed)
    if deadline is not None and now >= deadline:
        timeout = format_duration(spec.scaling.startup_timeout_delta)
        since = when(observed.starting_since) if observed.starting_since else "?"
        return Condition(
            MODEL_SERVING_CONDITION,
            False,
            "StartupTimeout",
            f"{_replicas(observed.starting)} not ready within startupTimeout {timeout} "
            f"(starting since {since})",
        )
    if observed.ready > 0:
        message = f"{_replicas(observed.ready)} ready"
        return Condition(MODEL_SERVING_CONDITION, True, "Serving", message)
    if observed.starting > 0:
        message = f"{_replicas(observed.starting)} starting"
        return Condition(MODEL_SERVING_CONDITION, True, "Starting", message)
    return Condition(MODEL_SERVING_CONDITION, True, "NoFailures", "no replica is failing")


def decide(
    spec: ModelDeploymentSpec,
    observed: Observed,
    signals: Signals,
    now: datetime,
    previous: Memory | None = None,
) -> Decision:
    if now.tzinfo is None:
        raise ValueError("decide() needs a timezone-aware `now`")
    previous = previous or Memory()
    schedule, schedule_condition = _compile(spec)
    maximum = spec.replicas.max
    floor = schedule.floor_at(now) if schedule else FloorAt(min(spec.replicas.min, maximum), None)
    last_active = _last_active(previous, signals, observed.replicas, now)
    gaps, last_request = previous.request_gaps, previous.last_request_time
    pattern = previous.demand_pattern
    prewarm_settings = spec.schedule.learned_prewarm
    learning_prewarm = prewarm_settings is not None and prewarm_settings.enabled
    if learning_prewarm:
        pattern = observe_arrival(
            pattern, last_request, signals.last_request_time, spec.schedule.timezone
        )
    if spec.scaling.idle_timeout_auto or learning_prewarm:
        gaps, last_request = observe_request(
            gaps, last_request, signals.last_request_time, spec.schedule.timezone
        )
    idle_timeout = _idle_timeout(spec, gaps, last_request)
    override, remembered_override, clear_override = _manual_override(
        spec, previous.manual_override, schedule, now
    )
    if spec.paused:  # Rule 7: the user's word wins.
        current = observed.replicas
        answer = _Answer(current, "paused", [f"paused: holding {_replicas(current)}"])
    elif override is not None:
        answer = _manual_answer(override, maximum)
    else:
        proposals, idle_wake = _proposals(
            spec, observed, signals, now, floor, schedule_condition, last_active, idle_timeout
        )
        prewarm_wake = _learned_prewarm(spec, pattern, now, proposals)
        idle_wake = (*idle_wake, *prewarm_wake)
        answer = _settle(spec, observed, proposals, now, previous, last_active)
        answer = replace(answer, wake=(*idle_wake, *answer.wake))
    later = [t for t in (*_schedule_wake(schedule, now), *answer.wake) if t > now]
    return Decision(
        desired=answer.desired,
        rule=answer.rule,
        reasons=answer.reasons,
        next_change=min(later) if later else None,
        conditions=[
            schedule_condition,
            serving_condition(spec, observed, now),
            _metrics_condition(signals),
        ],
        memory=Memory(
            desired=answer.desired,
            last_active_time=last_active,
            scale_down_since=answer.scale_down_since,
            manual_override=remembered_override,
            last_request_time=last_request,
            request_gaps=gaps,
            demand_pattern=pattern,
        ),
        clear_manual_replicas=clear_override,
        window=floor.window,
    )


@dataclass(frozen=True)
class IdleTimeout:
    """The idle timeout in force, and for `auto` how it was learned."""

    timeout: timedelta
    learned: str = ""


def _idle_timeout(
    spec: ModelDeploymentSpec, gaps: GapHistory, last_request: datetime | None
) -> IdleTimeout:
    scaling = spec.scaling
    if not scaling.idle_timeout_auto:
        return IdleTimeout(scaling.idle_timeout_delta)
    bounds = scaling.auto_idle_timeout_settings
    learned = learned_idle_timeout(
        gaps,
        last_request,
        spec.schedule.timezone,
        bounds.min_delta,
        bounds.max_delta,
        bounds.wake_cost_delta,
    )
    return IdleTimeout(learned.timeout, learned.reason)


def _learned_prewarm(
    spec: ModelDeploymentSpec, pattern: DemandPattern, now: datetime, proposals: list[Proposal]
) -> tuple[datetime, ...]:
    """schedule.learnedPrewarm: a recurring first request is due -> propose 1 (adds to
    `proposals`); returns when to look again."""
    settings = spec.schedule.learned_prewarm
    if settings is None or not settings.enabled:
        return ()
    found = learned_prewarm(pattern, now, spec.schedule.timezone, settings.lead_delta)
    if found.active:
        proposals.append((min(1, spec.replicas.max), 4, "learned-prewarm", found.reason))
    return (found.next_change,) if found.next_change is not None else ()


def _manual_answer(override: ManualOverride, maximum: int) -> _Answer:
    pinned = min(override.replicas, maximum)
    capped = f" (capped at replicas.max {maximum})" if pinned < override.replicas else ""
    reason = (
        f"manual override (kubectl scale): {_replicas(pinned)}{capped} until {when(override.until)}"
    )
    return _Answer(pinned, "manual", [reason], wake=(override.until,))


# (replicas, rank, rule, reason): among equal counts the lowest rank explains best.
Proposal = tuple[int, int, str, str]


def _proposals(
    spec: ModelDeploymentSpec,
    observed: Observed,
    signals: Signals,
    now: datetime,
    floor: FloorAt,
    schedule_condition: Condition,
    last_active: datetime | None,
    idle_timeout: IdleTimeout,
) -> tuple[list[Proposal], tuple[datetime, ...]]:
    """Rules 1-4 each propose a count (the largest wins); and when the idle timeout ends."""
    current = observed.replicas
    scaling = spec.scaling
    proposals: list[Proposal] = [
        (floor.replicas, 0, "schedule", _floor_reason(floor, spec))
        if floor.window
        else (floor.replicas, 5, "min", _floor_reason(floor, spec))
    ]
    if signals.load is not None:
        target = scaling.metric.target_per_replica if scaling.metric else DEFAULT_TARGET_PER_REPLICA
        wanted = math.ceil(signals.load / target) if signals.load > 0 else 0
        source = f" (from the {signals.load_source})" if signals.load_source != "prometheus" else ""
        reason = f"load {signals.load:g}{source} at {target:g} per replica wants {wanted}"
        proposals.append((wanted, 2, "load", reason))
    else:
        unavailable = signals.load_error or "no data"
        proposals.append(
            (
                current,
                1,
                "metrics-unavailable",
                f"metrics unavailable ({unavailable}): holding {current}",
            )
        )
    if not schedule_condition.status:
        invalid = schedule_condition.message
        proposals.append(
            (current, 1, "schedule-invalid", f"schedule invalid ({invalid}): holding {current}")
        )
    if signals.pending_requests > 0:
        waiting_requests = f"{signals.pending_requests} request(s) waiting at the gateway"
        proposals.append((1, 1, "demand", waiting_requests))
    if current == 0 or last_active is None:
        return proposals, ()
    idle_text = format_duration(idle_timeout.timeout)
    learned = f" ({idle_timeout.learned})" if idle_timeout.learned else ""
    idle_at = last_active + idle_timeout.timeout
    if now < idle_at:
        idle_reason = (
            f"last active {when(last_active)}; idle timeout {idle_text} ends {when(idle_at)}"
            f"{learned}"
        )
        proposals.append((1, 3, "idle-timeout", idle_reason))
        return proposals, (idle_at,)
    idle_reason = f"idle since {when(last_active)} (idleTimeout {idle_text}){learned}"
    proposals.append((0, 1, "idle", idle_reason))
    return proposals, ()


def _settle(
    spec: ModelDeploymentSpec,
    observed: Observed,
    proposals: list[Proposal],
    now: datetime,
    previous: Memory,
    last_active: datetime | None,
) -> _Answer:
    """The winning proposal, capped at replicas.max; going down waits (rules 4 and 5)."""
    maximum = spec.replicas.max
    current = observed.replicas
    ranked = sorted(proposals, key=lambda proposal: (-proposal[0], proposal[1]))
    wanted_count = min(ranked[0][0], maximum)
    rule = ranked[0][2]
    reasons = [reason for _, _, _, reason in ranked]
    if ranked[0][0] > maximum:
        rule = "max"
        reasons.insert(0, f"capped at replicas.max {maximum}")
    if current > maximum:
        # replicas.max was lowered: that is the user's word, applied at once.
        rule = "max"
        reasons.insert(0, f"replicas.max lowered to {maximum}: {current} -> {maximum} at once")
        current = maximum
    if wanted_count >= current:
        return _Answer(wanted_count, rule, reasons)

    # Rule 5: a cold start is not idleness, while it makes progress: within startupTimeout,
    # and failing replicas (crash loop, pull errors) are not counted as starting at all.
    deadline = startup_deadline(spec, observed)
    if observed.starting > 0 and (deadline is None or now < deadline):
        blocked = f"{_replicas(observed.starting)} still starting or loading: no scale-down below {current}"
        since = previous.scale_down_since or now
        return _Answer(
            current,
            "cold-start",
            [blocked, *reasons],
            wake=(deadline,) if deadline is not None else (),
            scale_down_since=since,
        )
    if observed.failing > 0:
        reasons.insert(0, f"{_replicas(observed.failing)} failing: {observed.failure}")
    elif deadline is not None:
        timeout = format_duration(spec.scaling.startup_timeout_delta)
        reasons.insert(
            0, f"{_replicas(observed.starting)} not ready within startupTimeout {timeout}"
        )

    # Rule 4: stabilise before going down.
    since = previous.scale_down_since or now
    reference = min(since, last_active) if wanted_count == 0 and last_active else since
    allowed_at = reference + spec.scaling.scale_down_delay_delta
    if now >= allowed_at:
        return _Answer(wanted_count, rule, [f"scaling down {current} -> {wanted_count}", *reasons])
    waiting = (
        f"scale-down {current} -> {wanted_count} at {when(allowed_at)} "
        f"(scaleDownDelay {format_duration(spec.scaling.scale_down_delay_delta)})"
    )
    return _Answer(
        current, "scale-down-delay", [waiting, *reasons], wake=(allowed_at,), scale_down_since=since
    )


def forecast(
    spec: ModelDeploymentSpec,
    decision: Decision,
    signals: Signals,
    steps: int = 16,
) -> Transition | None:
    """The next change of the answer if nothing new happens (no new load or requests)."""
    quiet = replace(signals, pending_requests=0)
    current = decision
    for _ in range(steps):
        moment = current.next_change
        if moment is None:
            return None
        settled = Observed(replicas=decision.desired, ready=decision.desired)
        current = decide(spec, settled, quiet, moment, current.memory)
        if current.desired != decision.desired:
            return Transition(moment, current.desired, current.reasons[0])
    return None
