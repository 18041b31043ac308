"""Siesta's own images on a real node: `make images`, a cluster with a kubelet, the chart.

``images()`` runs scripts/images.sh (content-cached: seconds when nothing changed) and returns
the references it built. ``start_real_cluster(name)`` starts a control plane of its own with a
real node (kit/cluster/up.sh with SIESTA_REAL_NODE=1: kubelet + containerd, node.sh).
``chart_values(...)`` are the Helm values that install the chart from those local images onto
that node (``values_file`` writes them, ``helm_on`` runs helm against the cluster).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from localworld.cluster import Cluster, start_cluster, stop_cluster
from localworld.helm import helm

ROOT = Path(__file__).resolve().parents[2]
NODE = "real-0"
NODE_SELECTOR = {"siesta.test/kubelet": "real"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def images() -> dict[str, str]:
    """Build (or find cached) Siesta's images; the variables of images.env."""
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "images.sh")],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHON": str(ROOT / ".venv" / "bin" / "python")},
        timeout=3600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"scripts/images.sh exited {result.returncode}:\n{result.stderr}")
    env_file = Path(result.stdout.strip().splitlines()[-1])
    return dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)


@contextmanager
def cluster_env(name: str, *, karpenter: bool = False) -> Iterator[None]:
    """SIESTA_CLUSTER_NAME=name, SIESTA_REAL_NODE=1 (Karpenter only if asked) for the scripts."""
    keys = ("SIESTA_CLUSTER_NAME", "SIESTA_REAL_NODE", "SIESTA_KARPENTER")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["SIESTA_CLUSTER_NAME"] = name
    os.environ["SIESTA_REAL_NODE"] = "1"
    os.environ["SIESTA_KARPENTER"] = "1" if karpenter else "0"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def start_real_cluster(name: str, *, karpenter: bool = False) -> Cluster:
    with cluster_env(name, karpenter=karpenter):
        return start_cluster()


def stop_real_cluster(name: str) -> None:
    with cluster_env(name):
        stop_cluster()


def node_address(cluster: Cluster) -> str:
    node = cluster.get_json("node", NODE)
    for address in node["status"]["addresses"]:
        if address["type"] == "InternalIP":
            return str(address["address"])
    raise AssertionError(f"node {NODE} has no InternalIP: {node['status']['addresses']}")


def api_server_env(cluster: Cluster) -> list[dict[str, str]]:
    """Where pods reach the API server: this machine's address, the API server's port.

    The `kubernetes` Service (10.96.0.1) does route there through kube-proxy, but kwokctl's
    serving certificate names this machine's addresses and not that Service IP, so in-cluster
    clients would reject it; the node's address is in the certificate.
    """
    port = urlparse(cluster.apiserver).port
    return [
        {"name": "KUBERNETES_SERVICE_HOST", "value": node_address(cluster)},
        {"name": "KUBERNETES_SERVICE_PORT", "value": str(port)},
    ]


def chart_values(cluster: Cluster, built: dict[str, str], *, tag: str | None = None) -> Any:
    """Values that run the chart from the local images on the real node."""
    repository, _, image_tag = built["SIESTA_IMAGE"].rpartition(":")
    placement = {"nodeSelector": NODE_SELECTOR, "tolerations": [GPU_TOLERATION]}
    return {
        "image": {"repository": repository, "tag": tag or image_tag, "pullPolicy": "Never"},
        "operator": {
            "serverImage": built["SIESTA_SERVER_IMAGE"],
            # No CUDA build here: the real node's "T4" runs the CPU image, which containerd has
            # imported (the chart's default would be pulled from ghcr.io: a packet off the world).
            "serverCudaImage": built["SIESTA_SERVER_IMAGE"],
            "extraEnv": [
                *api_server_env(cluster),
                {"name": "SIESTA_SERVER_DRAIN_TIMEOUT", "value": "5s"},
            ],
            **placement,
        },
        # A local trial: no API keys, which the chart installs only when asked explicitly.
        "gateway": {
            "auth": "none",
            "replicas": 1,
            "extraEnv": api_server_env(cluster),
            **placement,
        },
    }


def values_file(
    cluster: Cluster, built: dict[str, str], path: Path, *, tag: str | None = None
) -> str:
    """`chart_values` written to `path` for `helm -f`; returns the path."""
    path.write_text(yaml.safe_dump(chart_values(cluster, built, tag=tag)))
    return str(path)


def helm_on(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """helm against `cluster`, with time for `--wait` on a real node."""
    return helm(*args, "--kubeconfig", str(cluster.kubeconfig), env=cluster.env, timeout=600)


def tag_in_node(cluster_name: str, source: str, target: str) -> None:
    """Give an image in the node's containerd a second name (a "new release" for upgrades)."""
    cache = Path(os.environ.get("SIESTA_CACHE", Path.home() / ".cache" / "siesta"))
    socket = cache / "node" / cluster_name / "run" / "containerd.sock"
    ctr = ["ctr", "--address", str(socket), "--namespace", "k8s.io"]
    subprocess.run([*ctr, "images", "rm", target], capture_output=True, check=False)
    subprocess.run([*ctr, "images", "tag", source, target], capture_output=True, check=True)
