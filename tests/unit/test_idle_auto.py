"""`scaling.idleTimeout: auto`: the learned idle timeout, its memory and its reasons (fixed times)."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siesta.api.loader import InvalidManifest, parse_model_deployment
from siesta.api.models import ModelDeploymentStatus
from siesta.cli import main
from siesta.operator.status import Situation, build_status, memory_from_status
from siesta.policy import Memory, Observed, Signals, decide
from siesta.policy.idle import (
    BUCKETS,
    GAP_EDGES,
    MIN_SAMPLES,
    ROW_CAP,
    GapHistory,
    bucket_of,
    history_from_requests,
    learned_idle_timeout,
    observe_request,
    row_key,
)
from support.specs import OFFICE_HOURS, make_spec, utc

BERLIN = "Europe/Berlin"
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
BOUNDS = (2 * MINUTE, 30 * MINUTE, 10 * MINUTE)  # the defaults: min, max, wakeCost
WEDNESDAY_21H = utc("2026-11-25T21:00+01:00")  # outside Berlin office hours
EXAMPLES = Path(__file__).parents[2] / "deploy" / "examples"


def history(key: str, gaps: dict[int, int]) -> GapHistory:
    """A history with `count` gaps of `seconds` each ({seconds: count}) in one row."""
    result = GapHistory()
    for seconds, count in gaps.items():
        for _ in range(count):
            result = result.record(key, seconds)
    return result


@pytest.mark.parametrize(
    ("moment", "key"),
    [
        ("2026-11-25T21:30+01:00", "weekday-21"),  # Wednesday evening
        ("2026-11-28T09:15+01:00", "weekend-09"),  # Saturday
        ("2026-11-29T23:59+01:00", "weekend-23"),  # Sunday, last minute
        ("2026-11-30T00:00+01:00", "weekday-00"),  # Monday begins
        ("2026-03-29T01:30Z", "weekend-03"),  # Sunday after the spring-forward gap (CEST)
        ("2026-11-25T20:30Z", "weekday-21"),  # the same instant in UTC
    ],
)
def test_rows_follow_the_schedules_clock(moment: str, key: str) -> None:
    assert row_key(utc(moment), BERLIN) == key


def test_an_unknown_zone_counts_in_utc() -> None:
    assert row_key(utc("2026-11-25T21:30Z"), "Mars/Olympus") == "weekday-21"


@pytest.mark.parametrize(
    ("seconds", "bucket"),
    [(0, 0), (30, 0), (31, 1), (60, 1), (599, 6), (600, 6), (601, 7), (28800, 14), (90000, 15)],
)
def test_buckets(seconds: float, bucket: int) -> None:
    assert bucket_of(seconds) == bucket


LONE = {45: 10, 36000: 10}  # half the gaps a question follow-up, half until the next day
BURSTS = {510: 20, 36000: 2}  # a request every 8-9 minutes, rarely a long pause
TRICKLE = {45: 4, 1500: 6, 36000: 4}  # sessions half an hour apart


@pytest.mark.parametrize(
    ("name", "rows", "at", "timeout", "reason"),
    [
        (
            "nothing seen: the upper bound",
            GapHistory(),
            None,
            30 * MINUTE,
            "auto: no request seen yet, the upper bound (bounds 2m-30m)",
        ),
        (
            "too few gaps: the upper bound while it learns",
            history("weekday-21", {45: 3}),
            WEDNESDAY_21H,
            30 * MINUTE,
            f"auto: learning (3 gaps seen, {MIN_SAMPLES} needed), the upper bound (bounds 2m-30m)",
        ),
        (
            "a lone request where the next one is far: the lower bound",
            history("weekday-21", LONE),
            WEDNESDAY_21H,
            2 * MINUTE,
            "auto: 10 of 20 gaps after a request at weekday 21h ended within 2m; "
            "a wake counted as 10m (bounds 2m-30m)",
        ),
        (
            "bursts a few minutes apart: long enough to bridge them",
            history("weekday-21", BURSTS),
            WEDNESDAY_21H,
            10 * MINUTE,
            "auto: 20 of 22 gaps after a request at weekday 21h ended within 10m",
        ),
        (
            "sessions half an hour apart are not worth the wait",
            history("weekday-21", TRICKLE),
            WEDNESDAY_21H,
            2 * MINUTE,
            "auto: 4 of 14 gaps",
        ),
        (
            "an hour without gaps borrows its neighbours'",
            history("weekday-20", {45: 5, 36000: 5}),
            WEDNESDAY_21H,
            2 * MINUTE,
            "at weekday 21h +/-1h ended within 2m",
        ),
        (
            "a quiet weekend learns from its own few gaps, not from busy weekdays",
            history("weekday-21", BURSTS)
            .record("weekend-12", 45)
            .record("weekend-12", 36000)
            .record("weekend-13", 36000),
            utc("2026-11-28T21:00+01:00"),
            2 * MINUTE,
            "1 of 3 gaps after a request at any weekend hour ended within 2m",
        ),
        (
            "with one weekend gap every hour lends its own",
            history("weekday-21", BURSTS).record("weekend-21", 45),
            utc("2026-11-28T21:00+01:00"),
            10 * MINUTE,
            "at any hour ended within 10m",
        ),
    ],
)
def test_learned_idle_timeout(
    name: str, rows: GapHistory, at: datetime | None, timeout: timedelta, reason: str
) -> None:
    learned = learned_idle_timeout(rows, at, BERLIN, *BOUNDS)
    assert learned.timeout == timeout, name
    assert reason in learned.reason, learned.reason


def test_bounds_clamp_what_is_learned() -> None:
    bursts = history("weekday-21", BURSTS)  # gaps of 8.5 minutes
    bridged = learned_idle_timeout(bursts, WEDNESDAY_21H, BERLIN, MINUTE, 9 * MINUTE, 10 * MINUTE)
    assert bridged.timeout == 9 * MINUTE
    assert "(bounds 1m-9m)" in bridged.reason
    # A maximum too short to bridge them: waiting buys nothing, so the minimum.
    short = learned_idle_timeout(bursts, WEDNESDAY_21H, BERLIN, MINUTE, 5 * MINUTE, 10 * MINUTE)
    assert short.timeout == MINUTE
    lone = history("weekday-21", LONE)
    long = learned_idle_timeout(lone, WEDNESDAY_21H, BERLIN, 20 * MINUTE, HOUR, 10 * MINUTE)
    assert long.timeout == 20 * MINUTE


def test_a_dearer_wake_keeps_the_model_warm_longer() -> None:
    trickle = history("weekday-21", TRICKLE)
    cheap = learned_idle_timeout(trickle, WEDNESDAY_21H, BERLIN, 2 * MINUTE, HOUR, 10 * MINUTE)
    dear = learned_idle_timeout(trickle, WEDNESDAY_21H, BERLIN, 2 * MINUTE, HOUR, HOUR)
    assert cheap.timeout == 2 * MINUTE
    assert dear.timeout == 30 * MINUTE  # the half-hour sessions are now worth bridging


@pytest.mark.parametrize(
    ("previous", "latest", "counted"),
    [
        (None, None, None),
        (None, "2026-11-25T21:00Z", None),  # the first request: nothing to measure yet
        ("2026-11-25T21:00Z", "2026-11-25T21:00Z", None),  # the same request again
        ("2026-11-25T21:00Z", "2026-11-25T20:59Z", None),  # an older Lease: ignored
        ("2026-11-25T20:58Z", "2026-11-25T21:01Z", ("weekday-21", 180)),  # Berlin 21:58
    ],
)
def test_a_gap_is_counted_when_the_last_request_moves_on(
    previous: str | None, latest: str | None, counted: tuple[str, float] | None
) -> None:
    before = utc(previous) if previous else None
    after = utc(latest) if latest else None
    rows, last = observe_request(GapHistory(), before, after, BERLIN)
    assert last == max((t for t in (before, after) if t is not None), default=None)
    if counted is None:
        assert rows == GapHistory()
    else:
        key, seconds = counted
        assert rows == GapHistory().record(key, seconds)
        assert rows.row(key)[bucket_of(seconds)] == 1


def test_a_full_row_halves_so_old_weeks_fade() -> None:
    rows = history("weekday-09", {45: ROW_CAP})
    assert sum(rows.row("weekday-09")) == ROW_CAP
    rows = rows.record("weekday-09", 36000)
    assert rows.row("weekday-09")[bucket_of(45)] == ROW_CAP // 2
    assert rows.row("weekday-09")[-1] == 0  # 1 // 2


def test_history_from_requests_and_back_through_a_mapping() -> None:
    arrivals = [utc("2026-11-25T20:00Z") + k * MINUTE for k in (0, 1, 2, 30)]
    rows, last = history_from_requests(arrivals, BERLIN)
    assert last == arrivals[-1]
    assert rows.row("weekday-21") == tuple(
        3 - 1 if i == bucket_of(60) else (1 if i == bucket_of(1680) else 0) for i in range(BUCKETS)
    )
    assert GapHistory.from_mapping(rows.as_mapping()) == rows
    broken = {"weekday-21": [1, 2], "weekday-22": ["x"] * BUCKETS, "weekend-01": [-1] * BUCKETS}
    assert GapHistory.from_mapping(broken) == GapHistory()  # a bad row costs learning, not a crash


counts = st.lists(st.integers(0, 40), min_size=BUCKETS, max_size=BUCKETS)
durations = st.integers(1, 8 * 3600).map(lambda seconds: timedelta(seconds=seconds))


@given(row=counts, low=durations, high=durations, wake=durations, hour=st.integers(0, 23))
def test_the_learned_timeout_stays_within_its_bounds(
    row: list[int], low: timedelta, high: timedelta, wake: timedelta, hour: int
) -> None:
    low, high = min(low, high), max(low, high)
    rows = GapHistory.from_mapping({f"weekday-{hour:02d}": row})
    at = utc(f"2026-11-25T{hour:02d}:30+01:00")
    learned = learned_idle_timeout(rows, at, BERLIN, low, high, wake)
    assert low <= learned.timeout <= high
    assert learned.reason.startswith("auto: ")


@given(row=counts, wake=durations, more=durations)
def test_a_dearer_wake_never_shortens_the_timeout(
    row: list[int], wake: timedelta, more: timedelta
) -> None:
    rows = GapHistory.from_mapping({"weekday-21": row})
    cheap = learned_idle_timeout(rows, WEDNESDAY_21H, BERLIN, MINUTE, 2 * HOUR, wake)
    dear = learned_idle_timeout(rows, WEDNESDAY_21H, BERLIN, MINUTE, 2 * HOUR, wake + more)
    assert dear.timeout >= cheap.timeout


@given(gaps=st.lists(st.floats(0, 10 * 86400, allow_nan=False), max_size=60))
def test_every_gap_is_counted_once_until_a_row_fills(gaps: list[float]) -> None:
    rows = GapHistory()
    for gap in gaps:
        rows = rows.record("weekend-03", gap)
    assert rows.total() == len(gaps)
    assert all(edge > 0 for edge in GAP_EDGES)


# --- in decide() -----------------------------------------------------------------------------

AUTO: dict[str, Any] = {
    "replicas": {"min": 0, "max": 2},
    "schedule": OFFICE_HOURS,
    "scaling": {"idleTimeout": "auto", "scaleDownDelay": "1m"},
}


def test_decide_after_a_lone_evening_request() -> None:
    spec = make_spec(**AUTO)
    request = utc("2026-11-25T21:00+01:00")
    learned, _ = history_from_requests(
        [
            utc(f"2026-11-{day}T21:00+01:00") + k * 40 * timedelta(seconds=1)
            for day in (17, 18, 19, 20, 23, 24)
            for k in range(3)
        ],
        BERLIN,
    )
    previous = Memory(
        desired=1, last_active_time=request, last_request_time=request, request_gaps=learned
    )
    now = request + MINUTE
    decision = decide(
        spec, Observed(1, 1), Signals(load=0.0, last_request_time=request), now, previous
    )
    assert decision.desired == 1
    assert decision.rule == "idle-timeout"
    assert decision.reasons[0].startswith(
        "last active 2026-11-25T20:00Z; idle timeout 2m ends 2026-11-25T20:02Z (auto: "
    )
    assert "at weekday 21h ended within 2m" in decision.reasons[0]
    assert decision.next_change == request + 2 * MINUTE
    later = decide(
        spec,
        Observed(1, 1),
        Signals(load=0.0, last_request_time=request),
        request + 3 * MINUTE,
        decision.memory,
    )
    assert later.desired == 0
    assert later.reasons[0].startswith("scaling down 1 -> 0")
    assert any(
        r.startswith("idle since 2026-11-25T20:00Z (idleTimeout 2m) (auto: ") for r in later.reasons
    )


def test_decide_counts_gaps_only_for_auto() -> None:
    first, second = utc("2026-11-25T20:00Z"), utc("2026-11-25T20:03Z")
    previous = Memory(desired=1, last_active_time=first, last_request_time=first)
    signals = Signals(load=0.0, last_request_time=second)
    auto = decide(make_spec(**AUTO), Observed(1, 1), signals, second, previous)
    assert auto.memory.last_request_time == second
    assert auto.memory.request_gaps == GapHistory().record("weekday-21", 180)
    fixed_spec = make_spec(**{**AUTO, "scaling": {"idleTimeout": "15m"}})
    fixed = decide(fixed_spec, Observed(1, 1), signals, second, previous)
    assert fixed.memory.request_gaps == GapHistory()
    assert fixed.memory.last_request_time == first
    assert "idle timeout 15m ends" in fixed.reasons[0]


def test_what_was_learned_survives_an_operator_restart() -> None:
    rows, last = history_from_requests(
        [utc("2026-11-25T20:00Z") + k * 3 * MINUTE for k in range(12)], BERLIN
    )
    assert last is not None
    previous = Memory(desired=1, last_active_time=last, last_request_time=last, request_gaps=rows)
    made = decide(
        make_spec(**AUTO), Observed(1, 1), Signals(load=0.0, last_request_time=last), last, previous
    )
    status = build_status(made, Situation(observed=Observed(1, 1)), None, last)
    assert status["requestGaps"] == {
        "lastRequestTime": "2026-11-25T20:33:00Z",
        "counts": {"weekday-21": [0, 0, 0, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]},
    }
    ModelDeploymentStatus.model_validate(json.loads(json.dumps(status)))
    assert memory_from_status(status) == made.memory
    never = decide(make_spec(**AUTO), Observed(), Signals(load=0.0), last, Memory())
    assert build_status(never, Situation(observed=Observed()), None, last)["requestGaps"] is None


# --- the API ---------------------------------------------------------------------------------


def document(scaling: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "siesta.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "m"},
        "spec": {"model": {"uri": "https://x/m.gguf"}, "scaling": scaling},
    }


def test_auto_and_its_bounds_are_accepted() -> None:
    md = parse_model_deployment(
        document({"idleTimeout": "auto", "autoIdleTimeout": {"min": "1m", "max": "1h"}})
    )
    bounds = md.spec.scaling.auto_idle_timeout_settings
    assert (bounds.min_delta, bounds.max_delta, bounds.wake_cost_delta) == (
        MINUTE,
        HOUR,
        10 * MINUTE,
    )
    assert md.spec.scaling.idle_timeout_delta == HOUR  # the longest it may learn


@pytest.mark.parametrize(
    ("scaling", "message"),
    [
        ({"idleTimeout": "automatic"}, "spec.scaling.idleTimeout"),
        (
            {"idleTimeout": "15m", "autoIdleTimeout": {"max": "1h"}},
            "autoIdleTimeout needs idleTimeout: auto",
        ),
        ({"autoIdleTimeout": {"max": "1h"}}, "autoIdleTimeout needs idleTimeout: auto"),
        (
            {"idleTimeout": "auto", "autoIdleTimeout": {"min": "1h", "max": "10m"}},
            "autoIdleTimeout.min must not exceed autoIdleTimeout.max",
        ),
        (
            {"idleTimeout": "auto", "autoIdleTimeout": {"wakeCost": "0s"}},
            "autoIdleTimeout.wakeCost must be a positive duration",
        ),
    ],
)
def test_bad_auto_settings_name_the_field(scaling: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidManifest) as raised:
        parse_model_deployment(document(scaling))
    assert message in str(raised.value)


# --- siesta simulate -----------------------------------------------------------------------------

EVENINGS = "".join(
    f"2026-11-{day}T20:{minute:02d}:00Z,5\n" for day in range(23, 30) for minute in (0, 5, 6, 7)
)


def test_simulate_runs_auto_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "evenings.csv"
    trace.write_text(
        "# span: 2026-11-23T00:00:00+01:00 2026-11-30T00:00:00+01:00\ntimestamp,duration\n"
        + EVENINGS
    )
    base = ["simulate", "-f", str(EXAMPLES / "t4-office-hours.yaml"), "--trace", str(trace)]
    base += ["--policy", "siesta", "-o", "json"]
    assert main(base) == 0
    fixed = json.loads(capsys.readouterr().out)["policies"][0]
    assert main([*base, "--spec-idle-timeout", "auto"]) == 0
    auto = json.loads(capsys.readouterr().out)["policies"][0]
    # An evening session a night, one wake each: while it learns auto keeps 30m, then the
    # few minutes the sessions need; the fixed 15m pays every evening.
    assert auto["coldStarts"] == fixed["coldStarts"] == 7
    assert auto["nodeHours"] < fixed["nodeHours"]
    assert main([*base, "--spec-idle-timeout", "0s"]) == 2
    assert "--spec-idle-timeout must be auto or a positive duration" in capsys.readouterr().err


# --- siesta explain and siesta preview -------------------------------------------------------

AUTO_MD = """\
apiVersion: siesta.dev/v1alpha1
kind: ModelDeployment
metadata: {name: reception-7b, namespace: ai}
spec:
  model: {uri: https://models.example.com/m.gguf}
  schedule:
    timezone: Europe/Berlin
    windows:
      - {name: office-hours, start: "0 8 * * 1-5", end: "0 18 * * 1-5", minReplicas: 1}
  scaling: {idleTimeout: auto, autoIdleTimeout: {min: 2m, max: 30m}}
"""


def test_explain_and_preview_show_what_auto_learned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "md.yaml"
    spec.write_text(AUTO_MD)
    trace = tmp_path / "evenings.csv"
    trace.write_text("timestamp,duration\n" + EVENINGS)  # 20:00Z is 21:00 in Berlin
    at = "2026-11-27T21:01:00+01:00"  # a minute after Friday's first request
    explain = ["explain", "-f", str(spec), "--at", at, "--replicas", "1"]
    assert main([*explain, "--requests", str(trace)]) == 0
    out = capsys.readouterr().out
    assert "last active 2026-11-27T20:00Z; idle timeout 5m ends 2026-11-27T20:05Z (auto: " in out
    assert "at weekday 21h ended within 5m" in out
    # Saved from the cluster (kubectl get md -o yaml): the status is what it learned.
    rows, _ = history_from_requests([r for r in _arrivals(EVENINGS) if r < utc(at)], BERLIN)
    saved = tmp_path / "saved.yaml"
    status = {
        "requestGaps": {"lastRequestTime": "2026-11-27T20:00:00Z", "counts": rows.as_mapping()}
    }
    saved.write_text(AUTO_MD + "status: " + json.dumps(status) + "\n")
    assert main(["explain", "-f", str(saved), "--at", at, "--replicas", "1", "-o", "json"]) == 0
    reasons = json.loads(capsys.readouterr().out)["reasons"]
    assert reasons[0].startswith("last active 2026-11-27T20:00Z; idle timeout 5m ends")

    preview = ["preview", "-f", str(spec), "--from", "2026-11-28T00:00:00+01:00"]
    preview += ["--to", "2026-11-29T00:00:00+01:00", "--requests", str(trace), "-o", "json"]
    assert main(preview) == 0
    entries = json.loads(capsys.readouterr().out)
    idle = [entry for entry in entries if "idleTimeout" in entry]
    assert idle[0]["time"] == "2026-11-28T00:00:00+01:00"
    assert all(entry["reason"].startswith("auto: ") for entry in idle)
    timeouts = [entry["idleTimeout"] for entry in idle]
    assert all(a != b for a, b in itertools.pairwise(timeouts))  # one per change
    assert main(preview[:-2]) == 0
    text = capsys.readouterr().out
    assert "idleTimeout auto, after a request (learned from 24 requests in evenings.csv):" in text
    assert "2026-11-28T00:00:00+01:00  idle timeout" in text


def _arrivals(lines: str) -> list[datetime]:
    return [utc(line.split(",")[0]) for line in lines.splitlines()]
