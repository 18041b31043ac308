"""Running the real operator in tests: installed like a user would, run as its ServiceAccount.

``operator_access`` (session) applies the CRDs, the kopf peering CRDs and
deploy/rbac/operator-rbac.yaml as cluster admin, then builds a kubeconfig holding a token
of exactly the ``siesta-system/siesta-operator`` ServiceAccount (``kubectl create token``):
the operator never runs as admin in tests. ``operator_runner`` starts ``siesta operator``
subprocesses (so kill and restart are real) restricted to the test's namespace, with
peering through a KopfPeering in that namespace; every process is stopped afterwards.
"""

from __future__ import annotations

import json
import re
import signal
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from localworld.cluster import Cluster, wait_for
from localworld.nodes import SIMULATED_GPU_TOLERATIONS
from localworld.procs import BIN, Proc, free_port, start
from siesta.api.contract import (
    API_VERSION,
    IN_FLIGHT_ANNOTATION,
    MODEL_LABEL,
    PENDING_ANNOTATION,
    demand_lease_name,
)

ROOT = Path(__file__).resolve().parents[2]
RBAC = ROOT / "deploy" / "rbac" / "operator-rbac.yaml"
PEERING = ROOT / "deploy" / "peering" / "kopf-peering.yaml"
CRDS = ROOT / "crds"
SERVICE_ACCOUNT = ("siesta-system", "siesta-operator")
PEERING_NAME = "siesta"
T4 = "Tesla-T4"
A10G = "NVIDIA-A10G"


def operator_kubeconfig(cluster: Cluster, path: Path, duration: str = "6h") -> Path:
    """A kubeconfig that authenticates as the operator's ServiceAccount (token only)."""
    return cluster.service_account_kubeconfig(*SERVICE_ACCOUNT, path, duration)


def install(cluster: Cluster) -> None:
    """CRDs, peering CRDs and RBAC, as `kubectl apply` of the repository's manifests."""
    cluster.kubectl("create", "namespace", SERVICE_ACCOUNT[0], check=False)
    documents = list(yaml.safe_load_all(PEERING.read_text()))
    crds = [d for d in documents if d["kind"] == "CustomResourceDefinition"]
    others = [d for d in documents if d["kind"] != "CustomResourceDefinition"]
    cluster.apply({"apiVersion": "v1", "kind": "List", "items": crds})
    cluster.kubectl("apply", "-f", str(CRDS))
    names = [f"crd/{d['metadata']['name']}" for d in crds] + ["crd/modeldeployments.siesta.dev"]
    cluster.kubectl("wait", "--for=condition=Established", *names, "--timeout=60s")
    cluster.apply({"apiVersion": "v1", "kind": "List", "items": others})
    cluster.kubectl("apply", "-f", str(RBAC))


@dataclass
class OperatorAccess:
    kubeconfig: Path


@pytest.fixture(scope="session")
def operator_access(cluster: Cluster) -> OperatorAccess:
    install(cluster)
    directory = Path(tempfile.mkdtemp(prefix="siesta-operator-"))
    return OperatorAccess(operator_kubeconfig(cluster, directory / "kubeconfig.yaml"))


@dataclass
class RunningOperator:
    proc: Proc
    metrics_url: str

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics as 'name{labels}' -> value."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            text = response.read().decode()
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                samples[key] = float(value)
        return samples

    def metric_sum(self, name: str, **labels: str) -> float:
        total = 0.0
        for key, value in self.metrics().items():
            metric, _, rest = key.partition("{")
            if metric != name:
                continue
            found = dict(re.findall(r'(\w+)="([^"]*)"', rest))
            if all(found.get(k) == v for k, v in labels.items()):
                total += value
        return total

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as if the node died."""
        self.proc.signal(signal.SIGKILL)
        self.proc.process.wait(timeout=10)

    def stop(self) -> None:
        self.proc.stop(grace=10)


@dataclass
class OperatorRunner:
    cluster: Cluster
    access: OperatorAccess
    namespace: str
    log_dir: Path
    running: list[RunningOperator] = field(default_factory=list)

    def start(self, *args: str, **env: str) -> RunningOperator:
        """`siesta operator` for the test's namespace; `args` are extra flags."""
        port = free_port()
        environment = {
            "KUBECONFIG": str(self.access.kubeconfig),
            "SIESTA_METRICS_PORT": str(port),
            "SIESTA_SERVER_IMAGE": "siesta-server:test",
            **env,
        }
        environment.pop("KUBERNETES_SERVICE_HOST", None)
        argv = [str(BIN / "siesta"), "operator", "--namespace", self.namespace, *args]
        name = f"operator-{len(self.running)}"
        proc = start(
            name, argv, env=environment, log_dir=self.log_dir, url=f"http://127.0.0.1:{port}"
        )
        running = RunningOperator(proc, f"http://127.0.0.1:{port}/metrics")
        self.running.append(running)

        def ready() -> bool:
            if not proc.alive():
                pytest.fail(f"operator exited {proc.process.returncode}:\n{proc.log_tail()}")
            try:
                running.metrics()
            except OSError:
                return False
            return True

        wait_for("the operator's /metrics", ready, timeout=60)
        return running

    def logs(self) -> str:
        return "\n".join(f"--- {r.proc.name}\n{r.proc.log_tail(80)}" for r in self.running)


