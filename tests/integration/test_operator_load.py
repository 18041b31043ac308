"""Load-based scaling through the real Prometheus, and holding when Prometheus is gone."""

from __future__ import annotations

import pytest

from localworld.cluster import Cluster, holds
from localworld.operator_env import (
    OperatorRunner,
    condition,
    model_deployment,
    scale_events,
    status,
    sts_replicas,
    wait_for,
)
from localworld.prometheus_env import Prometheus

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus]

SCALING = {"idleTimeout": "5s", "scaleDownDelay": "1s"}
# A custom query is polled even at zero replicas (the default one measures the model's own
# servers, so it is 0 there by definition).
CUSTOM = {
    "query": 'sum(llamacpp:requests_processing{namespace="$namespace",modeldeployment="$name"})',
    "targetPerReplica": 2,
}
SPEC = {
    "gpu": {"count": 0},
    "replicas": {"min": 0, "max": 3},
    "scaling": {**SCALING, "metric": CUSTOM},
}


def start_operator(runner: OperatorRunner, server: Prometheus) -> None:
    runner.start(SIESTA_PROMETHEUS_URL=server.url, SIESTA_METRIC_INTERVAL="1s")


def test_load_scales_up_and_idle_scales_to_zero(
    cluster: Cluster, namespace: str, operator_runner: OperatorRunner, prometheus: Prometheus
) -> None:
    start_operator(operator_runner, prometheus)
    cluster.apply(model_deployment("busy", **SPEC), namespace)
    wait_for(
        "ScaledToZero", lambda: status(cluster, "busy", namespace).get("phase") == "ScaledToZero"
    )

    prometheus.exporter.set(namespace, "busy", 5)  # ceil(5 / 2) = 3 replicas
    wait_for(
        "3 replicas for load 5", lambda: sts_replicas(cluster, "busy", namespace) == 3, timeout=30
    )
    busy = wait_for(
        "Ready", lambda: (s := status(cluster, "busy", namespace)).get("phase") == "Ready" and s
    )
    assert busy["reason"] == "load 5 at 2 per replica wants 3"
    metrics = condition(cluster, "busy", namespace, "MetricsAvailable")
    assert metrics is not None
    assert (metrics["status"], metrics["message"]) == ("True", "load is 5")

    prometheus.exporter.set(namespace, "busy", 0)
    # Down to one replica after scaleDownDelay; not to zero before idleTimeout (5 s) ...
    wait_for(
        "1 replica for load 0", lambda: sts_replicas(cluster, "busy", namespace) == 1, timeout=10
    )
    idle = status(cluster, "busy", namespace)
    assert any(r.startswith("last active") for r in idle["reasons"]), idle["reasons"]
    # ... then to zero.
    wait_for(
        "zero after the idle timeout",
        lambda: sts_replicas(cluster, "busy", namespace) == 0,
        timeout=30,
    )
    wait_for(
        "ScaledToZero", lambda: status(cluster, "busy", namespace).get("phase") == "ScaledToZero"
    )
    assert [e["reason"] for e in scale_events(cluster, "busy", namespace)] == [
        "ScaledUp",
        "ScaledDown",
        "ScaledDown",
    ]


def test_prometheus_down_never_scales_down(
    cluster: Cluster, namespace: str, operator_runner: OperatorRunner, prometheus: Prometheus
) -> None:
    start_operator(operator_runner, prometheus)
    # The default query, on a model that keeps one replica.
    spec = {
        "gpu": {"count": 0},
        "replicas": {"min": 1, "max": 3},
        "scaling": {**SCALING, "metric": {"targetPerReplica": 2}},
    }
    cluster.apply(model_deployment("held", **spec), namespace)
    wait_for("1 replica", lambda: sts_replicas(cluster, "held", namespace) == 1, timeout=30)
    prometheus.exporter.set(namespace, "held", 3)  # 2 replicas
    wait_for("2 replicas", lambda: sts_replicas(cluster, "held", namespace) == 2, timeout=30)

    prometheus.stop()
    prometheus.exporter.set(namespace, "held", 0)  # nobody can see this any more
    unavailable = wait_for(
        "MetricsAvailable=False",
        lambda: (
            (c := condition(cluster, "held", namespace, "MetricsAvailable"))
            and c["status"] == "False"
            and c
        ),
        timeout=20,
    )
    assert unavailable["reason"] == "MetricsUnavailable"
    assert "cannot connect to Prometheus" in unavailable["message"]
    assert unavailable["message"].endswith("holding replicas")
    holds(  # far beyond idleTimeout + scaleDownDelay
        "2 replicas while metrics are unavailable",
        lambda: sts_replicas(cluster, "held", namespace) == 2,
        seconds=8,
    )
    assert any(
        r.startswith("metrics unavailable") for r in status(cluster, "held", namespace)["reasons"]
    )

    prometheus.start()  # back, and the load is really 0: now it may go down
    wait_for(
        "MetricsAvailable=True",
        lambda: (
            (c := condition(cluster, "held", namespace, "MetricsAvailable"))
            and c["status"] == "True"
        ),
        timeout=30,
    )
    wait_for(
        "1 once the data says so", lambda: sts_replicas(cluster, "held", namespace) == 1, timeout=30
    )
