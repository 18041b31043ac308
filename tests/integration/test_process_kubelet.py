"""The test-only process kubelet: pods on its node are real siesta-server processes."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from localworld.cluster import Cluster, wait_for
from localworld.full_loop import start_process_kubelet
from localworld.nodes import PROCESS_KUBELET_TOLERATIONS
from localworld.procs import Proc, http_status

pytestmark = [pytest.mark.cluster, pytest.mark.llama]

NODE = "proc-gpu-kubelet-test"
LABEL = {"siesta.test/kubelet": "kubelet-test"}


@pytest.fixture(scope="module")
def kubelet(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    from localworld.tiny_gguf import write_tiny_llama

    models = tmp_path_factory.mktemp("models")
    write_tiny_llama(models / "tiny.gguf")
    proc = start_process_kubelet(
        cluster, NODE, 5, LABEL, models, tmp_path_factory.mktemp("kubelet")
    )
    yield proc
    proc.stop(grace=30)


def pod_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "nodeSelector": LABEL,
            "tolerations": PROCESS_KUBELET_TOLERATIONS,
            "terminationGracePeriodSeconds": 15,
            "containers": [
                {
                    "name": "server",
                    "image": "ghcr.io/siesta-dev/siesta-server:0.1.0",
                    "env": [
                        {"name": "SIESTA_MODEL", "value": "file:///models/tiny.gguf"},
                        {"name": "SIESTA_CACHE_DIR", "value": "/cache"},
                        {"name": "SIESTA_HOST", "value": "0.0.0.0"},
                    ],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
                    "lifecycle": {"preStop": {"sleep": {"seconds": 1}}},
                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                }
            ],
            "volumes": [{"name": "cache", "emptyDir": {}}],
        },
    }


def test_a_pod_runs_as_a_process_becomes_ready_and_is_published(
    cluster: Cluster, namespace: str, kubelet: Proc
) -> None:
    cluster.apply(pod_manifest("server"), namespace)
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "server"},
            "spec": {"selector": {"app": "server"}, "ports": [{"name": "http", "port": 8080}]},
        },
        namespace,
    )

    def ready_pod() -> dict[str, Any] | None:
        pod = cluster.get_json("pod", "server", "-n", namespace)
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        return pod if conditions.get("Ready") == "True" else None

    pod = wait_for("pod Ready", ready_pod, 60)
    status = pod["status"]
    assert status["phase"] == "Running"
    assert pod["spec"]["nodeName"] == NODE
    address = status["podIP"]
    assert address.startswith("10.244.5.")
    assert status["containerStatuses"][0]["ready"] is True
    assert http_status(f"http://{address}:8080/health") == 200  # the real server

    def published() -> bool:
        slices = cluster.get_json(
            "endpointslices", "-n", namespace, "-l", "kubernetes.io/service-name=server"
        )["items"]
        return any(
            e["addresses"] == [address] and e["conditions"].get("ready")
            for s in slices
            for e in s.get("endpoints") or []
        )

    wait_for("the EndpointSlice controller publishes the ready endpoint", published, 30)

    started = time.monotonic()
    cluster.kubectl("delete", "pod", "server", "-n", namespace, "--wait=true", timeout=60)
    assert time.monotonic() - started < 15  # preStop 1 s, then SIGTERM; the server drains fast
    assert f"{namespace}/server: SIGTERM" in kubelet.log_path.read_text()
    wait_for(
        "the kubelet reports the pod terminated",
        lambda: f"{namespace}/server: terminated" in kubelet.log_path.read_text(),
        10,
    )

    def address_released() -> bool:
        shown = subprocess.run(
            ["ip", "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True, check=True
        ).stdout
        return f" {address}/32 " not in shown

    wait_for("the pod's address removed from the loopback interface", address_released, 10)


def test_the_node_stays_ready(cluster: Cluster, kubelet: Proc) -> None:
    node = cluster.get_json("node", NODE)
    conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    taints = {t["key"] for t in node["spec"].get("taints") or []}
    assert "node.kubernetes.io/not-ready" not in taints
    assert "node.kubernetes.io/unreachable" not in taints
    lease = cluster.get_json("lease", NODE, "-n", "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == NODE
