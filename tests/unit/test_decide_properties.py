"""Properties of the decision over generated inputs (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from siesta.api.models import ModelDeploymentSpec
from siesta.policy import CompiledSchedule, Memory, Observed, Signals, decide
from support.specs import make_spec

ZONES = ["UTC", "Europe/Berlin", "America/Vancouver", "Asia/Kolkata"]


@st.composite
def specs(draw: st.DrawFn) -> ModelDeploymentSpec:
    maximum = draw(st.integers(1, 5))
    minimum = draw(st.integers(0, maximum))
    windows = [
        {
            "name": f"w{index}",
            "start": f"{draw(st.integers(0, 59))} {draw(st.integers(0, 23))} * * {draw(st.sampled_from(['*', '1-5', '0,6']))}",
            "duration": f"{draw(st.integers(1, 30))}h",
            "minReplicas": draw(st.integers(0, maximum)),
        }
        for index in range(draw(st.integers(0, 3)))
    ]
    return make_spec(
        replicas={"min": minimum, "max": maximum},
        schedule={
            "timezone": draw(st.sampled_from(ZONES)),
            "prewarm": draw(st.sampled_from([None, "10m", "1h"])),
            "windows": windows,
        },
        scaling={
            "idleTimeout": draw(st.sampled_from(["1m", "15m", "2h"])),
            "scaleDownDelay": draw(st.sampled_from(["30s", "5m"])),
        },
    )


@st.composite
def observations(draw: st.DrawFn) -> Observed:
    replicas = draw(st.integers(0, 6))
    starting = draw(st.integers(0, replicas))
    return Observed(replicas=replicas, ready=replicas - starting, starting=starting)


loads = st.one_of(st.none(), st.floats(0, 50, allow_nan=False))
instants = st.datetimes(datetime(2026, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC))
offsets = st.one_of(st.none(), st.integers(0, 3 * 3600).map(lambda s: timedelta(seconds=s)))


@st.composite
def memories(draw: st.DrawFn, now: datetime) -> Memory:
    active_ago, down_ago = draw(offsets), draw(offsets)
    return Memory(
        last_active_time=now - active_ago if active_ago is not None else None,
        scale_down_since=now - down_ago if down_ago is not None else None,
    )


@st.composite
def situations(draw: st.DrawFn) -> tuple[ModelDeploymentSpec, Observed, Signals, datetime, Memory]:
    now = draw(instants)
    signals = Signals(load=draw(loads), pending_requests=draw(st.integers(0, 3)))
    return draw(specs()), draw(observations()), signals, now, draw(memories(now))


def schedule_floor(spec: ModelDeploymentSpec, now: datetime) -> int:
    return (
        CompiledSchedule(spec.schedule, spec.replicas.min, spec.replicas.max).floor_at(now).replicas
    )


@settings(max_examples=120, deadline=None)
@given(situations())
def test_never_above_max(
    situation: tuple[ModelDeploymentSpec, Observed, Signals, datetime, Memory],
) -> None:
    spec, observed, signals, now, memory = situation
    assert decide(spec, observed, signals, now, memory).desired <= spec.replicas.max


@settings(max_examples=120, deadline=None)
@given(situations())
def test_never_below_the_schedule_floor(
    situation: tuple[ModelDeploymentSpec, Observed, Signals, datetime, Memory],
) -> None:
    spec, observed, signals, now, memory = situation
    assert decide(spec, observed, signals, now, memory).desired >= schedule_floor(spec, now)


@settings(max_examples=120, deadline=None)
@given(situations())
def test_never_down_on_missing_metrics(
    situation: tuple[ModelDeploymentSpec, Observed, Signals, datetime, Memory],
) -> None:
    spec, observed, _, now, memory = situation
    decision = decide(spec, observed, Signals(load=None, load_error="down"), now, memory)
    assert decision.desired >= min(observed.replicas, spec.replicas.max)


@settings(max_examples=120, deadline=None)
@given(situations())
def test_never_down_while_a_replica_starts(
    situation: tuple[ModelDeploymentSpec, Observed, Signals, datetime, Memory],
) -> None:
    spec, observed, signals, now, memory = situation
    if observed.starting > 0:
        assert decide(spec, observed, signals, now, memory).desired >= min(
            observed.replicas, spec.replicas.max
        )


@settings(max_examples=120, deadline=None)
@given(situations())
def test_demand_always_wakes(
    situation: tuple[ModelDeploymentSpec, Observed, Signals, datetime, Memory],
) -> None:
    spec, observed, signals, now, memory = situation
    if signals.pending_requests > 0:
        assert decide(spec, observed, signals, now, memory).desired >= 1


@settings(max_examples=80, deadline=None)
@given(situations())
def test_idempotent_and_forward_looking(
    situation: tuple[ModelDeploymentSpec, Observed, Signals, datetime, Memory],
) -> None:
    spec, observed, signals, now, memory = situation
    first = decide(spec, observed, signals, now, memory)
    assert first == decide(spec, observed, signals, now, memory)
    assert first.next_change is None or first.next_change > now


@settings(max_examples=80, deadline=None)
@given(situations())
def test_nothing_changes_before_next_change(
    situation: tuple[ModelDeploymentSpec, Observed, Signals, datetime, Memory],
) -> None:
    """Sleeping until next_change is safe: with the same inputs the answer holds until then."""
    spec, observed, signals, now, memory = situation
    decision = decide(spec, observed, signals, now, memory)
    for _ in range(3):  # let the replicas settle on the answer at `now`
        settled = Observed(replicas=decision.desired, ready=decision.desired)
        decision = decide(spec, settled, signals, now, decision.memory)
    settled = Observed(replicas=decision.desired, ready=decision.desired)
    if decision.next_change is None or signals.load is None:
        return
    just_before = decision.next_change - timedelta(seconds=1)
    if just_before <= now:
        return
    later = decide(spec, settled, signals, just_before, decision.memory)
    assert later.desired == decision.desired
