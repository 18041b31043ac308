"""A model with a CPU bridge, one reconcile step at a time (siesta.operator.plan): the bridge's
objects, its replica writes, events and status, and that a model without one is unchanged."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from siesta.operator import bridge_render, render
from siesta.operator.demand import LeaseView
from siesta.operator.observe import ChildView, PodView, child_view
from siesta.operator.plan import Model, Plan, Remembered, Views, plan
from siesta.operator.settings import OperatorSettings
from siesta.policy import Memory
from support.specs import make_spec, utc

NOW = utc("2026-11-25T21:00:00")
OWNER = render.Owner(name="chat", namespace="ai", uid="uid-1")
SETTINGS = OperatorSettings()
BRIDGE = {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}


def body(bridge: dict[str, Any] | None = BRIDGE) -> dict[str, Any]:
    spec: dict[str, Any] = {"model": {"uri": "https://models.example.com/m.gguf"}}
    if bridge is not None:
        spec["bridge"] = bridge
    return {"metadata": {"generation": 1}, "spec": spec}


def children(gpu: int = 0, bridge: int = 0, **bridge_spec: Any) -> tuple[list[ChildView], ...]:
    """(the model's children, the bridge's), as the watch shows them matching the spec."""
    spec = make_spec(bridge=bridge_spec or BRIDGE)
    model = []
    for manifest in render.children(OWNER, spec, SETTINGS):
        manifest["spec"]["replicas"] = gpu
        model.append(child_view(manifest))
    bridged = []
    for manifest in bridge_render.children(OWNER, spec, SETTINGS):
        manifest["spec"]["replicas"] = bridge
        bridged.append(child_view(manifest))
    return model, bridged


def pod(name: str, ready: bool = True) -> PodView:
    return PodView(
        name=name, uid=f"uid-{name}", ordinal=0, created=NOW - timedelta(minutes=2),
        phase="Running", ready=ready, ready_since=NOW - timedelta(minutes=1) if ready else None,
        scheduled_at=NOW - timedelta(minutes=2), unschedulable=False, unschedulable_message="",
        failing=None, terminating=False,
    )  # fmt: skip


def lease(pending: int = 0, bridge_in_flight: int = 0) -> LeaseView:
    return LeaseView("chat-demand-1", NOW - timedelta(seconds=1), 30, pending, 0, bridge_in_flight)


def step(
    views: Views, remembered: Remembered | None = None, bridge: dict[str, Any] | None = BRIDGE
) -> Plan:
    model = Model.read(body(bridge), OWNER, SETTINGS)
    return plan(model, views, remembered or Remembered(), None, SETTINGS, NOW)


def test_a_new_model_with_a_bridge_creates_the_bridge_after_its_own_children() -> None:
    result = step(Views())
    assert [(w.action, w.kind, w.name) for w in result.children] == [
        ("create", "Service", "chat-pods"),
        ("create", "Service", "chat"),
        ("create", "StatefulSet", "chat"),
        ("create", "Service", "chat-bridge"),
        ("create", "StatefulSet", "chat-bridge"),
    ]


def test_held_requests_wake_both_with_events_and_status() -> None:
    model, bridged = children()
    result = step(Views.build([], [lease(pending=1)], model, bridge_children=bridged))
    assert result.scale is not None
    assert result.scale.desired == 1
    assert result.bridge_scale is not None
    assert (result.bridge_scale.current, result.bridge_scale.desired) == (0, 1)
    assert [e.reason for e in result.events] == ["ScaledUp", "BridgeWoke"]
    assert result.remember.bridge_replicas_written == 1
    assert result.status is not None
    assert result.status["bridge"]["state"] == "Waking"
    assert result.status["bridge"]["reason"] == "1 request waiting at the gateway"
    assert "scale the bridge StatefulSet to 1 (0 -> 1: 1 request waiting at the gateway)" in (
        result.writes()
    )


def test_a_lagging_watch_does_not_scale_the_bridge_twice() -> None:
    model, bridged = children(gpu=1)
    first = step(Views.build([], [lease(pending=1)], model, bridge_children=bridged))
    again = step(
        Views.build([], [lease(pending=1)], model, bridge_children=bridged), first.remember
    )
    assert again.bridge_scale is None


def test_a_ready_gpu_takes_over_from_an_idle_bridge() -> None:
    model, bridged = children(gpu=1, bridge=1)
    views = Views.build(
        [pod("chat-0")],
        [lease()],
        model,
        bridge_pods=[pod("chat-bridge-0")],
        bridge_children=bridged,
    )
    remembered = Remembered(memory=Memory(desired=1, last_active_time=NOW))
    result = step(views, remembered)
    assert result.scale is None
    assert result.bridge_scale is not None
    assert result.bridge_scale.desired == 0
    assert [e.reason for e in result.events] == ["BridgeHandedOver"]
    assert result.status is not None
    assert result.status["bridge"]["state"] == "Draining"
    busy = Views.build(
        [pod("chat-0")],
        [lease(bridge_in_flight=1)],
        model,
        bridge_pods=[pod("chat-bridge-0")],
        bridge_children=bridged,
    )
    assert step(busy, remembered).bridge_scale is None


def test_removing_spec_bridge_deletes_its_objects() -> None:
    model, bridged = children(bridge=1)
    result = step(Views.build([], [], model, bridge_children=bridged), bridge=None)
    assert [(w.action, w.kind, w.name) for w in result.children] == [
        ("delete", "Service", "chat-bridge"),
        ("delete", "StatefulSet", "chat-bridge"),
    ]
    assert result.bridge is None
    assert result.bridge_scale is None
    assert result.status is not None
    assert result.status["bridge"] is None


def test_a_model_without_a_bridge_plans_exactly_as_before() -> None:
    spec_only, _ = children()
    model = list(spec_only)
    result = step(Views.build([], [lease(pending=1)], model), bridge=None)
    assert result.children == ()
    assert (result.bridge, result.bridge_scale, result.bridge_observed) == (None, None, None)
    assert [e.reason for e in result.events] == ["ScaledUp"]
    assert result.status is not None
    assert result.status["bridge"] is None
    assert not any(c["type"] == "BridgeServing" for c in result.status["conditions"])
