"""Holiday calendars in schedules, at fixed instants (Berlin: UTC+1 in winter)."""

from __future__ import annotations

from datetime import date
from typing import Any

import holidays
import pytest
from pydantic import ValidationError

from siesta.policy import CompiledSchedule, Memory, Observed, ScheduleError, Signals, decide
from support.specs import make_spec, utc

BERLIN = {"country": "DE", "subdivision": "BE"}
OFFICE = {"name": "office", "start": "0 8 * * 1-5", "end": "0 18 * * 1-5", "minReplicas": 1}
NIGHT = {"name": "night", "start": "0 22 * * *", "end": "0 6 * * *", "minReplicas": 1}
# The package's own English name (it has changed between releases).
WOMENS_DAY = holidays.country_holidays("DE", subdiv="BE", language="en_US")[date(2027, 3, 8)]
EARLY = {"name": "early", "start": "15 0 * * *", "duration": "2h", "minReplicas": 1}


def schedule(*windows: dict[str, Any], holidays: Any = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"timezone": "Europe/Berlin", "windows": list(windows), **extra}
    if holidays is not None:
        body["holidays"] = holidays
    return body


def compiled(body: dict[str, Any]) -> CompiledSchedule:
    spec = make_spec(schedule=body, replicas={"min": 0, "max": 3})
    return CompiledSchedule(spec.schedule, spec.replicas.min, spec.replicas.max)


# 2026-12-24 is a Thursday (a working day in Germany), 2026-12-25 Christmas Day (Friday),
# 2026-12-26 Second Day of Christmas (Saturday), 2026-12-28 a Monday.
# 2027-03-08 (Monday) is International Women's Day: a holiday in Berlin only.
@pytest.mark.parametrize(
    ("body", "local_time", "replicas", "window", "holiday"),
    [
        (schedule(OFFICE, holidays=BERLIN), "2026-12-24T09:00", 1, "office", None),
        (schedule(OFFICE, holidays=BERLIN), "2026-12-25T09:00", 0, None, "Christmas Day"),
        (schedule(OFFICE, holidays=BERLIN), "2026-12-25T19:00", 0, None, None),  # after hours
        (schedule(OFFICE, holidays=BERLIN), "2026-12-28T08:00", 1, "office", None),
        (schedule(OFFICE), "2026-12-25T09:00", 1, "office", None),  # no calendar: open
        # A window across midnight into a holiday runs to its end...
        (schedule(NIGHT, holidays=BERLIN), "2026-12-24T23:00", 1, "night", None),
        (schedule(NIGHT, holidays=BERLIN), "2026-12-25T05:59", 1, "night", None),
        (schedule(NIGHT, holidays=BERLIN), "2026-12-25T06:00", 0, None, None),
        # ...but none opens on the holiday, and the one from a holiday evening stays shut.
        (schedule(NIGHT, holidays=BERLIN), "2026-12-25T22:00", 0, None, "Christmas Day"),
        (schedule(NIGHT, holidays=BERLIN), "2026-12-26T03:00", 0, None, "Christmas Day"),
        (schedule(NIGHT, holidays=BERLIN), "2026-12-27T03:00", 0, None, "Second Day of Christmas"),
        (schedule(NIGHT, holidays=BERLIN), "2026-12-27T22:00", 1, "night", None),
        # A subdivision-only holiday: Berlin closes, Bavaria and Germany as a whole do not.
        (schedule(OFFICE, holidays=BERLIN), "2027-03-08T10:00", 0, None, WOMENS_DAY),
        (
            schedule(OFFICE, holidays={"country": "DE", "subdivision": "BY"}),
            "2027-03-08T10:00",
            1,
            "office",
            None,
        ),
        (schedule(OFFICE, holidays={"country": "DE"}), "2027-03-08T10:00", 1, "office", None),
        # Extra dates, alone or with a country.
        (
            schedule(OFFICE, holidays={"dates": ["2026-12-24"]}),
            "2026-12-24T09:00",
            0,
            None,
            "closed (holidays.dates)",
        ),
        (
            schedule(OFFICE, holidays={**BERLIN, "dates": ["2026-12-24"]}),
            "2026-12-25T09:00",
            0,
            None,
            "Christmas Day",
        ),
        # Prewarm: none for a closed day; one on a closed day for the open day after it.
        (
            schedule(OFFICE, holidays=BERLIN, prewarm="30m"),
            "2026-12-25T07:45",
            0,
            None,
            "Christmas Day",
        ),
        (schedule(OFFICE, holidays=BERLIN, prewarm="30m"), "2026-12-28T07:45", 1, "office", None),
        (schedule(EARLY, holidays=BERLIN, prewarm="30m"), "2026-12-26T23:50", 1, "early", None),
        (
            schedule(EARLY, holidays=BERLIN, prewarm="30m"),
            "2026-12-25T23:50",
            0,
            None,
            "Second Day of Christmas",
        ),
    ],
)
def test_floor_on_closed_days(
    body: dict[str, Any], local_time: str, replicas: int, window: str | None, holiday: str | None
) -> None:
    floor = compiled(body).floor_at(utc(local_time + "+01:00"))
    assert (floor.replicas, floor.window, floor.holiday) == (replicas, window, holiday)


