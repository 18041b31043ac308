"""Every rule of the scaling decision, table-driven, at fixed instants (no clock, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from siesta.policy import ManualOverride, Memory, Observed, Signals, decide, forecast
from support.specs import OFFICE_HOURS, make_spec, utc

WEDNESDAY_NOON = utc("2026-11-25T12:00")  # inside Berlin office hours
WEDNESDAY_NIGHT = utc("2026-11-25T22:00")  # outside
MINUTE = timedelta(minutes=1)


@dataclass
class Case:
    name: str
    spec: dict[str, Any]
    now: datetime
    observed: Observed
    signals: Signals
    previous: Memory = field(default_factory=Memory)
    rule: str = ""
    """Decision.rule: the low-cardinality label the operator's metrics and events carry."""
    desired: int = 0
    first_reason: str = ""
    next_change: datetime | None = None


BASE: dict[str, Any] = {
    "replicas": {"min": 0, "max": 4},
    "scaling": {"idleTimeout": "15m", "scaleDownDelay": "5m"},
}
WITH_HOURS: dict[str, Any] = {**BASE, "schedule": OFFICE_HOURS}
QUIET = Signals(load=0.0)

CASES = [
    # Rule 1: schedule windows set a floor.
    Case(
        "window opens a model at zero",
        WITH_HOURS,
        WEDNESDAY_NOON,
        Observed(),
        QUIET,
        rule="schedule",
        desired=1,
        first_reason="inside window office-hours",
        next_change=utc("2026-11-25T17:00"),
    ),
    Case(
        "outside windows an idle model at zero stays there",
        WITH_HOURS,
        WEDNESDAY_NIGHT,
        Observed(),
        QUIET,
        rule="load",
        desired=0,
        first_reason="load 0",
        next_change=utc("2026-11-26T07:00"),
    ),
    Case(
        "prewarm opens the window early",
        {**BASE, "schedule": {**OFFICE_HOURS, "prewarm": "10m"}},
        utc("2026-11-26T06:51"),
        Observed(),
        QUIET,
        rule="schedule",
        desired=1,
        first_reason="prewarming window office-hours",
    ),
    # Rule 2: load sets a target, clamped to [floor, max].
    Case(
        "load above target scales out",
        BASE,
        WEDNESDAY_NIGHT,
        Observed(1, 1),
        Signals(load=7.0),
        rule="load",
        desired=3,
        first_reason="load 7 at 3 per replica wants 3",
    ),
    Case(
        "load is capped at max",
        BASE,
        WEDNESDAY_NIGHT,
        Observed(1, 1),
        Signals(load=100.0),
        rule="max",
        desired=4,
        first_reason="capped at replicas.max 4",
    ),
    Case(
        "custom target per replica",
        {**BASE, "scaling": {"metric": {"targetPerReplica": 10}}},
        WEDNESDAY_NIGHT,
        Observed(1, 1),
        Signals(load=25.0),
        rule="load",
        desired=3,
        first_reason="load 25 at 10 per replica",
    ),
    Case(
        "load below the floor keeps the floor",
        {**WITH_HOURS, "replicas": {"min": 2, "max": 4}},
        WEDNESDAY_NOON,
        Observed(2, 2),
        Signals(load=1.0),
        rule="min",
        desired=2,
        first_reason="replicas.min is 2",
    ),
    # Rule 3: demand wakes a model at zero at once.
    Case(
        "a held request wakes a model at zero",
        BASE,
        WEDNESDAY_NIGHT,
        Observed(),
        Signals(load=0.0, pending_requests=3),
        rule="demand",
        desired=1,
        first_reason="3 request(s) waiting at the gateway",
    ),
    # Rule 4: idleness and stabilisation.
    Case(
        "recent activity keeps one replica",
        BASE,
        WEDNESDAY_NIGHT,
        Observed(1, 1),
        QUIET,
        Memory(last_active_time=WEDNESDAY_NIGHT - 10 * MINUTE),
        rule="idle-timeout",
        desired=1,
        first_reason="last active",
        next_change=WEDNESDAY_NIGHT + 5 * MINUTE,
    ),
    Case(
        "idle past the timeout scales to zero at once",
        BASE,
        WEDNESDAY_NIGHT,
        Observed(1, 1),
        QUIET,
        Memory(last_active_time=WEDNESDAY_NIGHT - 20 * MINUTE),
        rule="idle",
        desired=0,
        first_reason="scaling down 1 -> 0",
    ),
    Case(
        "a request seen by the gateway counts as activity",
        BASE,
        WEDNESDAY_NIGHT,
        Observed(1, 1),
        Signals(load=0.0, last_request_time=WEDNESDAY_NIGHT - 2 * MINUTE),
        Memory(last_active_time=WEDNESDAY_NIGHT - 60 * MINUTE),
        rule="idle-timeout",
        desired=1,
        first_reason="last active 2026-11-25T21:58Z",
    ),
    Case(
        "a fresh replica nobody used gets a full idle timeout",
        BASE,
        WEDNESDAY_NIGHT,
        Observed(1, 1),
        QUIET,
        rule="idle-timeout",
        desired=1,
        next_change=WEDNESDAY_NIGHT + 15 * MINUTE,
    ),
    Case(
        "load going down waits for scaleDownDelay",
        BASE,
        WEDNESDAY_NIGHT,
        Observed(3, 3),
        Signals(load=3.0),
        rule="scale-down-delay",
        desired=3,
        first_reason="scale-down 3 -> 1 at 2026-11-25T22:05Z",
        next_change=WEDNESDAY_NIGHT + 5 * MINUTE,
    ),
    Case(
        "after scaleDownDelay the lower answer applies",
        BASE,
        WEDNESDAY_NIGHT,
        Observed(3, 3),
        Signals(load=3.0),
        Memory(scale_down_since=WEDNESDAY_NIGHT - 5 * MINUTE),
        rule="load",
        desired=1,
        first_reason="scaling down 3 -> 1",
    ),
    Case(
        "a window closing scales down once idle long enough",
        WITH_HOURS,
        utc("2026-11-25T17:00"),
        Observed(1, 1),
        QUIET,
        Memory(last_active_time=utc("2026-11-25T10:00")),
        rule="idle",
        desired=0,
        first_reason="scaling down 1 -> 0",
    ),
    # Rule 5: never scale down a replica that is still starting.
    Case(
        "no scale-down while a replica loads",
        BASE,
        WEDNESDAY_NIGHT,
        Observed(1, 0, starting=1),
        QUIET,
        Memory(last_active_time=WEDNESDAY_NIGHT - 60 * MINUTE),
        rule="cold-start",
        desired=1,
        first_reason="1 replica still starting",
    ),
    Case(
        "no scale-down while a replica waits for a GPU node",
        BASE,
        WEDNESDAY_NIGHT,
        Observed(2, 1, starting=1, waiting_for_gpu=1),
        QUIET,
        Memory(last_active_time=WEDNESDAY_NIGHT - 60 * MINUTE),
        rule="cold-start",
        desired=2,
        first_reason="1 replica still starting",
    ),
    # Rule 6: missing metrics never scale down.
    Case(
        "metrics unavailable hold replicas",
        BASE,
        WEDNESDAY_NIGHT,
        Observed(2, 2),
        Signals(load=None, load_error="connection refused"),
        Memory(last_active_time=WEDNESDAY_NIGHT - 60 * MINUTE),
        rule="metrics-unavailable",
        desired=2,
        first_reason="metrics unavailable (connection refused): holding 2",
    ),
    Case(
        "metrics unavailable still let demand wake a model",
        BASE,
        WEDNESDAY_NIGHT,
        Observed(),
        Signals(load=None, pending_requests=1),
        rule="demand",
        desired=1,
        first_reason="1 request(s) waiting",
    ),
    Case(
        "an invalid schedule holds replicas",
        {**BASE, "schedule": {"timezone": "Mars/Base"}},
        WEDNESDAY_NIGHT,
        Observed(1, 1),
        QUIET,
        Memory(last_active_time=WEDNESDAY_NIGHT - 60 * MINUTE),
        rule="schedule-invalid",
        desired=1,
        first_reason="schedule invalid (unknown time zone 'Mars/Base'",
    ),
    # Rule 7: paused and manual overrides win.
    Case(
        "paused freezes replicas",
        {**WITH_HOURS, "paused": True},
        WEDNESDAY_NOON,
        Observed(3, 3),
        Signals(load=0.0, pending_requests=5),
        rule="paused",
        desired=3,
        first_reason="paused: holding 3 replicas",
    ),
    Case(
        "kubectl scale pins replicas until the next boundary",
        {**WITH_HOURS, "manualReplicas": 3},
        WEDNESDAY_NOON,
        Observed(1, 1),
        QUIET,
        rule="manual",
        desired=3,
        first_reason="manual override (kubectl scale): 3 replicas until 2026-11-25T13:00Z",
        next_change=utc("2026-11-25T13:00"),
    ),
    Case(
        "kubectl scale is capped at max",
        {**BASE, "manualReplicas": 9},
        WEDNESDAY_NIGHT,
        Observed(1, 1),
        QUIET,
        rule="manual",
        desired=4,
        first_reason="manual override (kubectl scale): 4 replicas (capped at replicas.max 4)",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_rules(case: Case) -> None:
    decision = decide(make_spec(**case.spec), case.observed, case.signals, case.now, case.previous)
    assert (decision.rule, decision.desired) == (case.rule, case.desired), decision.reasons
    assert decision.reasons[0].startswith(case.first_reason), decision.reasons
    if case.next_change is not None:
        assert decision.next_change == case.next_change


def test_override_until_the_next_schedule_boundary() -> None:
    spec = make_spec(**WITH_HOURS, manualReplicas=2)
    decision = decide(spec, Observed(1, 1), QUIET, utc("2026-11-25T16:30"))
    assert decision.memory.manual_override == ManualOverride(
        2, utc("2026-11-25T16:30"), utc("2026-11-25T17:00")
    )


def test_override_expires_and_asks_to_clear_the_field() -> None:
    spec = make_spec(**BASE, manualReplicas=2)
    override = ManualOverride(2, WEDNESDAY_NIGHT - 2 * timedelta(hours=1), WEDNESDAY_NIGHT - MINUTE)
    decision = decide(
        spec, Observed(2, 2), QUIET, WEDNESDAY_NIGHT, Memory(manual_override=override)
    )
    assert decision.clear_manual_replicas
    assert not decision.reasons[0].startswith("manual override")
    # The expired override is remembered, so an uncleared field does not restart it.
    assert decision.memory.manual_override == override


def test_a_changed_override_starts_again() -> None:
    spec = make_spec(**BASE, manualReplicas=3)
    old = ManualOverride(2, WEDNESDAY_NIGHT - MINUTE, WEDNESDAY_NIGHT + 59 * MINUTE)
    decision = decide(spec, Observed(2, 2), QUIET, WEDNESDAY_NIGHT, Memory(manual_override=old))
    assert decision.desired == 3
    assert decision.memory.manual_override == ManualOverride(
        3, WEDNESDAY_NIGHT, WEDNESDAY_NIGHT + timedelta(hours=1)
    )


def test_conditions_report_metrics_and_schedule() -> None:
    spec = make_spec(**{**BASE, "schedule": {"timezone": "Nowhere/Atlantis"}})
    decision = decide(
        spec, Observed(1, 1), Signals(load=None, load_error="Prometheus timed out"), WEDNESDAY_NIGHT
    )
    by_type = {condition.type: condition for condition in decision.conditions}
    assert not by_type["MetricsAvailable"].status
    assert "Prometheus timed out" in by_type["MetricsAvailable"].message
    assert not by_type["ScheduleValid"].status
    assert (
        by_type["ScheduleValid"].message
        == "unknown time zone 'Nowhere/Atlantis': use an IANA name such as Europe/Berlin"
    )


def test_scale_down_clock_survives_a_restart_through_memory() -> None:
    spec = make_spec(**BASE)
    first = decide(spec, Observed(3, 3), Signals(load=3.0), WEDNESDAY_NIGHT)
    assert first.memory.scale_down_since == WEDNESDAY_NIGHT
    later = decide(
        spec, Observed(3, 3), Signals(load=3.0), WEDNESDAY_NIGHT + 5 * MINUTE, first.memory
    )
    assert later.desired == 1


def test_load_returning_resets_the_scale_down_clock() -> None:
    spec = make_spec(**BASE)
    first = decide(spec, Observed(3, 3), Signals(load=3.0), WEDNESDAY_NIGHT)
    back = decide(spec, Observed(3, 3), Signals(load=9.0), WEDNESDAY_NIGHT + MINUTE, first.memory)
    assert back.desired == 3
    assert back.memory.scale_down_since is None


def test_forecast_predicts_the_window_closing() -> None:
    spec = make_spec(**WITH_HOURS)
    decision = decide(
        spec, Observed(1, 1), QUIET, WEDNESDAY_NOON, Memory(last_active_time=WEDNESDAY_NOON)
    )
    transition = forecast(spec, decision, QUIET)
    assert transition is not None
    assert (transition.time, transition.replicas) == (utc("2026-11-25T17:00"), 0)


def test_forecast_predicts_idle_scale_to_zero() -> None:
    spec = make_spec(**BASE)
    decision = decide(
        spec,
        Observed(1, 1),
        QUIET,
        WEDNESDAY_NIGHT,
        Memory(last_active_time=WEDNESDAY_NIGHT - 5 * MINUTE),
    )
    transition = forecast(spec, decision, QUIET)
    assert transition is not None
    assert (transition.time, transition.replicas) == (WEDNESDAY_NIGHT + 10 * MINUTE, 0)


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(make_spec(**BASE), Observed(), QUIET, datetime(2026, 11, 25, 12))
