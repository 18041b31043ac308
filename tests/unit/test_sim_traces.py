"""Trace files: parsing, the errors that name the line, and the seeded generator."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from siesta.cli import EXIT_USAGE, main
from siesta.sim.traces import TraceError, format_trace, generate_trace, parse_trace

BERLIN = ZoneInfo("Europe/Berlin")
EXAMPLE_MD = Path(__file__).parents[2] / "deploy" / "examples" / "t4-office-hours.yaml"


def test_header_columns_comments_span_and_defaults() -> None:
    text = (
        "# span: 2026-11-23T00:00:00+01:00 2026-11-24T00:00:00+01:00\n"
        "timestamp,tokens,duration,model\n"
        "2026-11-23T08:00:00Z,,7.5,a\n"
        "\n"
        "# a comment\n"
        "2026-11-23T09:00:00+01:00,200,,b\n"
        "1795424400,,,c\n"
    )
    trace = parse_trace(text, "t.csv")
    assert [r.arrival for r in trace.requests] == [
        datetime(2026, 11, 23, 8, 0, tzinfo=UTC),
        datetime(2026, 11, 23, 8, 0, tzinfo=UTC),
        datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
    ]
    assert [(r.duration_seconds, r.tokens) for r in trace.requests] == [
        (7.5, None),
        (None, 200),
        (None, None),
    ]
    assert [r.line for r in trace.requests] == [3, 6, 7]
    assert trace.start == datetime(2026, 11, 22, 23, 0, tzinfo=UTC)


def test_without_a_header_the_columns_are_timestamp_duration_tokens() -> None:
    trace = parse_trace("2026-11-23T08:00:00Z,3\n2026-11-23T08:00:01Z,,50\n")
    assert [(r.duration_seconds, r.tokens) for r in trace.requests] == [(3.0, None), (None, 50)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "timestamp\n2026-11-23T08:00:01Z\n2026-11-23T08:00:00Z\n",
            "t.csv:3: timestamp 2026-11-23T08:00:00Z is earlier than line 2's",
        ),
        ("timestamp\n2026-11-23 eight o'clock\n", "t.csv:2: bad timestamp"),
        (
            "timestamp\n2026-11-23T08:00:00\n",
            "t.csv:2: timestamp '2026-11-23T08:00:00' has no UTC offset",
        ),
        ("timestamp,duration\n2026-11-23T08:00:00Z,-1\n", "t.csv:2: negative duration '-1'"),
        (
            "timestamp,duration\n2026-11-23T08:00:00Z,soon\n",
            "t.csv:2: duration 'soon' is not a number",
        ),
        (
            "timestamp,tokens\n2026-11-23T08:00:00Z,2.5\n",
            "t.csv:2: tokens '2.5' is not a whole number",
        ),
        ("timestamp,duration\n,1\n", "t.csv:2: missing timestamp"),
        ("# only a comment\ntimestamp\n", "t.csv: no requests in the trace"),
        ("# span: 2026-11-24T00:00:00Z 2026-11-23T00:00:00Z\n", "t.csv:1: span end"),
    ],
)
def test_bad_traces_name_the_line(text: str, message: str) -> None:
    with pytest.raises(TraceError) as raised:
        parse_trace(text, "t.csv")
    assert str(raised.value).startswith(message)


def test_the_cli_reports_a_bad_trace_in_one_line_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,duration\n2026-11-23T08:00:00Z,1\n2026-11-23T07:00:00Z,1\n")
    assert main(["simulate", "-f", str(EXAMPLE_MD), "--trace", str(bad)]) == EXIT_USAGE
    error = capsys.readouterr().err
    assert error.startswith(
        f"siesta: error: {bad}:3: timestamp 2026-11-23T07:00:00Z is earlier than line 2's"
    )
    assert error.count("\n") == 1
    assert main(["trace", "check", str(bad)]) == EXIT_USAGE


def test_a_bad_world_setting_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "t.csv"
    good.write_text("2026-11-23T08:00:00Z,1\n")
    world = tmp_path / "world.yaml"
    world.write_text("modelLoadSeconds: -5\n")
    assert (
        main(["simulate", "-f", str(EXAMPLE_MD), "--trace", str(good), "--world", str(world)])
        == EXIT_USAGE
    )
    assert "modelLoadSeconds" in capsys.readouterr().err
    world.write_text("nodeProvisionSecondz: 5\n")
    assert (
        main(["simulate", "-f", str(EXAMPLE_MD), "--trace", str(good), "--world", str(world)])
        == EXIT_USAGE
    )
    assert "nodeProvisionSecondz" in capsys.readouterr().err


def test_generation_is_deterministic_for_a_seed_and_round_trips() -> None:
    start = datetime(2026, 11, 23, tzinfo=BERLIN)
    first = generate_trace("office", start, 2, "Europe/Berlin", seed=3)
    again = generate_trace("office", start, 2, "Europe/Berlin", seed=3)
    other = generate_trace("office", start, 2, "Europe/Berlin", seed=4)
    assert first == again
    assert first.requests != other.requests
    parsed = parse_trace(format_trace(first), "generated.csv")
    assert parsed.requests == first.requests
    assert (parsed.start, parsed.end) == (first.start, first.end)


def test_the_office_profile_follows_berlin_office_hours() -> None:
    trace = generate_trace(
        "office", datetime(2026, 11, 23, tzinfo=BERLIN), 7, "Europe/Berlin", seed=1
    )
    local = [r.arrival.astimezone(BERLIN) for r in trace.requests]
    weekday_office = [t for t in local if t.weekday() < 5 and 8 <= t.hour < 18]
    lunch = [t for t in weekday_office if t.hour == 12]
    morning = [t for t in weekday_office if t.hour == 10]
    assert len(weekday_office) > 0.85 * len(local)
    assert len(lunch) < 0.5 * len(morning)
    assert 0 < len([t for t in local if t.weekday() >= 5]) < 0.05 * len(local)


def test_generate_command_writes_a_trace_that_check_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "spiky.csv"
    arguments = [
        "trace",
        "generate",
        "--profile",
        "spiky",
        "--start",
        "2026-11-23",
        "--days",
        "1",
        "--seed",
        "5",
    ]
    assert main([*arguments, "-o", str(out)]) == 0
    assert main(["trace", "check", str(out)]) == 0
    assert "sorted, timestamps valid" in capsys.readouterr().out
    assert (
        main(["trace", "generate", "--start", "2026-11-23", "--timezone", "Mars/Olympus"])
        == EXIT_USAGE
    )
