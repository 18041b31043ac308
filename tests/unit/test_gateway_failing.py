"""The gateway learns from a ModelDeployment's status that its replicas fail (pure)."""

from __future__ import annotations

from typing import Any

from siesta.gateway.catalog import Catalog, failure_from_status, model_from_object

FAILING = {
    "type": "ModelServing",
    "status": "False",
    "reason": "CrashLoopBackOff",
    "message": "m-0: CrashLoopBackOff: model file not found: /models/x.gguf",
}


def md(status: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "m", "namespace": "ai", "uid": "u"},
        "spec": {"model": {"uri": "file:///models/x.gguf"}},
        "status": status,
    }


def test_failing_replicas_are_a_failure() -> None:
    status = {"replicas": 1, "conditions": [FAILING]}
    assert failure_from_status(status) == FAILING["message"]
    assert model_from_object(md(status)).failure == FAILING["message"]


def test_asleep_after_failing_is_woken_again() -> None:
    """At zero the gateway wakes the model as usual, so a model that recovers serves again."""
    assert failure_from_status({"replicas": 0, "conditions": [FAILING]}) == ""
    assert failure_from_status({"replicas": 1, "conditions": []}) == ""


def test_held_requests_are_woken_when_the_model_starts_failing() -> None:
    woken: list[tuple[str, str]] = []
    catalog = Catalog(on_endpoints=woken.append)
    catalog.apply_model("ADDED", md({"replicas": 1}))
    assert woken == []
    catalog.apply_model("MODIFIED", md({"replicas": 1, "conditions": [FAILING]}))
    assert woken == [("ai", "m")]
    catalog.apply_model("MODIFIED", md({"replicas": 1, "conditions": [FAILING]}))
    assert woken == [("ai", "m")]  # only when it starts failing


def test_asleep_after_failing_waits_out_its_backoff() -> None:
    status = {
        "replicas": 0,
        "conditions": [FAILING],
        "wakeBackoff": {"failures": 2, "nextWakeAllowed": "2026-01-01T12:02:00Z"},
    }
    model = model_from_object(md(status))
    assert model.failure == ""  # no replica fails right now ...
    assert model.last_failure == FAILING["message"]  # ... but this is why it sleeps
    noon = 1767268800.0  # 2026-01-01T12:00:00Z
    assert model.wake_backoff(noon) == 120.0
    assert model.wake_backoff(noon + 120) == 0.0
    assert model_from_object(md({"wakeBackoff": {"nextWakeAllowed": "soon"}})).wake_backoff(0) == 0
