"""Fake nodes shaped like an EKS cluster with GPU node groups, for the test cluster.

The cluster (kit/cluster/up.sh) starts with one CPU pool and two GPU pools. Tests add and
remove GPU nodes at run time with :func:`add_node` / :func:`remove_node`: to the operator
that is exactly what a node autoscaler (cluster-autoscaler, Karpenter) looks like.

How kwok picks the nodes it plays kubelet for: kit/cluster/up.sh starts kwok-controller
with ``--manage-all-nodes=false
--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake``. A node annotated
``kwok.x-k8s.io/node: fake`` gets its status (Ready condition, addresses, lease heartbeats)
and its pods (Running, Ready) from kwok. A node built with ``managed_by_kwok=False`` has no
such annotation: kwok ignores it and its pods, so a test-side "process kubelet" can run
them as local processes and report their status itself.

Standard library only (kubectl through subprocess), so that ``up.sh`` can run
``python3 kit/localworld/nodes.py default-fleet KUBECONFIG`` before any virtualenv exists.
"""

from __future__ import annotations

import os as _os
import sys as _sys

# Run as a script (kit/cluster/up.sh), this folder comes first on sys.path, where a
# module named like a standard one (operator.py) would shadow it: leave the folder out.
if __name__ == "__main__":
    _here = _os.path.dirname(_os.path.abspath(__file__))
    _sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _here]

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_ANNOTATION_VALUE = "fake"
POOL_LABEL = "eks.amazonaws.com/nodegroup"
GPU_RESOURCE = "nvidia.com/gpu"
REGION = "us-east-1"
DEFAULT_ZONE = "us-east-1a"

Manifest = dict[str, Any]

# A GPU node that kwok plays runs nothing: a pod bound there gets a fake address
# (10.0.0.0/16, sealed by kit/cluster/seal.sh) and is reported Ready all the same. Such nodes
# carry this taint, which a model pod never tolerates by default, so a model lands only on
# a node whose kubelet really runs it. Scale tests tolerate it on purpose.
SIMULATED_TAINT = {"key": "siesta.test/simulated", "value": "true", "effect": "NoSchedule"}
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
SIMULATED_TOLERATION = {"key": SIMULATED_TAINT["key"], "operator": "Exists", "effect": "NoSchedule"}
# What a scale test's model (gpu.tolerations) needs to land on a simulated GPU node.
SIMULATED_GPU_TOLERATIONS = [GPU_TOLERATION, SIMULATED_TOLERATION]


@dataclass(frozen=True)
class Pool:
    """An EKS managed node group: one instance type, labels as the GPU Operator sets them."""

    name: str
    instance_type: str
    cpu: str
    memory: str
    gpu_product: str | None = None
    gpu_count: int = 0
    gpu_memory_mib: int = 0
    gpu_family: str = ""

    @property
    def is_gpu(self) -> bool:
        return self.gpu_count > 0


POOLS: dict[str, Pool] = {
    "cpu": Pool(name="cpu", instance_type="m5.xlarge", cpu="4", memory="15896Mi"),
    # g4dn.xlarge: 4 vCPU, 16 GiB, one NVIDIA T4 (16 GB; GFD reports 15360 MiB).
    "g4dn": Pool(
        name="g4dn",
        instance_type="g4dn.xlarge",
        cpu="4",
        memory="15896Mi",
        gpu_product="Tesla-T4",
        gpu_count=1,
        gpu_memory_mib=15360,
        gpu_family="turing",
    ),
    # g5.xlarge: 4 vCPU, 16 GiB, one NVIDIA A10G (24 GB; GFD reports 23028 MiB).
    "g5": Pool(
        name="g5",
        instance_type="g5.xlarge",
        cpu="4",
        memory="15896Mi",
        gpu_product="NVIDIA-A10G",
        gpu_count=1,
        gpu_memory_mib=23028,
        gpu_family="ampere",
    ),
}

# The node group names the default fleet uses for the pool label.
NODEGROUPS = {"cpu": "system", "g4dn": "gpu-g4dn", "g5": "gpu-g5"}


def node_manifest(
    name: str,
    pool: str = "cpu",
    *,
    managed_by_kwok: bool = True,
    zone: str = DEFAULT_ZONE,
    nodegroup: str | None = None,
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
) -> Manifest:
    """A Node object for pool ``pool`` ("cpu", "g4dn" or "g5").

    GPU pools carry the ``nvidia.com/gpu`` capacity, the GPU Operator / GFD labels and the
    ``nvidia.com/gpu:NoSchedule`` taint, plus :data:`SIMULATED_TAINT` when kwok plays the
    node (override with ``taints``; ``[]`` removes them).
    ``nodegroup`` sets the ``eks.amazonaws.com/nodegroup`` label (default: the pool's group),
    which lets a test target a node group of its own.
    """
    spec = POOLS[pool]
    node_labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": spec.instance_type,
        "topology.kubernetes.io/region": REGION,
        "topology.kubernetes.io/zone": zone,
        POOL_LABEL: nodegroup or NODEGROUPS[pool],
        "eks.amazonaws.com/capacityType": "ON_DEMAND",
        "siesta.test/pool": pool,
    }
    capacity = {"cpu": spec.cpu, "memory": spec.memory, "pods": "58", "ephemeral-storage": "80Gi"}
    node_taints: list[dict[str, str]] = []
    if spec.is_gpu:
        node_labels.update(
            {
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": str(spec.gpu_product),
                "nvidia.com/gpu.count": str(spec.gpu_count),
                "nvidia.com/gpu.memory": str(spec.gpu_memory_mib),
                "nvidia.com/gpu.family": spec.gpu_family,
                "nvidia.com/gpu.machine": spec.instance_type,
                "nvidia.com/gpu.deploy.device-plugin": "true",
                "k8s.amazonaws.com/accelerator": "nvidia",
            }
        )
        capacity[GPU_RESOURCE] = str(spec.gpu_count)
        node_taints.append({"key": GPU_RESOURCE, "value": "true", "effect": "NoSchedule"})
        if managed_by_kwok:
            node_taints.append(dict(SIMULATED_TAINT))
    node_labels.update(labels or {})
    annotations = {"node.alpha.kubernetes.io/ttl": "0"}
    if managed_by_kwok:
        annotations[KWOK_ANNOTATION] = KWOK_ANNOTATION_VALUE
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": node_labels, "annotations": annotations},
        "spec": {
            "providerID": f"aws:///{zone}/i-{hashlib.sha256(name.encode()).hexdigest()[:17]}",
            "taints": node_taints if taints is None else taints,
        },
        "status": {"capacity": capacity, "allocatable": dict(capacity)},
    }


