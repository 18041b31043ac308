"""Pending for the right reason, startupTimeout, and an operator that never waits in silence:
the real operator (as its ServiceAccount) on the real control plane."""

from __future__ import annotations

import json
import urllib.request

import pytest

from localworld.cluster import Cluster
from localworld.operator_env import (
    OperatorRunner,
    condition,
    demand_lease,
    model_deployment,
    status,
    sts_replicas,
    wait_for,
)
from localworld.procs import free_port

pytestmark = pytest.mark.cluster

# A StorageClass whose provisioner is not installed: claims stay unbound, as in a cluster
# without the EBS CSI driver (or the demo's control plane without any provisioner).
NO_PROVISIONER = {
    "apiVersion": "storage.k8s.io/v1",
    "kind": "StorageClass",
    "metadata": {"name": "siesta-test-unprovisioned"},
    "provisioner": "siesta.test/not-installed",
    "volumeBindingMode": "Immediate",
}


def test_pending_on_an_unbound_volume_says_so_and_startup_timeout_ends_it(
    cluster: Cluster, namespace: str, operator_runner: OperatorRunner
) -> None:
    cluster.apply(NO_PROVISIONER)
    operator_runner.start()
    spec = {
        "model": {"uri": "https://models.example.com/m.gguf"},  # downloads: a cache volume
        "gpu": {"count": 0},
        "cache": {"size": "1Gi", "storageClassName": "siesta-test-unprovisioned"},
        "replicas": {"min": 0, "max": 1},
        "scaling": {"idleTimeout": "3s", "scaleDownDelay": "1s", "startupTimeout": "6s"},
    }
    cluster.apply(model_deployment("unbound", **spec), namespace)
    cluster.apply(demand_lease("unbound", pending=1), namespace)  # a request is waiting

    pending = wait_for(
        "Pending on the volume",
        lambda: (
            (c := condition(cluster, "unbound", namespace, "Ready"))
            and c["reason"] == "VolumeNotBound"
            and c
        ),
        timeout=30,
    )
    assert "unbound immediate PersistentVolumeClaims" in pending["message"]
    now = status(cluster, "unbound", namespace)
    assert now["phase"] == "Loading"  # not WaitingForGPU: no GPU node would help
    assert now["reason"].startswith("1 pod(s) pending (VolumeNotBound): ")

    cluster.kubectl("delete", "lease", demand_lease("unbound")["metadata"]["name"], "-n", namespace)
    # The pod never starts: after startupTimeout it holds nothing, and the model sleeps.
    wait_for("asleep", lambda: sts_replicas(cluster, "unbound", namespace) == 0, timeout=40)
    asleep = wait_for(
        "asleep after failing",
        lambda: (s := status(cluster, "unbound", namespace)).get("phase") == "ScaledToZero" and s,
    )
    assert asleep["reason"].startswith(
        "asleep after failing: 1 replica not ready within startupTimeout 6s"
    )
    serving = condition(cluster, "unbound", namespace, "ModelServing")
    assert serving is not None
    assert (serving["status"], serving["reason"]) == ("False", "StartupTimeout")


def test_without_its_peering_object_the_operator_runs_standalone_and_says_so(
    cluster: Cluster, namespace: str, operator_runner: OperatorRunner
) -> None:
    port = free_port()
    running = operator_runner.start(
        f"--liveness=http://127.0.0.1:{port}/healthz", SIESTA_PEERING="not-there"
    )
    cluster.apply(model_deployment("alone", gpu={"count": 0}), namespace)
    # It reconciles (kopf would otherwise wait for the peering object in silence) ...
    wait_for("reconciled", lambda: sts_replicas(cluster, "alone", namespace) == 0, timeout=30)
    # ... and says why it runs alone: in its log at once, and on /healthz.
    assert f"KopfPeering 'not-there' not found in {namespace}: running standalone" in (
        running.proc.log_tail(200)
    )
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        health = json.loads(response.read())
    assert health["siesta"]["peering"] == "standalone"
    assert any("'not-there' not found" in w for w in health["siesta"]["warnings"])
    assert not any("not allowed" in w for w in health["siesta"]["warnings"])  # RBAC is fine
