"""The CPU bridge on the real control plane (docs/bridge.md): kwok plays the kubelet of the CPU
and (simulated) GPU nodes, so pods become ready as soon as they are placed; demand comes from
a gateway's Lease written here, as in test_operator_scaling.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from localworld.cluster import Cluster, holds
from localworld.operator_env import (
    OperatorAccess,
    OperatorRunner,
    demand_lease,
    get,
    model_deployment,
    status,
    sts_replicas,
    wait_for,
)
from siesta.api.contract import (
    API_VERSION,
    BRIDGE_IN_FLIGHT_ANNOTATION,
    BRIDGE_LABEL,
    MODEL_LABEL,
    bridge_name,
)

pytestmark = pytest.mark.cluster

BRIDGE = {"resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}
SPEC: dict[str, Any] = {
    "replicas": {"min": 0, "max": 1},
    "scaling": {"idleTimeout": "10m", "scaleDownDelay": "1s"},
    "bridge": BRIDGE,
}


def lease(model: str, *, pending: int, bridge_in_flight: int) -> dict[str, Any]:
    """A gateway's demand Lease that also reports requests on the model's bridge."""
    body = demand_lease(model, pending=pending, duration=60)
    body["metadata"]["annotations"][BRIDGE_IN_FLIGHT_ANNOTATION] = str(bridge_in_flight)
    return body


def bridge_events(cluster: Cluster, name: str, namespace: str) -> list[dict[str, Any]]:
    events = cluster.get_json(
        "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )
    found = [e for e in events["items"] if e["reason"].startswith("Bridge")]
    return sorted(found, key=lambda e: int(e["metadata"]["resourceVersion"]))


def test_the_bridge_wakes_with_the_gpu_and_hands_over_when_its_last_request_ends(
    cluster: Cluster, namespace: str, operator_runner: OperatorRunner
) -> None:
    running = operator_runner.start()
    name, bridge = "night", bridge_name("night")
    cluster.apply(model_deployment(name, **SPEC), namespace)
    wait_for(
        "both StatefulSets at zero",
        lambda: (
            sts_replicas(cluster, name, namespace) == 0
            and sts_replicas(cluster, bridge, namespace) == 0
        ),
    )
    made = get(cluster, "statefulset", bridge, namespace)
    assert made is not None
    assert made["metadata"]["labels"][BRIDGE_LABEL] == name
    assert MODEL_LABEL not in made["metadata"]["labels"]
    assert get(cluster, "service", bridge, namespace) is not None

    # A request finds the model at zero; the gateway says it already streams on the bridge.
    cluster.apply(lease(name, pending=1, bridge_in_flight=1), namespace)
    wait_for(
        "both StatefulSets at one",
        lambda: (
            sts_replicas(cluster, name, namespace) == 1
            and sts_replicas(cluster, bridge, namespace) == 1
        ),
        timeout=20,
    )
    handing_over = wait_for(
        "the GPU replica ready while a request is on the bridge",
        lambda: (
            (s := status(cluster, name, namespace)).get("readyReplicas") == 1
            and (s.get("bridge") or {}).get("state") == "HandingOver"
            and s
        ),
        timeout=30,
    )
    assert handing_over["bridge"]["reason"] == (
        "the GPU replica is ready; 1 request still on the bridge: handing over when they end"
    )
    holds("the bridge stays", lambda: sts_replicas(cluster, bridge, namespace) == 1, seconds=2)

    # The last stream on the bridge ends: it goes back to zero, the GPU replica serves.
    cluster.apply(lease(name, pending=0, bridge_in_flight=0), namespace)
    wait_for(
        "the bridge at zero", lambda: sts_replicas(cluster, bridge, namespace) == 0, timeout=20
    )
    slept = wait_for(
        "status says it handed over",
        lambda: (
            (s := status(cluster, name, namespace)).get("bridge", {}).get("replicas") == 0 and s
        ),
    )
    assert slept["bridge"]["state"] in ("Draining", "Asleep")
    assert sts_replicas(cluster, name, namespace) == 1
    reasons = [e["reason"] for e in bridge_events(cluster, name, namespace)]
    assert reasons == ["BridgeWoke", "BridgeHandedOver"]
    assert running.metric_sum("siesta_operator_bridge_replicas", modeldeployment=name) == 0

    # Without spec.bridge the bridge's objects go.
    without = {key: value for key, value in SPEC.items() if key != "bridge"}
    cluster.apply(model_deployment(name, **without), namespace)
    wait_for(
        "the bridge's objects deleted",
        lambda: (
            get(cluster, "statefulset", bridge, namespace) is None
            and get(cluster, "service", bridge, namespace) is None
        ),
        timeout=30,
    )
    assert "bridge" not in status(cluster, name, namespace)


def test_with_gpu_after_a_lone_request_wakes_only_the_bridge(
    cluster: Cluster, namespace: str, operator_runner: OperatorRunner
) -> None:
    first = operator_runner.start()
    name, bridge = "lone", bridge_name("lone")
    spec = {**SPEC, "bridge": {**BRIDGE, "gpuAfter": "10m"}}
    cluster.apply(model_deployment(name, **spec), namespace)
    wait_for("the bridge StatefulSet", lambda: sts_replicas(cluster, bridge, namespace) == 0)
    cluster.apply(lease(name, pending=1, bridge_in_flight=0), namespace)
    wait_for("the bridge at one", lambda: sts_replicas(cluster, bridge, namespace) == 1, timeout=20)
    holds("the GPU stays at zero", lambda: sts_replicas(cluster, name, namespace) == 0, seconds=3)
    held = status(cluster, name, namespace)
    assert held["desiredReplicas"] == 0
    assert held["reason"].startswith("the bridge answers; the GPU replica wakes at ")
    assert held["reason"].endswith("if requests go on (gpuAfter 10m)")
    assert held["bridge"]["demandSince"]

    # A restarted operator remembers when the requests began (status.bridge): still held.
    first.kill()
    operator_runner.start()
    holds("the GPU still at zero", lambda: sts_replicas(cluster, name, namespace) == 0, seconds=3)
    again = status(cluster, name, namespace)
    assert again["bridge"]["demandSince"] == held["bridge"]["demandSince"]
    assert again["reason"] == held["reason"]


def test_a_model_cannot_be_named_like_a_bridge(
    cluster: Cluster, operator_access: OperatorAccess, namespace: str
) -> None:
    body = {
        "apiVersion": API_VERSION,
        "kind": "ModelDeployment",
        "metadata": {"name": "chat-bridge"},
        "spec": {"model": {"uri": "https://models.example.com/m.gguf"}, "bridge": BRIDGE},
    }
    result = cluster.kubectl(
        "create", "-n", namespace, "-f", "-", input=json.dumps(body), check=False
    )
    assert result.returncode != 0, "chat-bridge was accepted"
    assert "cannot end in -bridge" in result.stderr, result.stderr