@pytest.fixture
def operator_runner(
    cluster: Cluster, namespace: str, operator_access: OperatorAccess, tmp_path: Path
) -> Iterator[OperatorRunner]:
    cluster.apply(
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": PEERING_NAME}},
        namespace,
    )
    runner = OperatorRunner(cluster, operator_access, namespace, tmp_path / "logs")
    yield runner
    for running in runner.running:
        running.stop()
    print(runner.logs())  # shown by pytest when the test failed
    # Free the few fake GPUs for the next test at once (namespace deletion is asynchronous).
    cluster.kubectl(
        "delete",
        "statefulsets",
        "--all",
        "-n",
        namespace,
        "--wait=true",
        "--timeout=60s",
        check=False,
    )
    cluster.kubectl(
        "delete", "pods", "--all", "-n", namespace, "--grace-period=0", "--force", check=False
    )
    # Objects still carrying the operator's finalizer would block the namespace's deletion.
    for item in cluster.get_json("modeldeployments", "-n", namespace).get("items", []):
        cluster.kubectl(
            "patch", "modeldeployment", item["metadata"]["name"], "-n", namespace, "--type=merge",
            "-p", '{"metadata":{"finalizers":null}}', check=False,
        )  # fmt: skip


def model_deployment(name: str, **spec: Any) -> dict[str, Any]:
    """A ModelDeployment whose model lives in the image (no cache volume, no download).

    A GPU model tolerates the simulated GPU nodes (kwok's, :data:`SIMULATED_TAINT`) unless the
    spec sets its own tolerations: these tests watch the operator, not a running server.
    """
    body: dict[str, Any] = {"model": {"uri": "file:///models/tiny.gguf"}, **spec}
    gpu = dict(body.get("gpu") or {})
    if gpu.get("count", 1) > 0 and "tolerations" not in gpu:
        body["gpu"] = {**gpu, "tolerations": SIMULATED_GPU_TOLERATIONS}
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": body,
    }


def get(cluster: Cluster, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def status(cluster: Cluster, name: str, namespace: str) -> dict[str, Any]:
    found = get(cluster, "modeldeployment", name, namespace)
    return (found or {}).get("status") or {}


def sts_replicas(cluster: Cluster, name: str, namespace: str) -> int | None:
    found = get(cluster, "statefulset", name, namespace)
    return None if found is None else int(found["spec"].get("replicas") or 0)


def condition(cluster: Cluster, name: str, namespace: str, kind: str) -> dict[str, Any] | None:
    for found in status(cluster, name, namespace).get("conditions", []):
        if found["type"] == kind:
            return found  # type: ignore[no-any-return]
    return None


def scale_events(cluster: Cluster, name: str, namespace: str) -> list[dict[str, Any]]:
    events = cluster.get_json(
        "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )
    found = [e for e in events["items"] if e["reason"] in ("ScaledUp", "ScaledDown")]
    return sorted(
        found,
        key=lambda e: (e["metadata"]["creationTimestamp"], int(e["metadata"]["resourceVersion"])),
    )


def demand_lease(
    model: str,
    *,
    pending: int = 1,
    in_flight: int = 0,
    duration: int = 30,
    gateway_pod: str = "siesta-gateway-0",
) -> dict[str, Any]:
    """A gateway's demand Lease (docs/contracts.md), renewed now."""
    now = (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        + f".{int(time.time() * 1e6) % 1_000_000:06d}Z"
    )
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": demand_lease_name(model, gateway_pod),
            "labels": {
                MODEL_LABEL: model,
                "app.kubernetes.io/managed-by": "siesta-gateway",
            },
            "annotations": {
                PENDING_ANNOTATION: str(pending),
                IN_FLIGHT_ANNOTATION: str(in_flight),
            },
        },
        "spec": {
            "holderIdentity": gateway_pod,
            "leaseDurationSeconds": duration,
            "renewTime": now,
        },
    }


__all__ = [
    "A10G",
    "T4",
    "OperatorAccess",
    "OperatorRunner",
    "RunningOperator",
    "condition",
    "demand_lease",
    "get",
    "model_deployment",
    "operator_access",
    "operator_runner",
    "scale_events",
    "status",
    "sts_replicas",
    "wait_for",
]
