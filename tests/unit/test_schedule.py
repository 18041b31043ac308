"""Schedule windows at fixed instants: time zones, midnight, overlaps, prewarm, DST."""

from __future__ import annotations

import pytest

from siesta.policy import CompiledSchedule, ScheduleError
from support.specs import OFFICE_HOURS, make_spec, utc


def compiled(schedule: dict[str, object], minimum: int = 0, maximum: int = 5) -> CompiledSchedule:
    spec = make_spec(schedule=schedule, replicas={"min": minimum, "max": maximum})
    return CompiledSchedule(spec.schedule, spec.replicas.min, spec.replicas.max)


OVERNIGHT = {
    "windows": [{"name": "night", "start": "0 22 * * *", "end": "0 6 * * *", "minReplicas": 1}]
}
OVERNIGHT_DURATION = {
    "windows": [{"name": "night", "start": "0 22 * * *", "duration": "8h", "minReplicas": 2}]
}
OVERLAPPING = {
    "windows": [
        {"name": "day", "start": "0 8 * * *", "end": "0 18 * * *", "minReplicas": 1},
        {"name": "peak", "start": "0 11 * * *", "duration": "2h", "minReplicas": 3},
    ]
}


@pytest.mark.parametrize(
    ("schedule", "moment", "replicas", "window"),
    [
        # Berlin is UTC+1 in November; Wednesday 2026-11-25.
        (OFFICE_HOURS, "2026-11-25T06:59", 0, None),
        (OFFICE_HOURS, "2026-11-25T07:00", 1, "office-hours"),
        (OFFICE_HOURS, "2026-11-25T16:59", 1, "office-hours"),
        (OFFICE_HOURS, "2026-11-25T17:00", 0, None),  # the end is exclusive
        (OFFICE_HOURS, "2026-11-28T10:00", 0, None),  # Saturday
        ({**OFFICE_HOURS, "prewarm": "10m"}, "2026-11-25T06:50", 1, "office-hours"),
        ({**OFFICE_HOURS, "prewarm": "10m"}, "2026-11-25T06:49", 0, None),
        (OVERNIGHT, "2026-11-25T21:59", 0, None),
        (OVERNIGHT, "2026-11-25T22:00", 1, "night"),
        (OVERNIGHT, "2026-11-26T00:30", 1, "night"),  # across midnight
        (OVERNIGHT, "2026-11-26T05:59", 1, "night"),
        (OVERNIGHT, "2026-11-26T06:00", 0, None),
        (OVERNIGHT_DURATION, "2026-11-26T05:59", 2, "night"),
        (OVERNIGHT_DURATION, "2026-11-26T06:00", 0, None),
        (OVERLAPPING, "2026-11-25T10:00", 1, "day"),
        (OVERLAPPING, "2026-11-25T12:00", 3, "peak"),  # overlaps take the max
        (OVERLAPPING, "2026-11-25T13:00", 1, "day"),
    ],
)
def test_floor_at(
    schedule: dict[str, object], moment: str, replicas: int, window: str | None
) -> None:
    floor = compiled(schedule).floor_at(utc(moment))
    assert (floor.replicas, floor.window) == (replicas, window)


def test_prewarm_is_reported() -> None:
    schedule = compiled({**OFFICE_HOURS, "prewarm": "10m"})
    assert schedule.floor_at(utc("2026-11-25T06:55")).prewarming
    assert not schedule.floor_at(utc("2026-11-25T07:05")).prewarming


def test_replicas_min_is_the_base_floor() -> None:
    schedule = compiled(OVERLAPPING, minimum=2, maximum=3)
    assert schedule.floor_at(utc("2026-11-25T03:00")).replicas == 2
    assert schedule.floor_at(utc("2026-11-25T10:00")).replicas == 2
    assert schedule.floor_at(utc("2026-11-25T12:00")).replicas == 3


