"""A model whose bare name another model holds says so: the real operator on the real
control plane writes the NameUnique condition and one Warning Event naming the holder."""

from __future__ import annotations

import time
from typing import Any

import pytest

from localworld.cluster import Cluster
from localworld.operator_env import OperatorRunner, condition, model_deployment, wait_for

pytestmark = pytest.mark.cluster


def warnings(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    events = cluster.get_json(
        "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )
    return [e for e in events.get("items", []) if e.get("reason") == "NameTaken"]


def test_a_taken_alias_is_a_condition_and_one_warning_naming_the_holder(
    cluster: Cluster, namespace: str, operator_runner: OperatorRunner
) -> None:
    operator_runner.start()
    spec = {"model": {"uri": "file:///models/tiny.gguf", "alias": "chat"}, "gpu": {"count": 0}}
    cluster.apply(model_deployment("chat-v1", **spec), namespace)
    time.sleep(1.1)  # creationTimestamp has one-second resolution: v1 is the older
    cluster.apply(model_deployment("chat-v2", **spec), namespace)

    taken = wait_for(
        "NameUnique=False on the newer model",
        lambda: (
            (c := condition(cluster, "chat-v2", namespace, "NameUnique"))
            and c["status"] == "False"
            and c
        ),
        timeout=30,
    )
    assert taken["reason"] == "NameTaken"
    assert f"held by the older {namespace}/chat-v1" in taken["message"]
    # One namespace: NAMESPACE/ALIAS is the holder's as well, NAMESPACE/NAME reaches this one.
    assert f"'{namespace}/chat-v2'" in taken["message"]
    held = condition(cluster, "chat-v1", namespace, "NameUnique")
    assert held is not None
    assert held["status"] == "True"
    wait_for("one Warning Event", lambda: len(warnings(cluster, namespace, "chat-v2")) == 1, 10)
    event = warnings(cluster, namespace, "chat-v2")[0]
    assert event["type"] == "Warning"
    assert f"{namespace}/chat-v1" in event["message"]

    # The holder goes away: the newer model holds the name now.
    cluster.kubectl("delete", "md", "chat-v1", "-n", namespace)
    wait_for(
        "NameUnique=True once the holder is gone",
        lambda: (
            (c := condition(cluster, "chat-v2", namespace, "NameUnique")) and c["status"] == "True"
        ),
        timeout=30,
    )
    assert len(warnings(cluster, namespace, "chat-v2")) == 1