def gpu_node_manifest(
    name: str,
    pool: str = "g4dn",
    managed_by_kwok: bool = True,
    **kwargs: Any,
) -> Manifest:
    """A GPU node of pool "g4dn" (1x Tesla-T4) or "g5" (1x NVIDIA-A10G)."""
    if not POOLS[pool].is_gpu:
        raise ValueError(f"{pool!r} is not a GPU pool (choose one of g4dn, g5)")
    return node_manifest(name, pool, managed_by_kwok=managed_by_kwok, **kwargs)


def default_fleet(gpu_nodes_per_pool: int = 1) -> list[Manifest]:
    """What ``make cluster-up`` creates: two CPU nodes and N nodes in each GPU pool."""
    nodes = [node_manifest(f"cpu-{i}", "cpu", zone=f"{REGION}{'ab'[i % 2]}") for i in range(2)]
    for pool in ("g4dn", "g5"):
        nodes += [gpu_node_manifest(f"{pool}-{i}", pool) for i in range(gpu_nodes_per_pool)]
    return nodes


# --- talking to the cluster -------------------------------------------------------------


def find_kubectl() -> str:
    """kubectl from $SIESTA_KUBECTL, else the cluster cache, else PATH."""
    if os.environ.get("SIESTA_KUBECTL"):
        return os.environ["SIESTA_KUBECTL"]
    env_sh = Path(__file__).resolve().parents[1] / "cluster" / "env.sh"
    match = re.search(r"^K8S_VERSION=(\S+)", env_sh.read_text(), re.MULTILINE)
    cache = Path(os.environ.get("SIESTA_CACHE", Path.home() / ".cache" / "siesta"))
    if match and (cache / "cluster" / match.group(1) / "bin" / "kubectl").exists():
        return str(cache / "cluster" / match.group(1) / "bin" / "kubectl")
    found = shutil.which("kubectl")
    if not found:
        raise FileNotFoundError("kubectl not found: run `make cluster-build` or set SIESTA_KUBECTL")
    return found


def _kubectl(kubeconfig: str | os.PathLike[str], *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [find_kubectl(), "--kubeconfig", os.fspath(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def node_ready(kubeconfig: str | os.PathLike[str], name: str) -> bool:
    node = json.loads(_kubectl(kubeconfig, "get", "node", name, "-o", "json"))
    conditions = node.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def add_node(
    kubeconfig: str | os.PathLike[str],
    manifest: Manifest,
    *,
    wait_ready: bool | None = None,
    timeout: float = 60.0,
) -> str:
    """Create (or update) a node, as a node autoscaler's new instance would join.

    Capacity, allocatable and labels are set from the manifest. By default waits until a
    kwok-managed node is Ready; a node not managed by kwok is returned at once (its
    kubelet, if any, reports readiness). Returns the node name.
    """
    name: str = manifest["metadata"]["name"]
    _kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps(manifest))
    # The API server drops a new Node's status on create in some versions; set it explicitly.
    status = {"status": {k: manifest["status"][k] for k in ("capacity", "allocatable")}}
    _kubectl(
        kubeconfig,
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )
    managed = manifest["metadata"].get("annotations", {}).get(KWOK_ANNOTATION) == "fake"
    if wait_ready if wait_ready is not None else managed:
        deadline = time.monotonic() + timeout
        while not node_ready(kubeconfig, name):
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {name} not Ready after {timeout}s")
            time.sleep(0.5)
    return name


def remove_node(
    kubeconfig: str | os.PathLike[str],
    name: str,
    *,
    wait: bool = True,
) -> None:
    """Delete a node, as a scale-down would (pods on it are left to the pod GC)."""
    _kubectl(
        kubeconfig, "delete", "node", name, "--ignore-not-found", f"--wait={str(wait).lower()}"
    )


def main(argv: list[str]) -> int:
    """``nodes.py default-fleet KUBECONFIG [N]``: add the default nodes, wait until Ready."""
    if len(argv) in (2, 3) and argv[0] == "default-fleet":
        per_pool = int(argv[2]) if len(argv) == 3 else 1
        for manifest in default_fleet(per_pool):
            print(f"[cluster] node {add_node(argv[1], manifest)} Ready", file=sys.stderr)
        return 0
    print("usage: nodes.py default-fleet KUBECONFIG [GPU_NODES_PER_POOL]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


# Nodes run by the process kubelet (kit/localworld/process_kubelet.py) carry this taint, so
# that only pods that tolerate it (the full-loop tests' and the demo's models) land there.
PROCESS_KUBELET_TAINT = {"key": "siesta.test/process-kubelet", "effect": "NoSchedule"}
PROCESS_KUBELET_TOLERATIONS = [
    GPU_TOLERATION,
    {"key": "siesta.test/process-kubelet", "operator": "Exists", "effect": "NoSchedule"},
]