@pytest.mark.parametrize(
    ("timezone", "before", "after", "inside_before", "inside_after"),
    [
        # 08:00 local stays 08:00 local across each change; the UTC instant moves.
        ("Europe/Berlin", "2026-03-27T07:00", "2026-03-30T06:00", True, True),  # spring forward
        ("Europe/Berlin", "2026-03-27T06:00", "2026-03-30T05:00", False, False),
        ("Europe/Berlin", "2026-10-23T06:00", "2026-10-26T07:00", True, True),  # fall back
        ("Europe/Berlin", "2026-10-23T05:59", "2026-10-26T06:59", False, False),
        ("America/Vancouver", "2026-03-06T16:00", "2026-03-09T15:00", True, True),
        ("America/Vancouver", "2026-03-06T15:59", "2026-03-09T14:59", False, False),
        ("America/Vancouver", "2026-10-30T15:00", "2026-11-02T16:00", True, True),
        ("America/Vancouver", "2026-10-30T14:59", "2026-11-02T15:59", False, False),
    ],
)
def test_office_hours_follow_daylight_saving(
    timezone: str, before: str, after: str, inside_before: bool, inside_after: bool
) -> None:
    schedule = compiled({**OFFICE_HOURS, "timezone": timezone})
    assert (schedule.floor_at(utc(before)).replicas == 1) is inside_before
    assert (schedule.floor_at(utc(after)).replicas == 1) is inside_after


def test_duration_is_wall_clock_across_spring_forward() -> None:
    # 01:00 CET + 3h on the wall clock = 04:00 CEST: two hours of real time.
    night = {
        "timezone": "Europe/Berlin",
        "windows": [{"name": "n", "start": "0 1 * * *", "duration": "3h"}],
    }
    schedule = compiled(night)
    assert schedule.floor_at(utc("2026-03-29T00:00")).replicas == 1
    assert schedule.floor_at(utc("2026-03-29T01:59")).replicas == 1
    assert schedule.floor_at(utc("2026-03-29T02:00")).replicas == 0


def test_start_in_the_skipped_hour_happens_an_hour_later() -> None:
    window = {
        "timezone": "Europe/Berlin",
        "windows": [{"name": "n", "start": "30 2 * * *", "duration": "1h"}],
    }
    schedule = compiled(window)
    # 02:30 does not exist on 2026-03-29; the window opens at 03:30 CEST = 01:30Z.
    assert schedule.floor_at(utc("2026-03-29T01:29")).replicas == 0
    assert schedule.floor_at(utc("2026-03-29T01:30")).replicas == 1


def test_start_in_the_repeated_hour_happens_once() -> None:
    window = {
        "timezone": "Europe/Berlin",
        "windows": [{"name": "n", "start": "30 2 * * *", "duration": "15m"}],
    }
    schedule = compiled(window)
    opens = [
        c.time
        for c in schedule.changes_between(utc("2026-10-24T12:00"), utc("2026-10-25T12:00"))
        if c.floor.replicas
    ]
    assert opens == [utc("2026-10-25T00:30")]  # 02:30 CEST, the first of the two 02:30s


@pytest.mark.parametrize(
    ("schedule", "moment", "expected_time", "expected_replicas"),
    [
        (OFFICE_HOURS, "2026-11-25T12:00", "2026-11-25T17:00", 0),
        ({**OFFICE_HOURS, "prewarm": "10m"}, "2026-11-25T18:00", "2026-11-26T06:50", 1),
        (
            {**OFFICE_HOURS, "prewarm": "10m"},
            "2026-11-27T17:00",
            "2026-11-30T06:50",
            1,
        ),  # Friday -> Monday
        (OVERLAPPING, "2026-11-25T10:00", "2026-11-25T11:00", 3),
        (OVERLAPPING, "2026-11-25T11:30", "2026-11-25T13:00", 1),
    ],
)
def test_next_change(
    schedule: dict[str, object], moment: str, expected_time: str, expected_replicas: int
) -> None:
    change = compiled(schedule).next_change(utc(moment))
    assert change is not None
    assert (change.time, change.floor.replicas) == (utc(expected_time), expected_replicas)


def test_no_windows_never_changes() -> None:
    assert compiled({}).next_change(utc("2026-11-25T12:00")) is None


def test_same_window_back_to_back_is_not_a_change() -> None:
    always = {"windows": [{"name": "all-day", "start": "0 0 * * *", "duration": "24h"}]}
    assert (
        compiled(always).next_change(
            utc("2026-11-25T12:00"),
        )
        is None
    )


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "unknown time zone 'Mars/Olympus_Mons'"),
        (
            {"windows": [{"name": "w", "start": "0 25 * * *", "duration": "1h"}]},
            "invalid cron expression '0 25 * * *'",
        ),
        (
            {"windows": [{"name": "w", "start": "0 8 * * *", "end": "0 8 31 2 *"}]},
            "invalid cron expression",
        ),
    ],
)
def test_invalid_schedules_raise_a_clear_error(schedule: dict[str, object], message: str) -> None:
    with pytest.raises(ScheduleError, match=message.replace("*", r"\*")):
        compiled(schedule)
