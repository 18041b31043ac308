"""A new pod template on the real control plane: a pod with a request in flight keeps
running; once the gateway's Lease says the model is idle, the operator replaces it.

kwok plays the pods; the StatefulSet controller of the real kube-controller-manager sets
the revisions (`controller-revision-hash`, `status.updateRevision`) the operator reads.
"""

from __future__ import annotations

from typing import Any

import pytest

from localworld.cluster import Cluster, holds
from localworld.operator_env import (
    T4,
    OperatorRunner,
    condition,
    demand_lease,
    get,
    model_deployment,
    status,
    wait_for,
)

pytestmark = pytest.mark.cluster

REVISION = "controller-revision-hash"


def ready_pod(cluster: Cluster, namespace: str) -> dict[str, Any] | None:
    pod = get(cluster, "pod", "roll-0", namespace)
    if pod is None or pod["metadata"].get("deletionTimestamp"):
        return None
    conditions = pod.get("status", {}).get("conditions", [])
    return pod if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) else None


def update_revision(cluster: Cluster, namespace: str) -> str:
    sts = get(cluster, "statefulset", "roll", namespace) or {}
    return str(sts.get("status", {}).get("updateRevision") or "")


def test_a_pod_in_use_keeps_running_and_rolls_when_idle(
    cluster: Cluster, namespace: str, operator_runner: OperatorRunner
) -> None:
    operator_runner.start()
    # A gateway reports one request in flight (a long Lease: it stays current for the test).
    cluster.apply(demand_lease("roll", pending=0, in_flight=1, duration=600), namespace)
    cluster.apply(
        model_deployment("roll", gpu={"products": [T4]}, replicas={"min": 1, "max": 1}),
        namespace,
    )
    first = wait_for("roll-0 Ready", lambda: ready_pod(cluster, namespace), timeout=60)
    old_revision = first["metadata"]["labels"][REVISION]
    wait_for(
        "UpToDate=True",
        lambda: (c := condition(cluster, "roll", namespace, "UpToDate")) and c["status"] == "True",
    )

    # A new template (what a new server image or a chart upgrade does).
    cluster.kubectl(
        "patch", "modeldeployment", "roll", "-n", namespace, "--type=merge",
        "-p", '{"spec":{"pod":{"labels":{"release":"two"}}}}',
    )  # fmt: skip
    wait_for(
        "a new updateRevision",
        lambda: update_revision(cluster, namespace) not in ("", old_revision),
    )
    pending = wait_for(
        "UpToDate=False",
        lambda: (
            (c := condition(cluster, "roll", namespace, "UpToDate"))
            and c["status"] == "False"
            and c
        ),
    )
    assert pending["reason"] == "UpdatePending"
    assert "roll-0 on an older template: replaced when idle" in pending["message"]
    assert status(cluster, "roll", namespace)["reason"].startswith("update pending: roll-0")

    def untouched() -> bool:
        pod = ready_pod(cluster, namespace)
        return pod is not None and pod["metadata"]["uid"] == first["metadata"]["uid"]

    holds("the busy pod keeps running", untouched, seconds=12)  # beyond the 10 s re-look
    assert status(cluster, "roll", namespace)["phase"] == "Ready"

    # The request ends: the gateway's Lease says so, and the pod is replaced.
    cluster.apply(demand_lease("roll", pending=0, in_flight=0, duration=600), namespace)
    second = wait_for(
        "a new roll-0 on the new template",
        lambda: (
            (pod := ready_pod(cluster, namespace))
            and pod["metadata"]["uid"] != first["metadata"]["uid"]
            and pod
        ),
        timeout=60,
    )
    assert second["metadata"]["labels"][REVISION] == update_revision(cluster, namespace)
    assert second["metadata"]["labels"]["release"] == "two"
    wait_for(
        "UpToDate=True again",
        lambda: (c := condition(cluster, "roll", namespace, "UpToDate")) and c["status"] == "True",
    )
    events = cluster.get_json(
        "events", "-n", namespace, "--field-selector", "involvedObject.name=roll"
    )
    replaced = [e["message"] for e in events["items"] if e["reason"] == "PodReplaced"]
    assert replaced == [
        "roll-0 ran an older template (idle: no request held or in flight): replaced"
    ]


def test_a_model_at_zero_is_up_to_date_at_once(
    cluster: Cluster, namespace: str, operator_runner: OperatorRunner
) -> None:
    operator_runner.start()
    cluster.apply(model_deployment("roll", replicas={"min": 0, "max": 1}), namespace)
    wait_for(
        "ScaledToZero", lambda: status(cluster, "roll", namespace).get("phase") == "ScaledToZero"
    )
    cluster.kubectl(
        "patch", "modeldeployment", "roll", "-n", namespace, "--type=merge",
        "-p", '{"spec":{"pod":{"labels":{"release":"two"}}}}',
    )  # fmt: skip
    wait_for("a revision", lambda: update_revision(cluster, namespace) != "")
    holds(
        "nothing pending at zero",
        lambda: (
            (c := condition(cluster, "roll", namespace, "UpToDate")) is None
            or c["status"] == "True"
        ),
        seconds=3,
    )
