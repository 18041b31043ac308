"""Prewarm from history (schedule.learnedPrewarm): pure, fixed times."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siesta.cli import main
from siesta.operator.status import Situation, build_status, memory_from_status
from siesta.policy import Memory, Observed, Signals, decide
from siesta.policy.prewarm import DemandPattern, learned_prewarm, observe_arrival, slot_key
from support.specs import make_spec, utc

BERLIN = "Europe/Berlin"
LEAD = timedelta(minutes=10)


@pytest.mark.parametrize(
    ("moment", "key"),
    [
        ("2026-11-23T07:52+01:00", "weekday-07:45"),
        ("2026-11-23T07:45+01:00", "weekday-07:45"),
        ("2026-11-23T07:44:59+01:00", "weekday-07:30"),
        ("2026-11-28T10:05+01:00", "weekend-10:00"),
    ],
)
def test_slot_keys(moment: str, key: str) -> None:
    assert slot_key(utc(moment), BERLIN) == key


def mornings(days: list[int], at: str = "07:52") -> DemandPattern:
    """A first request at `at` (Berlin) on each of these November days, and one at 12:00."""
    pattern, last = DemandPattern(), None
    for day in days:
        for moment in (utc(f"2026-11-{day:02d}T{at}+01:00"), utc(f"2026-11-{day:02d}T12:00+01:00")):
            pattern = observe_arrival(pattern, last, moment, BERLIN)
            last = moment
    return pattern


def test_counting_days_and_first_requests() -> None:
    pattern = mornings([23, 24])
    assert dict(pattern.days) == {"weekday": 2}
    assert dict(pattern.slots) == {"weekday-07:45": 2, "weekday-12:00": 2}
    # A request 10 minutes after the last one is not a first request; the same slot on the
    # same day counts once.
    last = utc("2026-11-24T12:00+01:00")
    again = observe_arrival(pattern, last, last + timedelta(minutes=10), BERLIN)
    assert again == pattern
    assert observe_arrival(pattern, last, last - timedelta(hours=1), BERLIN) == pattern


@pytest.mark.parametrize(
    ("name", "days", "now", "active", "next_change"),
    [
        (
            "before the lead",
            [23, 24, 25, 26],
            "2026-11-27T07:30+01:00",
            False,
            "2026-11-27T07:35+01:00",
        ),
        (
            "inside the lead",
            [23, 24, 25, 26],
            "2026-11-27T07:40+01:00",
            True,
            "2026-11-27T08:00+01:00",
        ),
        (
            "inside the quarter-hour",
            [23, 24, 25, 26],
            "2026-11-27T07:50+01:00",
            True,
            "2026-11-27T08:00+01:00",
        ),
        ("after it", [23, 24, 25, 26], "2026-11-27T08:00+01:00", False, "2026-11-27T11:50+01:00"),
        ("two days are not a pattern", [23, 24], "2026-11-27T07:40+01:00", False, None),
        (
            "weekends learn apart",
            [23, 24, 25, 26],
            "2026-11-28T07:40+01:00",
            False,
            "2026-11-30T07:35+01:00",
        ),
    ],
)
def test_learned_prewarm(
    name: str, days: list[int], now: str, active: bool, next_change: str | None
) -> None:
    found = learned_prewarm(mornings(days), utc(now), BERLIN, LEAD)
    assert found.active is active, name
    assert found.next_change == (utc(next_change) if next_change else None), name
    if active:
        assert found.reason == (
            "learned prewarm: on 4 of 4 weekdays with requests the first one after a quiet "
            "hour came at 07:45-08:00"
        )


def test_in_decide_and_through_the_status() -> None:
    spec = make_spec(
        replicas={"min": 0, "max": 2},
        schedule={"timezone": BERLIN, "learnedPrewarm": {"enabled": True, "lead": "10m"}},
        scaling={"idleTimeout": "15m"},
    )
    previous = Memory(demand_pattern=mornings([23, 24, 25, 26]))
    now = utc("2026-11-27T07:40+01:00")
    decision = decide(spec, Observed(), Signals(load=0.0), now, previous)
    assert decision.desired == 1
    assert decision.rule == "learned-prewarm"
    assert decision.reasons[0].startswith("learned prewarm: on 4 of 4 weekdays")
    assert decision.next_change == utc("2026-11-27T08:00+01:00")
    status = build_status(decision, Situation(observed=Observed()), None, now)
    assert status["demandPattern"]["slots"]["weekday-07:45"] == 4
    assert memory_from_status(status).demand_pattern == decision.memory.demand_pattern
    off = make_spec(replicas={"min": 0, "max": 2}, schedule={"timezone": BERLIN})
    assert decide(off, Observed(), Signals(load=0.0), now, previous).desired == 0  # off by default


@given(
    offsets=st.lists(st.integers(0, 14 * 24 * 60), max_size=40),
    probe=st.integers(0, 14 * 24 * 60),
)
def test_never_active_without_a_pattern_and_days_only_grow(offsets: list[int], probe: int) -> None:
    start = utc("2026-11-23T00:00+01:00")
    pattern, last = DemandPattern(), None
    for minutes in sorted(offsets):
        moment = start + timedelta(minutes=minutes)
        before = sum(n for _, n in pattern.days)
        pattern = observe_arrival(pattern, last, moment, BERLIN)
        assert sum(n for _, n in pattern.days) >= before
        last = moment if last is None or moment > last else last
    at: datetime = start + timedelta(minutes=probe)
    assert not learned_prewarm(DemandPattern(), at, BERLIN, LEAD).active
    found = learned_prewarm(pattern, at, BERLIN, LEAD)
    if found.active:
        assert found.reason.startswith("learned prewarm: on ")


EXAMPLES = Path(__file__).parents[2] / "deploy" / "examples"


def test_preview_shows_the_learned_prewarm(capsys: pytest.CaptureFixture[str]) -> None:
    arguments = [
        "preview",
        "-f",
        str(EXAMPLES / "t4-learned-prewarm.yaml"),
        "--from",
        "2026-12-03T00:00:00+01:00",
        "--to",
        "2026-12-04T00:00:00+01:00",
        "--requests",
        str(EXAMPLES / "traces" / "standup-week-berlin.csv"),
    ]
    assert main([*arguments, "-o", "json"]) == 0
    entries = [e for e in json.loads(capsys.readouterr().out) if "learnedPrewarm" in e]
    assert entries == [
        {
            "time": "2026-12-03T08:35:00+01:00",
            "learnedPrewarm": True,
            "reason": "learned prewarm: on 9 of 9 weekdays with requests the first one after a "
            "quiet hour came at 08:45-09:00",
        },
        {"time": "2026-12-03T09:00:00+01:00", "learnedPrewarm": False, "reason": "over"},
    ]
    assert main(arguments) == 0
    assert "learned prewarm on  (learned prewarm: on 9 of 9 weekdays" in capsys.readouterr().out


def test_lead_must_be_positive() -> None:
    from siesta.api.loader import InvalidManifest, parse_model_deployment

    document = {
        "apiVersion": "siesta.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "m"},
        "spec": {
            "model": {"uri": "https://x/m.gguf"},
            "schedule": {"learnedPrewarm": {"enabled": True, "lead": "soon"}},
        },
    }
    with pytest.raises(InvalidManifest, match=r"spec\.schedule\.learnedPrewarm\.lead"):
        parse_model_deployment(document)
