"""The status patch: phase, conditions, memory round trip, and writing only on change."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from siesta.api.contract import MODEL_LABEL
from siesta.api.crd import render_crd
from siesta.api.models import ColdStart, ModelDeploymentStatus, Phase
from siesta.operator.plan import effective_spec
from siesta.operator.settings import OperatorSettings, SettingsError, settings_from
from siesta.operator.status import (
    Situation,
    build_status,
    memory_from_status,
    phase,
    status_changed,
)
from siesta.policy import (
    Condition,
    Decision,
    ManualOverride,
    Memory,
    Observed,
    Signals,
    Transition,
    decide,
)
from support.specs import make_spec, utc

NOW = utc("2026-11-25T12:00:00")
CRDS = Path(__file__).resolve().parents[2] / "crds"


def decision(desired: int = 1, *, schedule_ok: bool = True, metrics_ok: bool = True) -> Decision:
    return Decision(
        desired=desired,
        reasons=[
            "inside window office-hours: at least 1 replica",
            "load 0 at 3 per replica wants 0",
        ],
        next_change=NOW + timedelta(hours=5),
        conditions=[
            Condition(
                "ScheduleValid", schedule_ok, "Valid" if schedule_ok else "InvalidSchedule", "x"
            ),
            Condition("MetricsAvailable", metrics_ok, "QuerySucceeded", "load is 0"),
        ],
        memory=Memory(
            desired=desired,
            last_active_time=NOW - timedelta(minutes=3),
            scale_down_since=None,
            manual_override=ManualOverride(2, NOW, NOW + timedelta(hours=1)),
        ),
    )


@pytest.mark.parametrize(
    ("observed", "desired", "extra", "expected"),
    [
        (Observed(0, 0, 0, 0), 0, {}, Phase.SCALED_TO_ZERO),
        (Observed(1, 1, 0, 0), 1, {}, Phase.READY),
        (Observed(1, 0, 1, 1), 1, {}, Phase.WAITING_FOR_GPU),
        (Observed(1, 0, 1, 0), 1, {}, Phase.LOADING),
        (Observed(1, 1, 0, 0), 0, {}, Phase.SCALING),
        (Observed(1, 1, 0, 0), 1, {"paused": True}, Phase.PAUSED),
    ],
)
def test_phase(observed: Observed, desired: int, extra: dict[str, object], expected: Phase) -> None:
    situation = Situation(observed=observed, **extra)  # type: ignore[arg-type]
    assert phase(decision(desired), situation) is expected


def test_invalid_schedule_is_degraded() -> None:
    assert phase(decision(schedule_ok=False), Situation(observed=Observed(0, 0))) is Phase.DEGRADED


def test_status_fields_and_schema() -> None:
    situation = Situation(
        observed=Observed(1, 1, 0, 0),
        cold_start=ColdStart(last_seconds=30.0, pending_seconds=10.0, loading_seconds=20.0),
        transition=Transition(NOW + timedelta(hours=5), 0, "outside schedule windows"),
        generation=3,
        selector=f"{MODEL_LABEL}=m",
        last_scale_time=NOW,
    )
    status = build_status(decision(), situation, None, NOW)
    assert status["phase"] == "Ready"
    assert status["desiredReplicas"] == 1
    assert (
        status["reason"] == status["reasons"][0] == "inside window office-hours: at least 1 replica"
    )
    assert status["nextTransition"] == {
        "time": "2026-11-25T17:00:00Z",
        "replicas": 0,
        "reason": "outside schedule windows",
    }
    assert status["lastActiveTime"] == "2026-11-25T11:57:00Z"
    assert status["manualOverride"] == {
        "replicas": 2,
        "since": "2026-11-25T12:00:00Z",
        "until": "2026-11-25T13:00:00Z",
    }
    assert status["coldStart"] == {
        "lastSeconds": 30.0,
        "pendingSeconds": 10.0,
        "loadingSeconds": 20.0,
        "startedAt": None,  # sent as null: the merge patch removes a finished start
    }
    assert status["observedGeneration"] == 3
    assert status["lastScaleTime"] == "2026-11-25T12:00:00Z"
    types = [c["type"] for c in status["conditions"]]
    assert types == ["SpecValid", "Ready", "ScheduleValid", "MetricsAvailable"]
    # What the operator writes is what the CRD's status schema describes.
    ModelDeploymentStatus.model_validate({k: v for k, v in status.items() if v is not None})


def test_memory_round_trips_through_status() -> None:
    made = decision()
    status = build_status(made, Situation(observed=Observed(1, 1)), None, NOW)
    assert memory_from_status(status) == made.memory
    assert memory_from_status(None) == Memory()


def test_condition_transition_time_is_kept_while_unchanged() -> None:
    first = build_status(decision(), Situation(observed=Observed(1, 1)), None, NOW)
    later = NOW + timedelta(minutes=10)
    same = build_status(decision(), Situation(observed=Observed(1, 1)), first, later)
    assert same["conditions"] == first["conditions"]
    assert not status_changed(first, same)
    flipped = build_status(
        decision(metrics_ok=False), Situation(observed=Observed(1, 1)), first, later
    )
    metrics = next(c for c in flipped["conditions"] if c["type"] == "MetricsAvailable")
    ready = next(c for c in flipped["conditions"] if c["type"] == "Ready")
    assert metrics["lastTransitionTime"] == "2026-11-25T12:10:00Z"
    assert ready["lastTransitionTime"] == "2026-11-25T12:00:00Z"
    assert status_changed(first, flipped)


def test_none_and_absent_are_the_same() -> None:
    status = build_status(decision(), Situation(observed=Observed(1, 1)), None, NOW)
    stored = {k: v for k, v in status.items() if v is not None}
    assert not status_changed(stored, status)


def test_metrics_not_configured_is_not_a_failure() -> None:
    made = decide(make_spec(), Observed(), Signals(load=0.0), NOW)
    status = build_status(made, Situation(observed=Observed(), metrics_configured=False), None, NOW)
    metrics = next(c for c in status["conditions"] if c["type"] == "MetricsAvailable")
    assert (metrics["status"], metrics["reason"]) == ("True", "NotConfigured")


def test_invalid_spec_status() -> None:
    status = build_status(
        None,
        Situation(observed=Observed(), spec_error="spec.schedule: bad"),
        {"desiredReplicas": 2},
        NOW,
    )
    assert status["phase"] == "Degraded"
    assert status["reason"] == "invalid spec: spec.schedule: bad"
    assert status["desiredReplicas"] == 2
    spec_valid = status["conditions"][0]
    assert (spec_valid["type"], spec_valid["status"], spec_valid["message"]) == (
        "SpecValid",
        "False",
        "spec.schedule: bad",
    )


def test_operator_default_idle_timeout_applies_when_unset() -> None:
    settings = OperatorSettings(default_idle_timeout="7m")
    assert effective_spec(make_spec(), settings).scaling.idle_timeout == "7m"
    assert (
        effective_spec(make_spec(scaling={"idleTimeout": "5s"}), settings).scaling.idle_timeout
        == "5s"
    )


def test_settings_from_environment() -> None:
    settings = OperatorSettings.from_env(
        {
            "SIESTA_PROMETHEUS_URL": "http://prom:9090/",
            "SIESTA_METRIC_INTERVAL": "10s",
            "SIESTA_NAMESPACES": "ai, ml",
            "SIESTA_CLOCK_OFFSET_SECONDS": "-30",
            "SIESTA_PEERING": "standalone",
        }
    )
    assert settings.prometheus_url == "http://prom:9090"
    assert settings.metric_interval == timedelta(seconds=10)
    assert settings.namespaces == ("ai", "ml")
    assert settings.clock_offset == timedelta(seconds=-30)
    assert settings.peering == ""
    assert OperatorSettings.from_env({}).metrics_port == 8081
    with pytest.raises(SettingsError, match="SIESTA_METRIC_INTERVAL"):
        OperatorSettings.from_env({"SIESTA_METRIC_INTERVAL": "soon"})


def test_committed_crds_match_the_models() -> None:
    """crds/ is generated by `siesta crds`; regenerate it when the models change."""
    committed = (CRDS / "siesta.dev_modeldeployments.yaml").read_text()
    assert committed == render_crd(), (
        "crds/ is stale: run `make generate` (siesta crds --output-dir crds)"
    )


def test_operator_flags_win_over_the_environment() -> None:
    environ = {"SIESTA_PROMETHEUS_URL": "http://env:9090", "SIESTA_PEERING": "standalone"}
    flags = {"SIESTA_PROMETHEUS_URL": "http://flag:9090", "SIESTA_PEERING": None}
    settings = settings_from(flags, environ)
    assert (settings.prometheus_url, settings.peering) == ("http://flag:9090", "")
