"""`idleTimeout: auto` at the real API server: the CRD's rules, and the learned status kept."""

from __future__ import annotations

import json
from typing import Any

import pytest

from localworld.cluster import Cluster
from localworld.operator_env import OperatorAccess
from siesta.api.contract import API_VERSION
from siesta.operator.status import memory_from_status
from siesta.policy.idle import BUCKETS, GapHistory

pytestmark = pytest.mark.cluster


def md(name: str, scaling: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": API_VERSION,
            "kind": "ModelDeployment",
            "metadata": {"name": name},
            "spec": {"model": {"uri": "https://models.example.com/m.gguf"}, "scaling": scaling},
        }
    )


BAD = [
    ("not-auto", {"idleTimeout": "automatic"}, "spec.scaling.idleTimeout"),
    (
        "bounds-without-auto",
        {"idleTimeout": "15m", "autoIdleTimeout": {"max": "1h"}},
        "autoIdleTimeout needs idleTimeout: auto",
    ),
    (
        "min-above-max",
        {"idleTimeout": "auto", "autoIdleTimeout": {"min": "1h", "max": "10m"}},
        "autoIdleTimeout.min must not exceed autoIdleTimeout.max",
    ),
    (
        "zero-wake-cost",
        {"idleTimeout": "auto", "autoIdleTimeout": {"wakeCost": "0s"}},
        "wakeCost must be a positive duration",
    ),
]


@pytest.mark.parametrize(("name", "scaling", "message"), BAD, ids=[case[0] for case in BAD])
def test_bad_auto_settings_are_rejected(
    cluster: Cluster,
    operator_access: OperatorAccess,  # installs the CRD
    namespace: str,
    name: str,
    scaling: dict[str, Any],
    message: str,
) -> None:
    result = cluster.kubectl(
        "create", "-n", namespace, "-f", "-", input=md(name, scaling), check=False
    )
    assert result.returncode != 0, f"{name} was accepted"
    assert message in result.stderr, result.stderr


def test_auto_gets_its_defaults_and_keeps_what_it_learned(
    cluster: Cluster, operator_access: OperatorAccess, namespace: str
) -> None:
    scaling = {"idleTimeout": "auto", "autoIdleTimeout": {"max": "45m"}}
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=md("auto", scaling))
    stored = cluster.get_json("modeldeployment", "auto", "-n", namespace)
    assert stored["spec"]["scaling"]["autoIdleTimeout"] == {
        "min": "2m",
        "max": "45m",
        "wakeCost": "10m",
    }
    learned = GapHistory().record("weekday-21", 45).record("weekend-03", 36000)
    status = {
        "requestGaps": {
            "lastRequestTime": "2026-11-25T20:33:00Z",
            "counts": learned.as_mapping(),
        }
    }
    cluster.kubectl(
        "patch", "md", "auto", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip
    kept = cluster.get_json("modeldeployment", "auto", "-n", namespace)["status"]
    assert kept["requestGaps"] == status["requestGaps"]  # nothing pruned by the schema
    assert memory_from_status(kept).request_gaps == learned
    assert all(len(row) == BUCKETS for row in kept["requestGaps"]["counts"].values())
