"""The simulator's decisions are the operator's: `siesta explain` at the same instant agrees.

Each decision the simulator makes is replayed through the CLI's `explain` (in-process) with
the same inputs: replicas, starting, load, pending requests and last activity. explain has
no flag for a pending scale-down's start (`Memory.scale_down_since`), so decisions that
carry one are checked against decide directly instead.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siesta.api.loader import load_one
from siesta.cli import main
from siesta.policy import Memory, decide
from siesta.sim.compare import compare
from siesta.sim.engine import DecisionRecord
from siesta.sim.traces import Trace, TraceRequest, load_trace

EXAMPLES = Path(__file__).parents[2] / "deploy" / "examples"
OFFICE = EXAMPLES / "t4-office-hours.yaml"
ON_DEMAND = EXAMPLES / "a10g-on-demand.yaml"
MONDAY = datetime(2026, 11, 23, tzinfo=ZoneInfo("Europe/Berlin"))


def last_active(record: DecisionRecord) -> datetime | None:
    known = [t for t in (record.previous.last_active_time, record.signals.last_request_time) if t]
    return max(known) if known else None


def explain(path: Path, record: DecisionRecord) -> dict[str, Any]:
    arguments = [
        "explain",
        "-f",
        str(path),
        "--at",
        record.time.isoformat(),
        "--metric",
        repr(record.signals.load),
        "--pending",
        str(record.signals.pending_requests),
        "--replicas",
        str(record.observed.replicas),
        "--starting",
        str(record.observed.starting),
        "-o",
        "json",
    ]
    active = last_active(record)
    if active is not None:
        arguments += ["--last-active", active.isoformat()]
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(arguments) == 0
    answer: dict[str, Any] = json.loads(out.getvalue())
    return answer


def assert_explain_agrees(path: Path, record: DecisionRecord) -> None:
    answer = explain(path, record)
    decision = record.decision
    context = f"{record.trigger} decision at {record.time.isoformat()}"
    assert answer["desiredReplicas"] == decision.desired, context
    assert answer["reasons"] == decision.reasons, context
    expected = decision.next_change
    got = datetime.fromisoformat(answer["nextChange"]) if answer["nextChange"] else None
    assert got == expected, context


def decisions(path: Path, trace: Trace, policies: list[str] | None = None) -> list[DecisionRecord]:
    md = load_one(path)
    comparison = compare(md.spec, trace, policy_names=policies or ["siesta"])
    return [record for result in comparison.results for record in result.decisions]


def spread(records: list[DecisionRecord], most: int) -> list[DecisionRecord]:
    step = max(1, len(records) // most)
    return records[::step]


requests = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=24 * 3600 - 1),  # second of Monday (Berlin)
        st.floats(min_value=0.5, max_value=900.0, allow_nan=False),  # service time
        st.integers(min_value=1, max_value=9),  # how many arrive together
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests=requests, path=st.sampled_from([OFFICE, ON_DEMAND]))
def test_every_simulated_decision_is_what_explain_says(
    requests: list[tuple[int, float, int]], path: Path
) -> None:
    arrivals = [
        TraceRequest(MONDAY + timedelta(seconds=second), duration)
        for second, duration, count in sorted(requests)
        for _ in range(count)
    ]
    trace = Trace(tuple(arrivals), MONDAY, MONDAY + timedelta(days=1))
    records = decisions(path, trace)
    plain = [r for r in records if r.previous.scale_down_since is None]
    assert plain, "every run has decisions explain can reproduce"
    for record in spread(plain, 30):
        assert_explain_agrees(path, record)


def test_the_office_examples_monday_decides_exactly_as_explain_would() -> None:
    """Every decision of the example's Monday, all policies: decide with explain's inputs."""
    trace = load_trace(EXAMPLES / "traces" / "office-week-berlin.csv")
    monday = Trace(
        tuple(r for r in trace.requests if r.arrival < MONDAY + timedelta(days=1)),
        MONDAY,
        MONDAY + timedelta(days=1),
    )
    md = load_one(OFFICE)
    comparison = compare(md.spec, monday)
    checked = 0
    for policy, result in zip(comparison.policies, comparison.results, strict=True):
        for record in result.decisions:
            memory = Memory(
                last_active_time=last_active(record),
                scale_down_since=record.previous.scale_down_since,
            )
            # What explain does (signals without last_request_time, memory from flags).
            signals = type(record.signals)(
                load=record.signals.load, pending_requests=record.signals.pending_requests
            )
            again = decide(policy.spec, record.observed, signals, record.time, memory)
            assert (again.desired, again.reasons, again.next_change) == (
                record.decision.desired,
                record.decision.reasons,
                record.decision.next_change,
            ), f"{policy.name} at {record.time.isoformat()}"
            checked += 1
    assert checked > 100
    siesta = comparison.results[-1]
    for record in spread([r for r in siesta.decisions if r.previous.scale_down_since is None], 25):
        assert_explain_agrees(OFFICE, record)
