"""The plan for failing models at fixed times: one Warning Event per new cause, the status a
user reads, and where the load comes from when Prometheus cannot answer. Pure."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from siesta.operator import render
from siesta.operator.demand import LeaseView
from siesta.operator.load import LoadReading
from siesta.operator.observe import ChildView, PodView, child_view
from siesta.operator.plan import (
    Model,
    Plan,
    Remembered,
    Views,
    gateway_in_flight,
    plan,
    server_metrics_urls,
)
from siesta.operator.settings import OperatorSettings
from siesta.policy import Memory
from support.specs import make_spec, utc

NOW = utc("2026-11-25T22:00:00")
OWNER = render.Owner(name="chat", namespace="ai", uid="uid-1")
SETTINGS = OperatorSettings()
SPEC: dict[str, Any] = {
    "model": {"uri": "file:///models/does-not-exist.gguf"},
    "scaling": {"idleTimeout": "20s", "scaleDownDelay": "1s"},
}
BODY: dict[str, Any] = {"metadata": {"generation": 1}, "spec": SPEC}
WORDS = "model file not found: /models/does-not-exist.gguf"


def children(replicas: int) -> list[ChildView]:
    found = []
    for manifest in render.children(OWNER, make_spec(**SPEC), SETTINGS):
        manifest["spec"]["replicas"] = replicas
        found.append(child_view(manifest))
    return found


def crashing_pod(reason: str = "CrashLoopBackOff") -> PodView:
    return PodView(
        name="chat-0", uid="pod-0", ordinal=0, created=NOW - timedelta(seconds=30),
        phase="Running", ready=False, ready_since=None, scheduled_at=NOW - timedelta(seconds=29),
        unschedulable=False, unschedulable_message="", failing=reason, terminating=False,
        last_words=WORDS, restarts=3, address="10.244.2.5",
    )  # fmt: skip


def step(pods: list[PodView], remembered: Remembered, at: timedelta = timedelta(0)) -> Plan:
    views = Views.build(pods, [], children(1))
    model = Model.read(BODY, OWNER, SETTINGS)
    return plan(model, views, remembered, None, SETTINGS, NOW + at)


def test_one_event_per_cause_not_per_restart() -> None:
    active = Remembered(memory=Memory(desired=1, last_active_time=NOW - timedelta(seconds=5)))
    first = step([crashing_pod()], active)
    assert [(e.reason, e.message, e.warning) for e in first.events] == [
        ("CrashLoopBackOff", f"chat-0: CrashLoopBackOff: {WORDS}", True)
    ]
    assert first.phase is not None
    assert first.phase.value == "Degraded"
    # The same words between a crash and its back-off (reason Error, then CrashLoopBackOff):
    # not new.
    again = step([crashing_pod("Error")], first.remember, timedelta(seconds=2))
    assert again.events == ()
    # Different words: a new cause, a new Event.
    other = replace(crashing_pod(), last_words="cannot download http://x: HTTP 404 Not Found")
    changed = step([other], again.remember, timedelta(seconds=4))
    assert [e.reason for e in changed.events] == ["CrashLoopBackOff"]


def test_the_failing_model_sleeps_after_its_idle_timeout_and_says_why() -> None:
    active = Remembered(memory=Memory(desired=1, last_active_time=NOW - timedelta(seconds=5)))
    failing = step([crashing_pod()], active)
    assert failing.scale is None  # within its idle timeout
    later = step([crashing_pod()], failing.remember, timedelta(seconds=16))
    assert later.scale is not None
    assert later.scale.desired == 0
    assert later.status is not None
    assert later.status["reason"] == f"asleep after failing: chat-0: CrashLoopBackOff: {WORDS}"
    assert [e.reason for e in later.events] == ["ScaledDown"]


def ready_pod(ordinal: int, address: str = "") -> PodView:
    return PodView(
        name=f"chat-{ordinal}", uid=f"pod-{ordinal}", ordinal=ordinal, created=NOW,
        phase="Running", ready=True, ready_since=NOW, scheduled_at=NOW, unschedulable=False,
        unschedulable_message="", failing=None, terminating=False, address=address,
    )  # fmt: skip


def test_where_the_fallback_load_comes_from() -> None:
    views = Views.build([ready_pod(0, "10.244.2.5"), ready_pod(1, "10.244.2.6")], [], [])
    assert server_metrics_urls(views) == [
        "http://10.244.2.5:8080/metrics",
        "http://10.244.2.6:8080/metrics",
    ]
    assert server_metrics_urls(Views.build([ready_pod(0)], [], [])) is None
    assert server_metrics_urls(Views()) == []  # nobody ready: no load, by definition
    fresh = LeaseView("chat-demand-1", NOW - timedelta(seconds=5), 30, 0, 2)
    stale = LeaseView("chat-demand-2", NOW - timedelta(minutes=5), 30, 0, 9)
    assert gateway_in_flight(Views.build([], [fresh, stale], []), NOW) == 2
    assert gateway_in_flight(Views.build([], [stale], []), NOW) is None


def test_a_fallback_reading_is_named_in_the_status() -> None:
    views = Views.build([ready_pod(0, "10.244.2.5")], [], children(1))
    model = Model.read(BODY, OWNER, OperatorSettings(prometheus_url="http://prometheus:9090"))
    reading = LoadReading(0.0, "Prometheus query failed: cannot connect", "servers")
    remembered = Remembered(memory=Memory(desired=1, last_active_time=NOW))
    result = plan(model, views, remembered, reading, SETTINGS, NOW)
    assert result.status is not None
    metrics = next(c for c in result.status["conditions"] if c["type"] == "MetricsAvailable")
    assert (metrics["reason"], metrics["message"]) == (
        "Fallback",
        "Prometheus query failed: cannot connect; load is 0 from the servers",
    )
    assert "load 0 (from the servers) at 3 per replica wants 0" in result.status["reasons"]
