"""Karpenter in the test cluster and in the simulator, without a cluster.

The NodePools tested are the documented ones; the instance types Karpenter is given are the
ones (and prices) the simulator knows; the GPU Feature Discovery stand-in labels a node as
the static GPU nodes are labelled; the simulator's Karpenter world removes an empty node
after consolidateAfter plus Karpenter's own latency, with no cluster-wide pause after an add.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from localworld.karpenter import BRIDGE_NODEPOOL_DOC, documented_manifests, kwok_nodepools
from localworld.karpenter_nodes import GPU_PENDING_TAINT, gfd_labels, registered_resources
from localworld.nodes import gpu_node_manifest
from siesta.api.models import ModelDeploymentSpec
from siesta.sim.bridge import CPU_INSTANCE_PRICES
from siesta.sim.engine import Simulation
from siesta.sim.traces import Trace, TraceRequest
from siesta.sim.world import (
    INSTANCE_PRICES,
    KARPENTER_CONSOLIDATION_LATENCY_SECONDS,
    World,
)

ROOT = Path(__file__).resolve().parents[2]
INSTANCE_TYPES = ROOT / "kit" / "cluster" / "karpenter" / "instance-types.json"
T0 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)


def test_the_tested_nodepools_are_the_documented_ones_with_kwok_class_and_startup_taint() -> None:
    documented = {
        m["metadata"]["name"]: m for m in documented_manifests() if m["kind"] == "NodePool"
    }
    node_class, *pools = kwok_nodepools()

    assert node_class["kind"] == "KWOKNodeClass"
    assert {p["metadata"]["name"] for p in pools} == set(documented) == {"gpu-t4", "gpu-a10g"}
    for pool in pools:
        original = documented[pool["metadata"]["name"]]
        assert pool["spec"]["template"]["spec"]["nodeClassRef"] == {
            "group": "karpenter.kwok.sh",
            "kind": "KWOKNodeClass",
            "name": node_class["metadata"]["name"],
        }
        # No pod before the GPU Operator stand-in has run (see kwok_nodepools).
        assert pool["spec"]["template"]["spec"]["startupTaints"] == [GPU_PENDING_TAINT]
        # Everything else exactly as documented.
        del pool["spec"]["template"]["spec"]["startupTaints"]
        del pool["spec"]["template"]["spec"]["nodeClassRef"]
        del original["spec"]["template"]["spec"]["nodeClassRef"]
        assert pool == original


def test_karpenter_gets_every_documented_instance_type_at_the_simulators_prices() -> None:
    types = {t["name"]: t for t in json.loads(INSTANCE_TYPES.read_text())}
    documented = {
        value
        for m in [*documented_manifests(), yaml.safe_load(BRIDGE_NODEPOOL_DOC.read_text())]
        if m["kind"] == "NodePool"
        for r in m["spec"]["template"]["spec"]["requirements"]
        if r["key"] == "node.kubernetes.io/instance-type"
        for value in r["values"]
    }
    prices = INSTANCE_PRICES | {
        t: CPU_INSTANCE_PRICES[t] for t in types if t not in INSTANCE_PRICES
    }
    assert set(types) == documented == set(prices)
    for name, item in types.items():
        # GPU types carry one GPU; the CPU bridge pool's types (sim.bridge's prices) none.
        assert item["resources"].get("nvidia.com/gpu") == ("1" if name in INSTANCE_PRICES else None)
        zones = set()
        for offering in item["offerings"]:
            assert offering["Price"] == prices[name]
            keys = {r["key"]: r["values"] for r in offering["Requirements"]}
            assert keys["karpenter.sh/capacity-type"] == ["on-demand"]
            zones.update(keys["topology.kubernetes.io/zone"])
        assert zones == {"us-east-1a", "us-east-1b"}


def test_gpu_feature_discovery_stand_in_labels_like_the_static_gpu_nodes() -> None:
    for instance_type, pool in (("g4dn.2xlarge", "g4dn"), ("g5.xlarge", "g5")):
        static = gpu_node_manifest("n", pool)["metadata"]["labels"]
        labels = gfd_labels(instance_type)
        assert labels["nvidia.com/gpu.machine"] == instance_type
        del labels["nvidia.com/gpu.machine"]
        assert labels == {k: v for k, v in static.items() if k in labels}
        assert labels["nvidia.com/gpu.present"] == "true"
    assert gfd_labels("g4dn.xlarge")["nvidia.com/gpu.product"] == "Tesla-T4"
    assert gfd_labels("g5.2xlarge")["nvidia.com/gpu.product"] == "NVIDIA-A10G"
    assert gfd_labels("m5.large") == {}


def test_a_kubelet_registers_without_gpus_until_the_device_plugin_runs() -> None:
    allocatable = {"cpu": "3900m", "memory": "16374Mi", "nvidia.com/gpu": "1", "pods": "29"}
    assert registered_resources(allocatable) == {
        "cpu": "3900m",
        "memory": "16374Mi",
        "pods": "29",
        "nvidia.com/gpu": None,  # merge patch: removed
    }


def _spec() -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {
            "model": {"uri": "https://models.example.com/m.gguf"},
            "gpu": {"products": ["Tesla-T4"]},
            "replicas": {"min": 0, "max": 1},
            "scaling": {"idleTimeout": "1m", "scaleDownDelay": "0s", "wakeTimeout": "10m"},
        }
    )


def test_karpenter_world_removes_an_empty_node_after_consolidate_after_and_its_latency() -> None:
    world = World(autoscaler="karpenter", consolidate_after_seconds=60).resolve(_spec())
    assert world.node_unneeded_seconds == 60 + KARPENTER_CONSOLIDATION_LATENCY_SECONDS
    assert world.scale_down_delay_after_add_seconds == 0
    # cluster-autoscaler's settings do not apply to Karpenter.
    ignored = World(autoscaler="karpenter", node_unneeded_seconds=5).resolve(_spec())
    assert ignored.node_unneeded_seconds == world.node_unneeded_seconds
    assert World().resolve(_spec()).autoscaler == "cluster-autoscaler"


def test_with_karpenter_a_node_added_for_another_pod_does_not_delay_a_removal() -> None:
    # Two requests 10 minutes apart: with cluster-autoscaler the second node's arrival
    # would hold back removals for scale-down-delay-after-add; Karpenter has no such pause.
    trace = Trace(
        (TraceRequest(T0 + timedelta(seconds=60), 1.0), TraceRequest(T0 + timedelta(hours=1), 1.0))
    )
    world = World(
        autoscaler="karpenter",
        consolidate_after_seconds=60,
        consolidation_latency_seconds=20,
        node_provision_seconds=30,
        model_load_seconds=10,
    ).resolve(_spec())
    result = Simulation(_spec(), world, trace, T0, T0 + timedelta(hours=2)).run()
    first = result.nodes[0]
    assert first.removed is not None
    assert first.requested == T0 + timedelta(seconds=60)
    # Ready at +40 s, served, idle for 1 m, scaled to zero, then 60 + 20 s to removal.
    pod = result.pods[0]
    assert pod.removed is not None
    assert first.removed == pod.removed + timedelta(seconds=80)
