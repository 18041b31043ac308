"""One model's reconcile plan at fixed times: what gets written, remembered and when to look again.

These cover what otherwise needs a cluster: read-your-writes replicas, the error status
paths, wake times and the re-creation of a StatefulSet whose immutable fields changed.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from siesta.api.contract import CONFIG_HASH_ANNOTATION
from siesta.operator import render
from siesta.operator.demand import LeaseView
from siesta.operator.load import LoadReading
from siesta.operator.observe import ChildView, PodView, child_view
from siesta.operator.plan import (
    RECREATE_RETRY_SECONDS,
    LoadQuery,
    Model,
    Plan,
    Remembered,
    Views,
    load_query,
    plan,
    read_your_writes,
    status_only,
)
from siesta.operator.settings import OperatorSettings
from siesta.policy import ManualOverride, Memory
from support.specs import make_spec, utc

NOW = utc("2026-11-25T12:00:00")
OWNER = render.Owner(name="chat", namespace="ai", uid="uid-1")
SETTINGS = OperatorSettings()
PROMETHEUS = OperatorSettings(prometheus_url="http://prometheus:9090")
BODY: dict[str, Any] = {
    "metadata": {"generation": 3},
    "spec": {"model": {"uri": "https://models.example.com/m.gguf"}},
}


def model(body: dict[str, Any] = BODY, settings: OperatorSettings = SETTINGS) -> Model:
    return Model.read(body, OWNER, settings)


def children(replicas: int = 0, **spec: Any) -> list[ChildView]:
    """The children as the watch shows them when they match the spec."""
    found = []
    for manifest in render.children(OWNER, make_spec(**spec), SETTINGS):
        manifest["spec"]["replicas"] = replicas
        found.append(child_view(manifest))
    return found


def ready_pod(ordinal: int) -> PodView:
    return PodView(
        name=f"chat-{ordinal}", uid=f"pod-{ordinal}", ordinal=ordinal,
        created=NOW - timedelta(minutes=10), phase="Running", ready=True,
        ready_since=NOW - timedelta(minutes=8), scheduled_at=NOW - timedelta(minutes=9),
        unschedulable=False, unschedulable_message="", failing=None, terminating=False,
    )  # fmt: skip


def waiting_lease(pending: int = 1) -> LeaseView:
    return LeaseView("chat-demand-1", NOW - timedelta(seconds=1), 30, pending, 0)


def step(
    views: Views,
    remembered: Remembered | None = None,
    load: LoadReading | None = None,
    body: dict[str, Any] = BODY,
) -> Plan:
    return plan(model(body), views, remembered or Remembered(), load, SETTINGS, NOW)


def test_a_new_model_creates_its_children_in_order_with_the_decided_replicas() -> None:
    result = step(Views(), Remembered(memory=Memory(desired=2)))
    assert [(w.action, w.kind, w.name, w.replicas) for w in result.children] == [
        ("create", "Service", "chat-pods", 2),
        ("create", "Service", "chat", 2),
        ("create", "StatefulSet", "chat", 2),
    ]


def test_children_that_match_are_not_written() -> None:
    assert step(Views.build([], [], children())).children == ()


def test_a_changed_spec_updates_the_statefulset_in_place() -> None:
    views = Views.build([], [], children(server={"contextSize": 8192}))
    assert [(w.action, w.kind) for w in step(views).children] == [("update", "StatefulSet")]


def test_an_immutable_change_plans_a_recreate_and_nothing_else() -> None:
    views = Views.build([], [], children(cache={"size": "50Gi"}))
    result = step(views, Remembered(memory=Memory(desired=1)))
    assert [(w.action, w.kind) for w in result.children] == [("recreate", "StatefulSet")]
    assert (result.scale, result.status, result.next_look) == (None, None, RECREATE_RETRY_SECONDS)


def test_a_created_statefulset_counts_as_written_until_the_watch_shows_it() -> None:
    result = step(Views(), Remembered(memory=Memory(desired=1), replicas_written=None))
    assert result.remember.replicas_written == 1


def test_read_your_writes_trusts_the_write_while_the_watch_lags() -> None:
    stale = ChildView("StatefulSet", "chat", "h", replicas=0)
    assert read_your_writes(stale, 2) == (2, 2)


def test_read_your_writes_forgets_the_write_once_the_watch_shows_it() -> None:
    caught_up = ChildView("StatefulSet", "chat", "h", replicas=2)
    assert read_your_writes(caught_up, 2) == (2, None)


def test_a_lagging_watch_does_not_scale_again() -> None:
    views = Views.build([], [waiting_lease()], children(replicas=0))
    result = step(views, Remembered(memory=Memory(desired=1), replicas_written=1))
    assert result.scale is None


def test_held_requests_scale_up_with_an_event_and_remember_the_write() -> None:
    result = step(Views.build([], [waiting_lease(2)], children()))
    assert result.scale is not None
    assert (result.scale.current, result.scale.desired, result.scale.rule) == (0, 1, "demand")
    assert [e.reason for e in result.events] == ["ScaledUp"]
    assert result.remember.replicas_written == 1
    assert result.status is not None
    assert result.status["lastScaleTime"] == "2026-11-25T12:00:00Z"


def test_an_unchanged_status_is_not_written_again() -> None:
    views = Views.build([], [], children())
    first = step(views)
    assert step(views, first.remember).status is None


def test_an_invalid_spec_says_so_and_writes_nothing_else() -> None:
    body = {"metadata": {"generation": 4}, "spec": {"model": {}}}
    result = step(Views.build([], [], children()), body=body)
    assert result.status is not None
    assert (result.children, result.scale, result.next_look) == ((), None, None)
    assert result.status["phase"] == "Degraded"
    assert result.status["observedGeneration"] == 4
    spec_valid = next(c for c in result.status["conditions"] if c["type"] == "SpecValid")
    assert spec_valid["status"] == "False"


def test_a_refused_child_write_is_reported_in_the_status() -> None:
    result = status_only(
        model(), Views(), Remembered(), NOW, children_error="403 statefulsets is forbidden"
    )
    assert result.status is not None
    assert result.status["phase"] == "Degraded"
    condition = next(c for c in result.status["conditions"] if c["type"] == "ChildrenReady")
    assert (condition["status"], condition["message"]) == ("False", "403 statefulsets is forbidden")


def test_an_expired_manual_override_is_cleared() -> None:
    body = {**BODY, "spec": {**BODY["spec"], "manualReplicas": 2}}
    override = ManualOverride(2, NOW - timedelta(hours=2), NOW - timedelta(hours=1))
    expired = Memory(desired=2, manual_override=override)
    result = step(Views.build([], [], children(replicas=2)), Remembered(memory=expired), body=body)
    assert result.clear_manual_replicas


def test_a_serving_model_looks_again_when_its_idle_timeout_ends() -> None:
    views = Views.build([ready_pod(0)], [], children(replicas=1))
    active = Memory(desired=1, last_active_time=NOW - timedelta(minutes=5))
    assert step(views, Remembered(memory=active)).next_look == 10 * 60


def test_with_prometheus_a_serving_model_looks_again_on_the_metric_interval() -> None:
    views = Views.build([ready_pod(0)], [], children(replicas=1))
    active = Memory(desired=1, last_active_time=NOW - timedelta(minutes=5))
    result = plan(model(), views, Remembered(memory=active), LoadReading(1.0), PROMETHEUS, NOW)
    assert result.next_look == PROMETHEUS.metric_interval.total_seconds()


def test_a_held_request_is_looked_at_again_when_its_lease_expires() -> None:
    # Replicas are starting, so the decision itself has nothing due before the Lease expires.
    views = Views.build([], [waiting_lease()], children(replicas=1))
    result = step(views, Remembered(memory=Memory(desired=1)))
    assert result.next_look == 29.0


def test_a_model_at_zero_without_schedule_waits_for_events() -> None:
    assert step(Views.build([], [], children())).next_look is None


def test_the_load_query_counts_ready_replicas_of_the_statefulset() -> None:
    views = Views.build([ready_pod(0)], [], children(replicas=1))
    query = load_query(model(settings=PROMETHEUS), views, Remembered(), PROMETHEUS)
    assert query is not None
    assert (query.url, query.ready) == ("http://prometheus:9090", 1)


def test_without_prometheus_there_is_no_load_query() -> None:
    assert load_query(model(), Views(), Remembered(), SETTINGS) is None


def test_load_queries_with_any_ready_replica_get_the_same_answer() -> None:
    one, two = LoadQuery("u", "q", 1), LoadQuery("u", "q", 2)
    assert one.same_answer(two)
    assert not one.same_answer(LoadQuery("u", "q", 0))


def test_new_cold_starts_are_measured_once() -> None:
    views = Views.build([ready_pod(0)], [], children(replicas=1))
    first = step(views, Remembered(memory=Memory(desired=1), seen_ready=frozenset()))
    again = step(views, first.remember)
    assert dict(first.cold_starts) == {"pending": 60.0, "loading": 60.0, "total": 120.0}
    assert again.cold_starts == ()


def test_writes_lists_every_call_in_order() -> None:
    result = step(Views.build([], [waiting_lease()], []))
    assert result.writes() == [
        "create Service chat-pods",
        "create Service chat",
        "create StatefulSet chat",
        "scale StatefulSet to 1 (0 -> 1: 1 request(s) waiting at the gateway; load 0 at 3 per replica wants 0)",
        "event ScaledUp: 0 -> 1: 1 request(s) waiting at the gateway; load 0 at 3 per replica wants 0",
        "status: phase Loading, reason '1 request(s) waiting at the gateway'",
    ]


def test_the_hash_annotation_is_what_children_are_compared_by() -> None:
    view = children()[0]
    manifest = render.children(OWNER, make_spec(), SETTINGS)[0]
    assert view.config_hash == manifest["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]


def test_a_failed_status_write_is_written_again_without_scaling_or_announcing_again() -> None:
    views = Views.build([], [waiting_lease(2)], children())
    first = step(views)
    assert first.scale is not None
    # The scale and its event happened, the status write failed (ModelLoop.step remembers
    # that); the watch still shows 0 replicas.
    unwritten = replace(first.remember, status_unwritten=True)
    retry = step(views, unwritten)
    assert retry.scale is None
    assert retry.events == ()
    assert retry.status is not None
    assert retry.status["lastScaleTime"] == "2026-11-25T12:00:00Z"
    assert retry.remember.status_unwritten is False
