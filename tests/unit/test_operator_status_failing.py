"""What `kubectl get md` says about failing models: Degraded with the container's words
while replicas fail, "asleep after failing" once at zero, and Pending for the right reason."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from siesta.api.models import ModelDeploymentStatus
from siesta.operator.status import Situation, build_status
from siesta.policy import Memory, Observed, Signals, decide
from support.specs import make_spec, utc

NOW = utc("2026-11-25T22:00:00")
SPEC = make_spec(replicas={"min": 0, "max": 1}, scaling={"idleTimeout": "20s"})
WORDS = "model file not found: /models/does-not-exist.gguf"
CRASHING = Observed(
    replicas=1,
    failing=1,
    failure_reason="CrashLoopBackOff",
    failure=f"m-0: CrashLoopBackOff: {WORDS}",
)


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


def test_crash_loop_is_degraded_with_the_servers_words() -> None:
    recent = Memory(last_active_time=NOW - timedelta(seconds=5))
    decision = decide(SPEC, CRASHING, Signals(load=0.0), NOW, recent)
    status = build_status(decision, Situation(observed=CRASHING, generation=1), None, NOW)
    assert status["phase"] == "Degraded"
    assert status["reason"] == f"failing: m-0: CrashLoopBackOff: {WORDS}"
    serving = condition(status, "ModelServing")
    assert (serving["status"], serving["reason"]) == ("False", "CrashLoopBackOff")
    assert WORDS in serving["message"]
    assert condition(status, "Ready")["reason"] == "ReplicasFailing"
    ModelDeploymentStatus.model_validate({k: v for k, v in status.items() if v is not None})


def test_asleep_after_failing_keeps_saying_why() -> None:
    crashed = build_status(
        decide(SPEC, CRASHING, Signals(load=0.0), NOW, Memory(last_active_time=NOW)),
        Situation(observed=CRASHING, generation=1),
        None,
        NOW,
    )
    later = NOW + timedelta(minutes=1)
    asleep = decide(SPEC, Observed(), Signals(load=0.0), later, Memory())
    status = build_status(asleep, Situation(observed=Observed(), generation=1), crashed, later)
    assert status["phase"] == "ScaledToZero"
    assert status["reason"] == f"asleep after failing: m-0: CrashLoopBackOff: {WORDS}"
    serving = condition(status, "ModelServing")
    assert serving["status"] == "False"
    assert serving["lastTransitionTime"] == "2026-11-25T22:00:00Z"  # since the failure
    # A new spec (the user's fix) starts afresh.
    fixed = build_status(asleep, Situation(observed=Observed(), generation=2), status, later)
    assert condition(fixed, "ModelServing")["status"] == "True"
    assert fixed["phase"] == "ScaledToZero"
    assert not fixed["reason"].startswith("asleep after failing")


def test_pending_on_an_unbound_volume_is_not_waiting_for_a_gpu() -> None:
    observed = Observed(replicas=1, starting=1, starting_since=NOW)
    message = "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims."
    situation = Situation(observed=observed, pending=(("VolumeNotBound", message),))
    decision = decide(SPEC, observed, Signals(load=0.0), NOW, Memory(last_active_time=NOW))
    status = build_status(decision, situation, None, NOW)
    assert status["phase"] == "Loading"
    assert status["reason"] == f"1 pod(s) pending (VolumeNotBound): {message}"
    ready = condition(status, "Ready")
    assert (ready["reason"], ready["message"]) == (
        "VolumeNotBound",
        f"0/1 replicas ready; {message}",
    )
