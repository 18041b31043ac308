"""Measured cost on the real control plane: kwok GPU nodes with instance-type labels, the
model's pods (and another workload's) bound to them, fake prices and known times.

The cost loop's handler (`siesta.operator.cost_loop.account_cost`) runs with the operator's
own ServiceAccount (the chart's RBAC) against the real API server; its clock is the test's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import config

from localworld.cluster import Cluster
from localworld.nodes import add_node, gpu_node_manifest, remove_node
from localworld.operator_env import OperatorAccess
from siesta.api.contract import API_VERSION, MODEL_LABEL
from siesta.cli import main
from siesta.operator import cost, cost_loop
from siesta.operator.kube import Kube
from support.specs import utc

pytestmark = pytest.mark.cluster

PRICES = {"us-east-1": {"on-demand": {"g4dn.xlarge": 0.6, "g4dn.12xlarge": 4.0}}}
MINUTE = timedelta(minutes=1)


def pod(name: str, node: str, gpus: int, model: str | None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {MODEL_LABEL: model} if model else {}},
        "spec": {
            "nodeName": node,  # bound directly: the cost loop reads where pods are
            "tolerations": [{"operator": "Exists"}],
            "containers": [
                {
                    "name": "server",
                    "image": "registry.invalid/none",
                    "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                }
            ],
        },
    }


def model(name: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": "https://models.example.com/m.gguf"},
            "gpu": {"products": ["Tesla-T4"]},
            "schedule": {
                "timezone": "Europe/Berlin",
                "windows": [
                    {
                        "name": "office",
                        "start": "0 8 * * 1-5",
                        "end": "0 18 * * 1-5",
                        "minReplicas": 1,
                    }
                ],
            },
        },
    }


def sample(
    cluster: Cluster, access: OperatorAccess, namespace: str, name: str, at: datetime
) -> dict[str, Any]:
    body = cluster.get_json("modeldeployment", name, "-n", namespace)
    api_client = config.new_client_from_config(config_file=str(access.kubeconfig))  # type: ignore[no-untyped-call]
    asyncio.run(cost_loop.measure(Kube(api_client), at, body, namespace, name))
    status = cluster.get_json("modeldeployment", name, "-n", namespace)["status"]
    written: dict[str, Any] = status["cost"]
    return written


@pytest.fixture
def fake_prices(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SIESTA_COST_PRICES", json.dumps(PRICES))
    monkeypatch.setenv("SIESTA_COST_REGION", "us-east-1")
    cost_loop.price_table.cache_clear()
    yield
    cost_loop.price_table.cache_clear()


def test_cost_is_measured_per_model_and_split_on_shared_nodes(
    cluster: Cluster,
    operator_access: OperatorAccess,
    namespace: str,
    fake_prices: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t4 = f"{namespace}-t4"[:63]
    big = gpu_node_manifest(f"{namespace}-big"[:63], "g4dn")
    big["metadata"]["labels"]["node.kubernetes.io/instance-type"] = "g4dn.12xlarge"
    big["status"]["capacity"]["nvidia.com/gpu"] = "4"
    big["status"]["allocatable"]["nvidia.com/gpu"] = "4"
    nodes = [
        add_node(cluster.kubeconfig, gpu_node_manifest(t4, "g4dn")),
        add_node(cluster.kubeconfig, big),
    ]
    try:
        cluster.apply(model("alone"), namespace)
        cluster.apply(model("shared"), namespace)
        cluster.apply(pod("alone-0", nodes[0], 1, "alone"), namespace)
        cluster.apply(pod("shared-0", nodes[1], 1, "shared"), namespace)
        cluster.apply(pod("batch-job", nodes[1], 3, None), namespace)  # another workload

        # Known times: samples are taken at fixed offsets after the model was created.
        created_text = cluster.get_json("modeldeployment", "alone", "-n", namespace)["metadata"][
            "creationTimestamp"
        ]
        start = utc(created_text) + MINUTE
        first = sample(cluster, operator_access, namespace, "alone", start)
        assert first["nodes"] == [
            {"node": nodes[0], "instanceType": "g4dn.xlarge", "share": 1.0, "pricePerHour": 0.6}
        ]
        later = sample(cluster, operator_access, namespace, "alone", start + 10 * MINUTE)
        assert later["total"]["nodeHours"] == pytest.approx(10 / 60, abs=1e-5)
        assert later["total"]["spend"] == pytest.approx(0.1, abs=1e-5)  # 10 minutes at $0.60/h
        assert later["total"]["alwaysOn"] == pytest.approx(0.1, abs=1e-5)  # it was on all along
        midnight = cost.day_start(start + 10 * MINUTE, "Europe/Berlin")
        expected_since = max(midnight, utc(created_text)).astimezone(UTC)
        assert later["today"]["since"] == expected_since.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert later["total"]["since"] == created_text

        sample(cluster, operator_access, namespace, "shared", start)
        shared = sample(cluster, operator_access, namespace, "shared", start + 10 * MINUTE)
        assert shared["nodes"][0]["share"] == 0.25  # 1 of the 4 GPUs requested on the node
        assert shared["total"]["spend"] == pytest.approx(4.0 * 0.25 / 6, abs=1e-5)

        # Asleep: the pod goes, the next sample counts up to it and then nothing more.
        cluster.kubectl("delete", "pod", "alone-0", "-n", namespace, "--grace-period=0", "--force")
        sample(cluster, operator_access, namespace, "alone", start + 20 * MINUTE)
        asleep = sample(cluster, operator_access, namespace, "alone", start + 30 * MINUTE)
        assert asleep["total"]["spend"] == pytest.approx(0.2, abs=1e-5)
        assert asleep["total"]["alwaysOn"] == pytest.approx(0.3, abs=1e-5)
        assert asleep["total"]["saved"] == pytest.approx(0.1, abs=1e-5)
        assert asleep["summary"] == "$0.20 (saved $0.10 (33%))"

        # The printer column, and the report from the cluster's status.
        table = cluster.kubectl("get", "md", "alone", "-n", namespace).stdout
        assert "COST" in table
        assert "$0.20 (saved $0.10 (33%))" in table
        saved = tmp_path / "mds.yaml"
        saved.write_text(cluster.kubectl("get", "md", "-n", namespace, "-o", "yaml").stdout)
        assert main(["report", "-f", str(saved), "--since", "total", "-o", "json"]) == 0
        rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
        assert rows["alone"]["spend"] == 0.2
        assert rows["alone"]["saved"] == 0.1
        assert rows["shared"]["spend"] == pytest.approx(0.17, abs=1e-5)
        # The same straight from the cluster (the kubeconfig's context).
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
        assert main(["report", "-n", namespace, "--since", "total", "-o", "json"]) == 0
        live = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
        assert live == rows
    finally:
        for name in nodes:
            remove_node(cluster.kubeconfig, name)
