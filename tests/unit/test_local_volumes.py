"""The local world's volume provisioning (kit/localworld/local_provisioner.py), without a cluster.

The real node's provisioner pins a volume to its node; the Karpenter node agent pins its
nodes' volumes to their zone, as EBS does, so a claim kept while the model sleeps (the cache,
`whenScaled: Retain`) still binds once Karpenter has replaced the node. Each provisioner
reclaims only the directories under its own root.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from localworld.local_provisioner import (
    PROVISIONER,
    SELECTED_NODE,
    make_directory,
    released_directory,
    selected_node,
    volume_for,
    wants_volume,
)
from localworld.process_kubelet import KubeletConfig, map_path


def claim(*, node: str | None = "kwok-gpu-t4-abc", phase: str = "Pending") -> dict[str, Any]:
    annotations = {"volume.kubernetes.io/storage-provisioner": PROVISIONER}
    if node:
        annotations[SELECTED_NODE] = node
    return {
        "metadata": {
            "name": "model-cache-reception-7b-0",
            "namespace": "ai",
            "uid": "0f1e2d3c",
            "annotations": annotations,
        },
        "spec": {"resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": phase},
    }


def affinity(volume: dict[str, Any]) -> list[tuple[str, list[str]]]:
    terms = volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    return [(e["key"], e["values"]) for term in terms for e in term["matchExpressions"]]


def test_a_karpenter_nodes_volume_is_zonal_and_the_real_nodes_is_pinned_to_it() -> None:
    on_karpenter = volume_for(claim(), "kwok-gpu-t4-abc", Path("/v/x"), zone="us-east-1b")
    on_real_node = volume_for(claim(node="real-0"), "real-0", Path("/v/y"))

    assert affinity(on_karpenter) == [("topology.kubernetes.io/zone", ["us-east-1b"])]
    assert affinity(on_real_node) == [("kubernetes.io/hostname", ["real-0"])]
    assert on_karpenter["spec"]["claimRef"]["name"] == "model-cache-reception-7b-0"
    assert on_karpenter["spec"]["hostPath"] == {"path": "/v/x", "type": "Directory"}
    assert on_karpenter["spec"]["capacity"] == {"storage": "1Gi"}


def test_only_a_pending_unbound_claim_of_our_class_names_its_node() -> None:
    assert selected_node(claim()) == "kwok-gpu-t4-abc"
    assert wants_volume(claim(), "kwok-gpu-t4-abc")
    assert not wants_volume(claim(), "real-0")
    assert selected_node(claim(node=None)) is None  # not scheduled yet
    assert selected_node(claim(phase="Bound")) is None
    other = claim()
    other["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"] = "ebs.csi.aws.com"
    assert selected_node(other) is None
    bound = claim()
    bound["spec"]["volumeName"] = "pvc-0f1e2d3c"
    assert selected_node(bound) is None


def test_a_provisioner_reclaims_only_released_volumes_under_its_own_root(tmp_path: Path) -> None:
    mine, theirs = tmp_path / "agent", tmp_path / "real-0"
    directory = make_directory(mine, claim())
    assert directory.stat().st_mode & 0o777 == 0o777  # pods run as non-root, no fsGroup

    def volume(path: Path, phase: str) -> dict[str, Any]:
        made = volume_for(claim(), "n", path, zone="z")
        made["status"] = {"phase": phase}
        return made

    assert released_directory(volume(directory, "Released"), mine) == directory
    assert released_directory(volume(directory, "Bound"), mine) is None
    assert released_directory(volume(theirs / "pvc-1", "Released"), mine) is None
    foreign = volume(directory, "Released")
    foreign["metadata"]["annotations"] = {"pv.kubernetes.io/provisioned-by": "ebs.csi.aws.com"}
    assert released_directory(foreign, mine) is None


def test_a_process_kubelets_pod_sees_its_claims_directory_before_the_path_map() -> None:
    # The cache is mounted at /models, where the demo's --path-map also points file:// models:
    # a claim's volume wins (the download lands in it), an emptyDir does not.
    config = KubeletConfig("n", 1, Path("/bin/true"), Path("/logs"), [("/models", "/srv/gguf")])
    volume = {"/models": Path("/volumes/pvc-1")}

    assert map_path("/models", config, volume, claimed=volume) == "/volumes/pvc-1"
    assert map_path("file:///models/a.gguf", config, volume) == "/srv/gguf/a.gguf"
    assert map_path("/tmp/x", config, {"/tmp": Path("/pod/tmp")}) == "/pod/tmp/x"
    assert map_path("http://host/a.gguf", config, volume, claimed=volume) == "http://host/a.gguf"
