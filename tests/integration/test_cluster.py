"""Proof that the test control plane is a real one: scheduling of GPU pods onto fake EKS GPU
nodes, CEL validation of CRDs, RBAC, and the helm/kubectl binaries from the cache."""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.error
import urllib.request
from base64 import b64decode
from typing import Any

import pytest

from localworld.cluster import Cluster, holds, wait_for
from localworld.nodes import (
    POOL_LABEL,
    SIMULATED_GPU_TOLERATIONS,
    SIMULATED_TAINT,
    add_node,
    gpu_node_manifest,
    node_ready,
    remove_node,
)

pytestmark = pytest.mark.cluster

T4 = "Tesla-T4"


def gpu_statefulset(name: str, node_selector: dict[str, str]) -> dict[str, Any]:
    """A one-replica StatefulSet asking for one GPU, like a model server would."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "serviceName": name,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": node_selector,
                    "tolerations": SIMULATED_GPU_TOLERATIONS,
                    "containers": [
                        {
                            "name": "server",
                            "image": "siesta-server:test",
                            "resources": {
                                "requests": {"cpu": "1", "memory": "1Gi"},
                                "limits": {"nvidia.com/gpu": "1"},
                            },
                        }
                    ],
                },
            },
        },
    }


def pod(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for cond in (obj or {}).get("status", {}).get("conditions", []):
        if cond["type"] == kind:
            return cond  # type: ignore[no-any-return]
    return None


def is_ready(obj: dict[str, Any] | None) -> bool:
    cond = condition(obj, "Ready")
    return cond is not None and cond["status"] == "True"


def test_default_fleet_looks_like_eks_gpu_node_groups(cluster: Cluster) -> None:
    nodes = cluster.get_json("nodes")["items"]
    by_pool: dict[str, list[dict[str, Any]]] = {}
    for node in nodes:
        by_pool.setdefault(node["metadata"]["labels"].get("siesta.test/pool", "?"), []).append(node)
    assert by_pool.get("cpu"), "no CPU node"
    for pool, product, memory, instance in [
        ("g4dn", "Tesla-T4", "15360", "g4dn.xlarge"),
        ("g5", "NVIDIA-A10G", "23028", "g5.xlarge"),
    ]:
        node = by_pool[pool][0]
        labels = node["metadata"]["labels"]
        assert labels["nvidia.com/gpu.present"] == "true"
        assert labels["nvidia.com/gpu.product"] == product
        assert labels["nvidia.com/gpu.count"] == "1"
        assert labels["nvidia.com/gpu.memory"] == memory
        assert labels["nvidia.com/gpu.machine"] == instance
        assert labels["node.kubernetes.io/instance-type"] == instance
        assert labels["topology.kubernetes.io/zone"].startswith(
            labels["topology.kubernetes.io/region"]
        )
        assert POOL_LABEL in labels
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "1"
        taints = node["spec"]["taints"]
        assert {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"} in taints
        # kwok plays these nodes: no model pod may land there unless it says so.
        assert SIMULATED_TAINT in taints
        assert is_ready(node), f"{node['metadata']['name']} not Ready"


def test_gpu_statefulset_runs_on_a_t4_node(cluster: Cluster, namespace: str) -> None:
    # The default T4 node's one GPU may be taken by another test of the session: add one
    # more T4 node to the same pool so that a GPU is free, as an autoscaler would.
    extra = add_node(cluster.kubeconfig, gpu_node_manifest(f"{namespace}-t4"[:63], "g4dn"))
    try:
        # Selected by product only; process-kubelet T4 nodes are tainted, so kwok's serve it.
        cluster.apply(gpu_statefulset("t4", {"nvidia.com/gpu.product": T4}), namespace)
        ready = wait_for(
            "pod t4-0 Ready",
            lambda: (p := pod(cluster, namespace, "t4-0")) and is_ready(p) and p,
            timeout=90,
        )
        node = cluster.get_json("node", ready["spec"]["nodeName"])
        assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == T4
        assert node["metadata"]["labels"][POOL_LABEL] == "gpu-g4dn"
    finally:
        cluster.kubectl("delete", "statefulset", "t4", "-n", namespace, "--wait=true")
        remove_node(cluster.kubeconfig, extra)


def test_gpu_pod_pending_until_a_gpu_node_joins(cluster: Cluster, namespace: str) -> None:
    # A node group of this test's own: no node has it yet, as if scaled to zero.
    group = f"gpu-{namespace}"[:63]
    cluster.apply(
        gpu_statefulset("late", {"nvidia.com/gpu.product": T4, POOL_LABEL: group}), namespace
    )
    scheduled = wait_for(
        "PodScheduled=False",
        lambda: condition(pod(cluster, namespace, "late-0"), "PodScheduled"),
        timeout=90,
    )
    assert scheduled["status"] == "False"
    assert scheduled["reason"] == "Unschedulable"

    def still_pending() -> bool:
        still = pod(cluster, namespace, "late-0")
        return bool(
            still and still["status"]["phase"] == "Pending" and not still["spec"].get("nodeName")
        )

    holds("late-0 Pending and unbound while no node of its group exists", still_pending, 2)

    node_name = add_node(
        cluster.kubeconfig, gpu_node_manifest(f"{namespace}-g4dn"[:63], "g4dn", nodegroup=group)
    )
    try:
        ready = wait_for(
            "pod late-0 Ready on the new node",
            lambda: (p := pod(cluster, namespace, "late-0")) and is_ready(p) and p,
            timeout=90,
        )
        assert ready["spec"]["nodeName"] == node_name
    finally:
        cluster.kubectl("delete", "statefulset", "late", "-n", namespace, "--wait=true")
        remove_node(cluster.kubeconfig, node_name)


def test_a_model_pod_never_lands_on_a_simulated_gpu_node(cluster: Cluster, namespace: str) -> None:
    """The README's model (Tesla-T4, no node selector), as the operator renders it: kwok's
    g4dn nodes would report it Ready with a fake address, so they turn it away (their
    taint), and the operator reads the wait as one for a GPU node."""
    from datetime import timedelta

    from siesta.operator import render
    from siesta.operator.observe import WAITING_FOR_GPU, pending_cause
    from siesta.operator.settings import OperatorSettings
    from support.specs import make_spec

    spec = make_spec(model={"uri": "file:///models/m.gguf"}, gpu={"products": [T4]})
    owner = render.Owner(name="readme", namespace=namespace, uid="0")
    settings = OperatorSettings(server_image="siesta-server:test", drain_timeout=timedelta(0))
    sts = render.statefulset(owner, spec, settings)
    sts["metadata"].pop("ownerReferences", None)  # no ModelDeployment here: keep it from the GC
    sts["spec"]["replicas"] = 1  # as the operator scales it on a wake
    extra = add_node(cluster.kubeconfig, gpu_node_manifest(f"{namespace}-t4"[:63], "g4dn"))
    try:
        cluster.apply(sts, namespace)
        scheduled = wait_for(
            "PodScheduled=False",
            lambda: condition(pod(cluster, namespace, "readme-0"), "PodScheduled"),
            timeout=90,
        )
        assert "untolerated taint" in scheduled["message"], scheduled["message"]
        assert pending_cause(scheduled["message"]) == WAITING_FOR_GPU
        holds(
            "readme-0 unbound",
            lambda: not (pod(cluster, namespace, "readme-0") or {})["spec"].get("nodeName"),
            3,
        )
    finally:
        cluster.kubectl("delete", "statefulset", "readme", "-n", namespace, "--wait=true")
        remove_node(cluster.kubeconfig, extra)


def test_node_not_managed_by_kwok_is_left_alone(cluster: Cluster, namespace: str) -> None:
    name = add_node(
        cluster.kubeconfig, gpu_node_manifest(f"{namespace}-proc"[:63], "g5", managed_by_kwok=False)
    )
    try:
        node = cluster.get_json("node", name)
        assert "kwok.x-k8s.io/node" not in node["metadata"]["annotations"]
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "1"
        # kwok would have marked it Ready within a second.
        holds(f"{name} never Ready", lambda: not node_ready(cluster.kubeconfig, name), 3)
    finally:
        remove_node(cluster.kubeconfig, name)


def test_crd_cel_rule_rejects_invalid_objects(cluster: Cluster, namespace: str) -> None:
    group = f"{namespace}.test.siesta.dev"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"ranges.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": "Range", "plural": "ranges", "singular": "range"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "min": {"type": "integer"},
                                        "max": {"type": "integer"},
                                    },
                                    "x-kubernetes-validations": [
                                        {"rule": "self.min <= self.max", "message": "min > max"}
                                    ],
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    cluster.apply(crd)
    try:
        cluster.kubectl(
            "wait", "--for=condition=Established", f"crd/ranges.{group}", "--timeout=60s"
        )

        def obj(name: str, low: int, high: int) -> str:
            return json.dumps(
                {
                    "apiVersion": f"{group}/v1",
                    "kind": "Range",
                    "metadata": {"name": name},
                    "spec": {"min": low, "max": high},
                }
            )

        cluster.kubectl("create", "-n", namespace, "-f", "-", input=obj("good", 1, 3))
        bad = cluster.kubectl(
            "create", "-n", namespace, "-f", "-", input=obj("bad", 5, 3), check=False
        )
        assert bad.returncode != 0
        assert "min > max" in bad.stderr
        assert "Invalid" in bad.stderr
    finally:
        cluster.kubectl("delete", "crd", f"ranges.{group}", "--wait=false", check=False)


def _api_get(cluster: Cluster, path: str, token: str) -> int:
    """GET ``path`` with a bearer token only (no client certificate); the HTTP status."""
    view = cluster.kubectl("config", "view", "--raw", "--minify", "--flatten", "-o", "json")
    config = json.loads(view.stdout)
    ca = b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    context = ssl.create_default_context(cadata=ca)
    request = urllib.request.Request(
        cluster.apiserver + path, headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code


def test_rbac_is_enforced_for_service_account_tokens(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    token = cluster.kubectl(
        "create", "token", "reader", "-n", namespace, "--duration=10m"
    ).stdout.strip()
    pods = f"/api/v1/namespaces/{namespace}/pods"
    assert _api_get(cluster, pods, token) == 403
    assert _api_get(cluster, pods, "not-a-token") == 401

    cluster.kubectl(
        "create", "role", "read-pods", "--verb=list", "--resource=pods", "-n", namespace
    )
    cluster.kubectl(
        "create",
        "rolebinding",
        "reader",
        "--role=read-pods",
        f"--serviceaccount={namespace}:reader",
        "-n",
        namespace,
    )
    wait_for(
        "the RoleBinding to allow listing pods",
        lambda: _api_get(cluster, pods, token) == 200,
        timeout=90,
    )
    assert _api_get(cluster, f"/api/v1/namespaces/{namespace}/secrets", token) == 403


def test_kubectl_and_helm_come_from_the_cache(cluster: Cluster) -> None:
    kubectl = cluster.kubectl("version", "-o", "json")
    versions = json.loads(kubectl.stdout)
    assert versions["clientVersion"]["gitVersion"] == cluster.versions["K8S_VERSION"]
    assert versions["serverVersion"]["gitVersion"] == cluster.versions["K8S_VERSION"]
    helm = subprocess.run(
        [str(cluster.helm_path), "version", "--short"],
        capture_output=True,
        text=True,
        check=True,
        env=cluster.env,
    )
    assert helm.stdout.startswith(cluster.versions["HELM_VERSION"])
