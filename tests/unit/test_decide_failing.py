"""Fail toward GPU off: failing and overdue replicas never hold a model up (rule 5), and a
metric outage falls back to other sources (rule 6). Fixed instants, no I/O."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from siesta.policy import Memory, Observed, Signals, decide, forecast
from support.specs import make_spec, utc

NIGHT = utc("2026-11-25T22:00")
MINUTE = timedelta(minutes=1)
SPEC: dict[str, Any] = {
    "replicas": {"min": 0, "max": 2},
    "scaling": {"idleTimeout": "20s", "scaleDownDelay": "10s", "startupTimeout": "30m"},
}
QUIET = Signals(load=0.0)
CRASHING = Observed(
    replicas=1,
    failing=1,
    failure_reason="CrashLoopBackOff",
    failure="m-0: CrashLoopBackOff: model file not found: /models/does-not-exist.gguf",
)


def conditions(decision: Any) -> dict[str, Any]:
    return {c.type: c for c in decision.conditions}


def test_a_crash_looping_replica_does_not_hold_the_model_up() -> None:
    spec = make_spec(**SPEC)
    active = NIGHT - MINUTE
    decision = decide(spec, CRASHING, QUIET, NIGHT, Memory(last_active_time=active))
    assert decision.desired == 0
    assert decision.reasons[0] == "scaling down 1 -> 0"
    assert decision.reasons[1].startswith("1 replica failing: m-0: CrashLoopBackOff: model file")
    serving = conditions(decision)["ModelServing"]
    assert (serving.status, serving.reason) == (False, "CrashLoopBackOff")
    assert "model file not found" in serving.message


def test_a_failing_replica_still_gets_its_idle_timeout() -> None:
    spec = make_spec(**SPEC)
    active = NIGHT - timedelta(seconds=5)
    decision = decide(spec, CRASHING, QUIET, NIGHT, Memory(last_active_time=active))
    assert decision.desired == 1
    assert decision.rule == "idle-timeout"
    assert decision.next_change == active + timedelta(seconds=20)
    assert forecast(spec, decision, QUIET) is not None


def test_a_failing_replica_at_the_idle_timeout_goes_at_once() -> None:
    """The wait for the step to zero counts from the last activity, like any idle model."""
    spec = make_spec(**SPEC)
    active = NIGHT - timedelta(seconds=20)
    decision = decide(spec, CRASHING, QUIET, NIGHT, Memory(last_active_time=active))
    assert decision.desired == 0


def test_a_loading_replica_holds_within_its_startup_timeout() -> None:
    spec = make_spec(**SPEC)
    observed = Observed(replicas=1, starting=1, starting_since=NIGHT - 29 * MINUTE)
    decision = decide(spec, observed, QUIET, NIGHT, Memory(last_active_time=NIGHT - 60 * MINUTE))
    assert decision.desired == 1
    assert decision.rule == "cold-start"
    assert decision.next_change == NIGHT + MINUTE  # when the startup timeout ends
    assert conditions(decision)["ModelServing"].status is True


def test_a_replica_past_its_startup_timeout_counts_as_failing() -> None:
    spec = make_spec(**SPEC)
    observed = Observed(replicas=1, starting=1, starting_since=NIGHT - 30 * MINUTE)
    decision = decide(spec, observed, QUIET, NIGHT, Memory(last_active_time=NIGHT - 60 * MINUTE))
    assert decision.desired == 0
    assert decision.reasons[1] == "1 replica not ready within startupTimeout 30m"
    serving = conditions(decision)["ModelServing"]
    assert (serving.status, serving.reason) == (False, "StartupTimeout")
    assert "starting since 2026-11-25T21:30Z" in serving.message


def test_the_startup_timeout_is_configurable() -> None:
    spec = make_spec(**{**SPEC, "scaling": {**SPEC["scaling"], "startupTimeout": "2h"}})
    observed = Observed(replicas=1, starting=1, starting_since=NIGHT - 90 * MINUTE)
    decision = decide(spec, observed, QUIET, NIGHT, Memory(last_active_time=NIGHT - 60 * MINUTE))
    assert decision.desired == 1


def test_a_replica_whose_start_is_unknown_still_holds() -> None:
    """No pod and no scale time known: rule 5 holds (observe supplies the time if it can)."""
    spec = make_spec(**SPEC)
    observed = Observed(replicas=1, starting=1)
    decision = decide(spec, observed, QUIET, NIGHT, Memory(last_active_time=NIGHT - 60 * MINUTE))
    assert decision.desired == 1


def test_demand_still_wakes_a_failing_model() -> None:
    """Held requests ask for a replica; the gateway answers them once the model fails."""
    spec = make_spec(**SPEC)
    decision = decide(spec, CRASHING, Signals(load=0.0, pending_requests=1), NIGHT)
    assert decision.desired == 1


def test_fallback_load_is_named_in_the_condition_and_reasons() -> None:
    spec = make_spec(**SPEC)
    signals = Signals(
        load=2.0,
        load_error="Prometheus query failed: cannot connect to Prometheus",
        load_source="servers",
    )
    decision = decide(spec, Observed(1, 1), signals, NIGHT, Memory(last_active_time=NIGHT))
    metrics = conditions(decision)["MetricsAvailable"]
    assert (metrics.status, metrics.reason) == (True, "Fallback")
    assert metrics.message == (
        "Prometheus query failed: cannot connect to Prometheus; load is 2 from the servers"
    )
    assert "load 2 (from the servers) at 3 per replica wants 1" in decision.reasons


def test_fallback_load_of_zero_lets_an_idle_model_sleep() -> None:
    spec = make_spec(**SPEC)
    signals = Signals(load=0.0, load_error="Prometheus down", load_source="servers")
    decision = decide(spec, Observed(1, 1), signals, NIGHT, Memory(last_active_time=NIGHT - MINUTE))
    assert decision.desired == 0


def test_no_source_at_all_still_holds_a_serving_model() -> None:
    spec = make_spec(**SPEC)
    signals = Signals(load=None, load_error="Prometheus down; model servers' /metrics: refused")
    decision = decide(spec, Observed(1, 1), signals, NIGHT, Memory(last_active_time=NIGHT - MINUTE))
    assert decision.desired == 1
    assert decision.rule == "metrics-unavailable"
