"""Karpenter in the test cluster: the documented NodePools, the node agent, what happened.

Karpenter itself (its kwok provider, built from Go modules) runs with the control plane
(kit/cluster/karpenter.sh). The NodePools are those of deploy/nodegroups/karpenter-gpu.yaml,
read from that file, with one change: the nodes' class is a ``KWOKNodeClass`` instead of
the ``EC2NodeClass`` (:func:`kwok_nodepools`). So the documented pools are the ones tested.

Nodes Karpenter creates get a process kubelet and a GPU Feature Discovery stand-in from
kit/localworld/karpenter_nodes.py (:func:`start_node_agent`).
"""

from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from localworld.cluster import Cluster, wait_for
from localworld.full_loop import Loop, running_loop
from localworld.karpenter_nodes import GPU_PENDING_TAINT, NODEPOOL_LABEL, read_events
from localworld.karpenter_nodes import command as agent_command
from localworld.operator_env import OperatorRunner
from localworld.procs import Proc, start

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "kit"
NODEPOOLS_DOC = ROOT / "deploy" / "nodegroups" / "karpenter-gpu.yaml"
BRIDGE_NODEPOOL_DOC = ROOT / "deploy" / "nodegroups" / "karpenter-cpu-bridge.yaml"
NODE_CLASS = "siesta-kwok"
# Karpenter's own label on its nodes' capacity type: static (node-group) nodes lack it, so
# a pod that selects it runs on capacity Karpenter launches.
KARPENTER_CAPACITY = {"karpenter.sh/capacity-type": "on-demand"}
Manifest = dict[str, Any]


def documented_manifests() -> list[Manifest]:
    return [m for m in yaml.safe_load_all(NODEPOOLS_DOC.read_text()) if m]


def kwok_nodepools(node_class: str = NODE_CLASS, registration_delay: str = "1s") -> list[Manifest]:
    """The documented NodePools with a KWOKNodeClass in place of the EC2NodeClass, first.

    One more change: a startup taint (:data:`GPU_PENDING_TAINT`). A real node's kubelet
    registers it without GPUs, so no GPU pod can land before the device plugin runs; the kwok
    provider instead creates the Node with the GPUs already allocatable, and the node agent
    takes them away only a moment later. The startup taint (which Karpenter puts on the
    node as it registers, and leaves out of its scheduling) closes that moment: the agent's
    GPU Operator stand-in removes it once the GPUs are labelled and allocatable."""
    out: list[Manifest] = [
        {
            "apiVersion": "karpenter.kwok.sh/v1alpha1",
            "kind": "KWOKNodeClass",
            "metadata": {"name": node_class},
            # The provider creates the Node object this long after the NodeClaim (EC2 launch).
            "spec": {"nodeRegistrationDelay": registration_delay},
        }
    ]
    for manifest in documented_manifests():
        if manifest["kind"] != "NodePool":
            continue
        pool = copy.deepcopy(manifest)
        template = pool["spec"]["template"]["spec"]
        template["nodeClassRef"] = {
            "group": "karpenter.kwok.sh",
            "kind": "KWOKNodeClass",
            "name": node_class,
        }
        template["startupTaints"] = [GPU_PENDING_TAINT]
        out.append(pool)
    return out


def kwok_bridge_nodepool(node_class: str = NODE_CLASS) -> Manifest:
    """The documented CPU bridge pool with the KWOKNodeClass; no startup taint: a CPU node
    is ready once its kubelet runs."""
    pool: Manifest = yaml.safe_load(BRIDGE_NODEPOOL_DOC.read_text())
    pool["spec"]["template"]["spec"]["nodeClassRef"] = {
        "group": "karpenter.kwok.sh",
        "kind": "KWOKNodeClass",
        "name": node_class,
    }
    return pool


def nodepool(name: str) -> Manifest:
    """One documented NodePool as written in the docs."""
    for manifest in documented_manifests():
        if manifest["kind"] == "NodePool" and manifest["metadata"]["name"] == name:
            return manifest
    raise KeyError(name)


def karpenter_nodes(cluster: Cluster) -> list[Manifest]:
    return list(cluster.get_json("nodes", "-l", NODEPOOL_LABEL).get("items", []))


def nodeclaims(cluster: Cluster) -> list[Manifest]:
    return list(cluster.get_json("nodeclaims.karpenter.sh").get("items", []))


def parse_time(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@dataclass
class NodeAgent:
    proc: Proc
    events_path: Path

    def events(self, node: str | None = None) -> list[dict[str, Any]]:
        return [e for e in read_events(self.events_path) if node is None or e["node"] == node]

    def event_time(self, node: str, event: str) -> float | None:
        for item in self.events(node):
            if item["event"] == event:
                return float(item["time"])
        return None


def start_node_agent(
    cluster: Cluster, log_dir: Path, model_dir: Path, gpu_delay: float = 3.0
) -> NodeAgent:
    events = log_dir / "node-events.jsonl"
    argv = agent_command(cluster.kubeconfig, log_dir, {"/models": model_dir}, gpu_delay, events)
    env = {"PYTHONPATH": os.pathsep.join([str(KIT), os.environ.get("PYTHONPATH", "")])}
    proc = start("karpenter-nodes", argv, env=env, log_dir=log_dir)
    wait_for("the node agent watching", lambda: "watching" in proc.log_tail(5) or _dead(proc), 30)
    return NodeAgent(proc, events)


def _dead(proc: Proc) -> bool:
    if not proc.alive():
        raise RuntimeError(f"karpenter node agent exited:\n{proc.log_tail()}")
    return False


def apply_nodepools(cluster: Cluster) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "List", "items": kwok_nodepools()})


