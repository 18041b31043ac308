"""Taking a new template without restarting a serving model (siesta.operator.rollout), and
how the plan and the status carry it. Pure: fixed pods, Leases, readings and times."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from siesta.operator import render
from siesta.operator.demand import Demand, LeaseView
from siesta.operator.load import LoadReading
from siesta.operator.observe import ChildView, PodView, child_view, pod_view
from siesta.operator.plan import Model, Remembered, Views, plan, rollout_evidence_urls
from siesta.operator.rollout import Rollout, idleness, rollout
from siesta.operator.settings import OperatorSettings
from support.specs import make_spec, utc

NOW = utc("2026-11-25T12:00:00")
OWNER = render.Owner(name="chat", namespace="ai", uid="uid-1")
SETTINGS = OperatorSettings()
OLD, NEW = "chat-6b9f", "chat-7c1d"
IDLE_GATEWAY = Demand(reporting=True)
BODY: dict[str, Any] = {
    "metadata": {"generation": 3},
    "spec": {"model": {"uri": "https://models.example.com/m.gguf"}, "replicas": {"min": 1}},
}


def statefulset(revision: str = NEW, *, known: bool = True) -> ChildView:
    return ChildView("StatefulSet", "chat", "hash", 1, update_revision=revision,
                     revisions_known=known)  # fmt: skip


def pod(ordinal: int, revision: str = OLD, **changes: Any) -> PodView:
    ready = PodView(
        name=f"chat-{ordinal}", uid=f"pod-{ordinal}", ordinal=ordinal,
        created=NOW - timedelta(minutes=10), phase="Running", ready=True,
        ready_since=NOW - timedelta(minutes=8), scheduled_at=NOW - timedelta(minutes=9),
        unschedulable=False, unschedulable_message="", failing=None, terminating=False,
        address=f"10.0.0.{ordinal + 1}", revision=revision,
    )  # fmt: skip
    return replace(ready, **changes)


def loading(ordinal: int, revision: str = OLD) -> PodView:
    return pod(ordinal, revision, ready=False, ready_since=None)


def lease(pending: int = 0, in_flight: int = 0) -> LeaseView:
    return LeaseView("chat-demand-1", NOW - timedelta(seconds=1), 30, pending, in_flight)


# --- idleness ------------------------------------------------------------------------------


def test_idle_needs_a_source_that_says_so() -> None:
    assert idleness(Demand(), None)[0] is None
    assert idleness(Demand(), LoadReading(None, "prometheus down"))[0] is None
    assert idleness(IDLE_GATEWAY, None) == (True, "no request held or in flight")
    assert idleness(Demand(), LoadReading(0.0))[0] is True


def test_any_source_that_says_busy_wins() -> None:
    assert idleness(Demand(in_flight_requests=2, reporting=True), LoadReading(0.0)) == (
        False,
        "0 request(s) held and 2 in flight at the gateway",
    )
    assert idleness(IDLE_GATEWAY, LoadReading(1.0, source="servers")) == (
        False,
        "load is 1 (servers)",
    )


# --- which pods are replaced -----------------------------------------------------------------


def test_unknown_revisions_plan_nothing() -> None:
    assert rollout(None, [pod(0)], 1, IDLE_GATEWAY, None) is None
    assert rollout(statefulset(known=False), [pod(0)], 1, IDLE_GATEWAY, None) is None
    assert rollout(statefulset(""), [pod(0)], 1, IDLE_GATEWAY, None) is None


def test_current_pods_are_up_to_date() -> None:
    result = rollout(statefulset(), [pod(0, NEW)], 1, IDLE_GATEWAY, None)
    assert result == Rollout()
    assert not result.pending


def test_a_serving_pod_with_requests_in_flight_is_left_alone() -> None:
    busy = Demand(in_flight_requests=1, reporting=True)
    result = rollout(statefulset(), [pod(0)], 1, busy, None)
    assert result is not None
    assert result.outdated == ("chat-0",)
    assert result.replace == ()
    assert result.waiting == "replaced when idle; 0 request(s) held and 1 in flight at the gateway"


def test_held_requests_also_keep_the_pod() -> None:
    held = Demand(pending_requests=3, reporting=True)
    result = rollout(statefulset(), [pod(0)], 1, held, LoadReading(0.0))
    assert result is not None
    assert result.replace == ()


def test_not_knowing_is_not_idle() -> None:
    result = rollout(statefulset(), [pod(0)], 1, Demand(), LoadReading(None, "no data"))
    assert result is not None
    assert result.replace == ()
    assert "cannot tell" in result.waiting


def test_an_idle_pod_is_replaced_by_uid() -> None:
    result = rollout(statefulset(), [pod(0)], 1, IDLE_GATEWAY, None)
    assert result is not None
    assert [(r.pod, r.uid) for r in result.replace] == [("chat-0", "pod-0")]
    assert result.replace[0].why == "idle: no request held or in flight"
    assert result.message == "chat-0 on an older template: replacing"


def test_idle_pods_are_replaced_one_at_a_time() -> None:
    pods = [pod(0), pod(1), pod(2)]
    result = rollout(statefulset(), pods, 3, IDLE_GATEWAY, LoadReading(0.0))
    assert result is not None
    assert [r.pod for r in result.replace] == ["chat-0"]
    assert result.outdated == ("chat-0", "chat-1", "chat-2")
    assert result.waiting == "one replacement at a time"


def test_the_next_waits_until_the_replacement_is_ready() -> None:
    # chat-0 was replaced and is loading on the new template: chat-1 keeps serving.
    result = rollout(statefulset(), [loading(0, NEW), pod(1)], 2, IDLE_GATEWAY, None)
    assert result is not None
    assert result.replace == ()
    assert result.waiting.startswith("waiting until every other pod is ready")
    terminating = [pod(0, terminating=True), pod(1)]
    result = rollout(statefulset(), terminating, 2, IDLE_GATEWAY, None)
    assert result is not None
    assert result.replace == ()


def test_a_broken_new_template_stops_the_rollout() -> None:
    crashing = pod(0, NEW, ready=False, failing="CrashLoopBackOff")
    result = rollout(statefulset(), [crashing, pod(1)], 2, IDLE_GATEWAY, None)
    assert result is not None
    assert result.replace == ()


def test_a_starting_pod_is_making_progress() -> None:
    result = rollout(statefulset(), [loading(0)], 1, IDLE_GATEWAY, None)
    assert result is not None
    assert result.replace == ()
    assert result.waiting == "starting; replaced once it is ready and idle"


def test_a_pod_that_serves_nothing_is_replaced_at_once_even_when_busy() -> None:
    crashing = pod(0, ready=False, failing="CrashLoopBackOff")
    unscheduled = pod(1, ready=False, phase="Pending", scheduled_at=None, unschedulable=True)
    busy = Demand(pending_requests=5, reporting=True)
    result = rollout(statefulset(), [crashing, unscheduled], 2, busy, None)
    assert result is not None
    assert [(r.pod, r.why) for r in result.replace] == [
        ("chat-0", "not serving (CrashLoopBackOff)"),
        ("chat-1", "not on a node yet"),
    ]


def test_pods_beyond_the_replica_count_are_not_replaced() -> None:
    # Scaling down to one: chat-1 goes away anyway.
    result = rollout(statefulset(), [pod(0, NEW), pod(1)], 1, IDLE_GATEWAY, None)
    assert result == Rollout()


def test_at_zero_there_is_nothing_to_replace() -> None:
    assert rollout(statefulset(), [pod(0)], 0, IDLE_GATEWAY, None) == Rollout()


# --- the views carry the revisions -------------------------------------------------------------


def test_pod_and_statefulset_views_read_the_revisions() -> None:
    body = {
        "metadata": {"name": "chat-0", "labels": {"controller-revision-hash": OLD}},
        "status": {"phase": "Running"},
    }
    assert pod_view(body).revision == OLD
    manifest = render.statefulset(OWNER, make_spec(), SETTINGS)
    manifest["metadata"]["generation"] = 4
    manifest["status"] = {"updateRevision": NEW, "observedGeneration": 3}
    assert (child_view(manifest).update_revision, child_view(manifest).revisions_known) == (
        NEW,
        False,
    )
    manifest["status"]["observedGeneration"] = 4
    assert child_view(manifest).revisions_known


def test_model_statefulsets_take_new_templates_on_delete_only() -> None:
    manifest = render.statefulset(OWNER, make_spec(), SETTINGS)
    assert manifest["spec"]["updateStrategy"] == {"type": "OnDelete"}


# --- the plan and the status -------------------------------------------------------------------


def children_views(revision: str = NEW) -> list[ChildView]:
    found = []
    for manifest in render.children(OWNER, make_spec(replicas={"min": 1}), SETTINGS):
        manifest["spec"]["replicas"] = 1
        view = child_view(manifest)
        if view.kind == "StatefulSet":
            view = replace(view, update_revision=revision, revisions_known=True)
        found.append(view)
    return found


def step(pods: list[PodView], leases: list[LeaseView]) -> Any:
    model = Model.read(BODY, OWNER, SETTINGS)
    views = Views.build(pods, leases, children_views())
    return plan(model, views, Remembered(), None, SETTINGS, NOW)


def conditions(result: Any) -> dict[str, dict[str, str]]:
    return {c["type"]: c for c in result.status["conditions"]}


def test_a_busy_model_says_the_update_is_pending_and_deletes_nothing() -> None:
    result = step([pod(0)], [lease(in_flight=1)])
    assert result.replace_pods == ()
    assert not any(line.startswith("delete Pod") for line in result.writes())
    up_to_date = conditions(result)["UpToDate"]
    assert (up_to_date["status"], up_to_date["reason"]) == ("False", "UpdatePending")
    assert result.status["reason"] == (
        "update pending: chat-0 on an older template: replaced when idle; "
        "0 request(s) held and 1 in flight at the gateway"
    )
    assert result.next_look is not None
    assert result.next_look <= 10.0
    assert result.status["phase"] == "Ready"  # still serving


def test_an_idle_model_replaces_its_pod_with_an_event() -> None:
    result = step([pod(0)], [lease()])
    assert [(r.pod, r.uid) for r in result.replace_pods] == [("chat-0", "pod-0")]
    assert "delete Pod chat-0 (idle: no request held or in flight)" in result.writes()
    assert [e.reason for e in result.events] == ["PodReplaced"]


def test_an_up_to_date_model_says_so() -> None:
    result = step([pod(0, NEW)], [lease()])
    assert result.replace_pods == ()
    assert conditions(result)["UpToDate"]["status"] == "True"
    assert not result.status["reason"].startswith("update pending")


def test_a_template_written_in_this_step_waits_for_its_revision() -> None:
    stale = [replace(v, config_hash="old") if v.kind == "StatefulSet" else v
             for v in children_views()]  # fmt: skip
    model = Model.read(BODY, OWNER, SETTINGS)
    result = plan(model, Views.build([pod(0)], [lease()], stale), Remembered(), None,
                  SETTINGS, NOW)  # fmt: skip
    assert [c.action for c in result.children] == ["update"]
    assert result.replace_pods == ()


def test_the_servers_are_asked_only_when_nothing_else_can_tell() -> None:
    model = Model.read(BODY, OWNER, SETTINGS)
    lonely = Views.build([pod(0)], [], children_views())
    assert rollout_evidence_urls(model, lonely, None, NOW) == ["http://10.0.0.1:8080/metrics"]
    with_gateway = Views.build([pod(0)], [lease()], children_views())
    assert rollout_evidence_urls(model, with_gateway, None, NOW) is None
    assert rollout_evidence_urls(model, lonely, LoadReading(0.0), NOW) is None
    current = Views.build([pod(0, NEW)], [], children_views())
    assert rollout_evidence_urls(model, current, None, NOW) is None


def test_the_servers_own_reading_lets_an_idle_model_roll() -> None:
    model = Model.read(BODY, OWNER, SETTINGS)
    views = Views.build([pod(0)], [], children_views())
    idle = plan(model, views, Remembered(), None, SETTINGS, NOW, LoadReading(0.0, source="servers"))
    assert [r.pod for r in idle.replace_pods] == ["chat-0"]
    busy = plan(model, views, Remembered(), None, SETTINGS, NOW, LoadReading(2.0, source="servers"))
    assert busy.replace_pods == ()