@pytest.mark.parametrize(
    ("body", "local_from", "local_next"),
    [
        # After Thursday's office hours the next opening skips Christmas and the weekend.
        (schedule(OFFICE, holidays=BERLIN), "2026-12-24T18:00", "2026-12-28T08:00"),
        (schedule(OFFICE), "2026-12-24T18:00", "2026-12-25T08:00"),
        # The window open into the holiday closes as usual; the next opens after the holidays.
        (schedule(NIGHT, holidays=BERLIN), "2026-12-25T01:00", "2026-12-25T06:00"),
        (schedule(NIGHT, holidays=BERLIN), "2026-12-25T06:00", "2026-12-27T22:00"),
        (schedule(OFFICE, holidays=BERLIN, prewarm="30m"), "2026-12-24T18:00", "2026-12-28T07:30"),
    ],
)
def test_next_change_skips_closed_days(
    body: dict[str, Any], local_from: str, local_next: str
) -> None:
    change = compiled(body).next_change(utc(local_from + "+01:00"))
    assert change is not None
    assert change.time == utc(local_next + "+01:00")


def test_closed_days_between_lists_them_with_reasons() -> None:
    days = compiled(schedule(OFFICE, holidays={**BERLIN, "dates": ["2026-12-31"]}))
    listed = days.closed_days_between(utc("2026-12-23T12:00+01:00"), utc("2027-01-02T00:00+01:00"))
    assert [(day, why) for day, why in listed] == [
        (utc("2026-12-25T00:00+01:00"), "Christmas Day"),
        (utc("2026-12-26T00:00+01:00"), "Second Day of Christmas"),
        (utc("2026-12-31T00:00+01:00"), "closed (holidays.dates)"),
        (utc("2027-01-01T00:00+01:00"), "New Year's Day"),
    ]


def test_demand_and_load_still_wake_the_model_on_a_holiday() -> None:
    spec = make_spec(schedule=schedule(OFFICE, holidays=BERLIN), replicas={"min": 0, "max": 3})
    christmas = utc("2026-12-25T10:00+01:00")
    quiet = decide(spec, Observed(), Signals(load=0.0), christmas, Memory())
    assert quiet.desired == 0
    assert any(reason.startswith("holiday: Christmas Day") for reason in quiet.reasons)
    asked = decide(spec, Observed(), Signals(load=0.0, pending_requests=2), christmas, Memory())
    assert asked.desired == 1
    loaded = decide(spec, Observed(1, 1), Signals(load=7.0), christmas, Memory())
    assert loaded.desired == 3


@pytest.mark.parametrize(
    ("holidays", "message"),
    [
        ({"subdivision": "BE"}, "holidays.subdivision needs holidays.country"),
        ({"dates": ["2026-02-30"]}, "2026-02-30 is not a date"),
        ({"dates": ["2026-2-3"]}, "String should match pattern"),
        ({"country": "de"}, "String should match pattern"),
    ],
)
def test_malformed_calendars_are_rejected_with_a_clear_message(
    holidays: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        make_spec(schedule=schedule(OFFICE, holidays=holidays))


@pytest.mark.parametrize(
    ("holidays", "message"),
    [
        ({"country": "XX"}, "'XX' is not a country the holidays package knows"),
        (
            {"country": "DE", "subdivision": "ZZ"},
            r"'ZZ' is not a subdivision of DE \(known: BB, BE",
        ),
    ],
)
def test_unknown_countries_make_the_schedule_invalid(
    holidays: dict[str, Any], message: str
) -> None:
    """Well-formed but unknown: the operator reports ScheduleValid=False (like a bad time zone)."""
    with pytest.raises(ScheduleError, match=message):
        compiled(schedule(OFFICE, holidays=holidays))
    spec = make_spec(schedule=schedule(OFFICE, holidays=holidays), replicas={"min": 0, "max": 3})
    decision = decide(
        spec,
        Observed(),
        Signals(load=0.0, pending_requests=1),
        utc("2026-12-25T10:00+01:00"),
        Memory(),
    )
    assert decision.desired == 1  # demand still wakes it
    (invalid,) = [c for c in decision.conditions if c.type == "ScheduleValid"]
    assert not invalid.status
    assert "'XX'" in invalid.message or "'ZZ'" in invalid.message