def apply_bridge_nodepool(cluster: Cluster) -> None:
    """The CPU pool bridges land on (deploy/nodegroups/karpenter-cpu-bridge.yaml)."""
    cluster.apply(kwok_bridge_nodepool())


def delete_nodepools(cluster: Cluster, timeout: float = 120) -> None:
    """Delete the NodePools; Karpenter then removes their nodes (waited for)."""
    for manifest in [*kwok_nodepools()[1:], kwok_bridge_nodepool()]:
        cluster.kubectl(
            "delete", "nodepool", manifest["metadata"]["name"], "--ignore-not-found", "--wait=false"
        )
    wait_for("Karpenter's nodes gone", lambda: not karpenter_nodes(cluster), timeout)


@pytest.fixture(scope="module")
def karpenter(
    cluster: Cluster, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeAgent]:
    """The documented NodePools applied and the node agent running, for one test module.

    Not longer: with NodePools in place Karpenter would launch nodes for any other test's
    pod that is Pending for a T4 or an A10G."""
    log_dir = tmp_path_factory.mktemp("karpenter")
    crd = cluster.kubectl("get", "crd", "nodepools.karpenter.sh", check=False)
    if crd.returncode != 0:
        pytest.fail("Karpenter is not installed: the cluster was started with SIESTA_KARPENTER=0")
    agent = start_node_agent(cluster, log_dir, model_dir)
    apply_nodepools(cluster)
    yield agent
    try:
        delete_nodepools(cluster)
    finally:
        agent.proc.stop(grace=30)


class Recorder:
    """Polls pods (of one namespace) and Karpenter's nodes 10 times a second, in a thread,
    and keeps the first time (unix seconds) each milestone was seen: ``pod:<uid>:created``,
    ``:bound``, ``:running``, ``:ready``, ``:gone`` and ``node:<name>:seen``, ``:gone``.
    Far finer than the API's one-second timestamps. Pods are keyed by uid: a StatefulSet
    reuses its pods' names."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.times: dict[str, float] = {}
        self.nodes: dict[str, dict[str, str]] = {}  # name -> labels
        self.pod_nodes: dict[str, str] = {}  # uid -> node
        self.pod_created: dict[str, float] = {}  # uid -> first seen, in order
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Recorder:
        self._poll()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def first(self, key: str) -> float | None:
        return self.times.get(key)

    def first_pod_on(self, node: str) -> str | None:
        """The uid of the first pod bound to `node`."""
        on = [uid for uid, name in self.pod_nodes.items() if name == node]
        return min(on, key=lambda uid: self.times[f"pod:{uid}:bound"], default=None)

    def _mark(self, key: str, at: float) -> None:
        self.times.setdefault(key, at)

    def _poll(self) -> None:
        now = time.time()
        live = set()
        for pod in self.core.list_namespaced_pod(self.namespace).items:
            uid = pod.metadata.uid
            live.add(uid)
            self._mark(f"pod:{uid}:created", now)
            self.pod_created.setdefault(uid, now)
            if pod.spec.node_name:
                self._mark(f"pod:{uid}:bound", now)
                self.pod_nodes[uid] = pod.spec.node_name
            for status in pod.status.container_statuses or []:
                if status.state and status.state.running:
                    self._mark(f"pod:{uid}:running", now)
            for condition in pod.status.conditions or []:
                if condition.type == "Ready" and condition.status == "True":
                    self._mark(f"pod:{uid}:ready", now)
        for uid in set(self.pod_created) - live:
            self._mark(f"pod:{uid}:gone", now)
        names = set()
        for node in self.core.list_node(label_selector=NODEPOOL_LABEL).items:
            name = node.metadata.name
            names.add(name)
            self.nodes[name] = dict(node.metadata.labels or {})
            self._mark(f"node:{name}:seen", now)
        for name in set(self.nodes) - names:
            self._mark(f"node:{name}:gone", now)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self._poll()
            except Exception:  # a failed poll is retried on the next tick
                continue


@pytest.fixture
def karpenter_loop(
    cluster: Cluster,
    namespace: str,
    operator_runner: OperatorRunner,
    gateway_access: Path,
    karpenter: NodeAgent,
    tmp_path: Path,
) -> Iterator[Loop]:
    """The full loop (kit/localworld/full_loop.py) with GPU nodes that Karpenter launches."""
    with running_loop(
        cluster, namespace, operator_runner, gateway_access, tmp_path / "logs"
    ) as running:
        yield running


def gpu_spec(product: str) -> dict[str, Any]:
    """spec.gpu of a model that runs on a node Karpenter launches for `product`."""
    return {"count": 1, "products": [product], "nodeSelector": dict(KARPENTER_CAPACITY)}
