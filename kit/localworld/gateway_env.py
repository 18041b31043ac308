"""Helpers shared by gateway tests, e2e tests and benchmarks: CRD, models, slices, metrics."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

from localworld.cluster import Cluster
from localworld.nodes import PROCESS_KUBELET_TOLERATIONS
from siesta.api.contract import API_VERSION, MODEL_LABEL
from siesta.api.crd import render_crd

CRD_NAME = "modeldeployments.siesta.dev"


def install_crd(cluster: Cluster) -> None:
    """Apply the CRD generated from the API models and wait until it is served."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=render_crd())
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")


def model_manifest(
    name: str,
    namespace: str,
    *,
    alias: str | None = None,
    uri: str = "file:///models/tiny.gguf",
    wake_timeout: str = "5m",
    idle_timeout: str | None = None,
    scale_down_delay: str | None = None,
    node_selector: dict[str, str] | None = None,
    max_replicas: int = 1,
    extra_spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    model: dict[str, Any] = {"uri": uri}
    if alias:
        model["alias"] = alias
    scaling: dict[str, Any] = {"wakeTimeout": wake_timeout}
    if idle_timeout:
        scaling["idleTimeout"] = idle_timeout
    if scale_down_delay:
        scaling["scaleDownDelay"] = scale_down_delay
    spec: dict[str, Any] = {
        "model": model,
        "scaling": scaling,
        "replicas": {"min": 0, "max": max_replicas},
        "cache": {"size": "1Gi"},
    }
    if node_selector:
        spec["gpu"] = {
            "count": 1,
            "nodeSelector": node_selector,
            "tolerations": PROCESS_KUBELET_TOLERATIONS,
        }
    spec.update(extra_spec or {})
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def endpoint_slice(
    name: str, namespace: str, address: str, *, port: int = 8080, ready: bool = True
) -> dict[str, Any]:
    """An EndpointSlice for model `name`'s Service, as the controller would publish it."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-{address.replace('.', '-')}",
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": name,
                MODEL_LABEL: name,
                "endpointslice.kubernetes.io/managed-by": "siesta-tests",
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [address], "conditions": {"ready": ready}}],
    }


def demand_leases(cluster: Cluster, namespace: str, model: str) -> list[dict[str, Any]]:
    leases = cluster.get_json("leases", "-n", namespace, "-l", f"{MODEL_LABEL}={model}")
    return list(leases.get("items", []))


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def metric(base_url: str, name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when none)."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    total = 0.0
    pattern = re.compile(rf"^{re.escape(name)}(\{{([^}}]*)\}})? (\S+)$")
    for line in text.splitlines():
        match = pattern.match(line)
        if not match:
            continue
        sample_labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(sample_labels.get(k) == v for k, v in (labels or {}).items()):
            total += float(match.group(3))
    return total


GATEWAY_RBAC = Path(__file__).resolve().parents[2] / "deploy" / "rbac" / "gateway-rbac.yaml"
GATEWAY_ACCOUNT = ("siesta-system", "siesta-gateway")


GATEWAY_LEASE_ROLE = "siesta-gateway-leases"


def gateway_kubeconfig(cluster: Cluster, path: Path) -> Path:
    """Install the gateway's RBAC and return a kubeconfig for its ServiceAccount.

    Its demand-Lease rights (a ClusterRole the chart leaves unbound) are what the operator
    binds per model namespace; tests of the gateway alone have no operator to do so, so the
    role is bound here for the whole test cluster."""
    cluster.kubectl("create", "namespace", GATEWAY_ACCOUNT[0], check=False)
    cluster.kubectl("apply", "-f", str(GATEWAY_RBAC))
    cluster.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{GATEWAY_LEASE_ROLE}-tests"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": GATEWAY_LEASE_ROLE,
            },
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "namespace": GATEWAY_ACCOUNT[0],
                    "name": GATEWAY_ACCOUNT[1],
                }
            ],
        }
    )
    return cluster.service_account_kubeconfig(*GATEWAY_ACCOUNT, path)
