"""Every file under deploy/ is usable: YAML parses, Kubernetes objects are well-formed,
the kustomization's resources exist, and the Prometheus config passes `promtool check config`.

ModelDeployments themselves are validated with the API models in test_examples.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
FILES = sorted(DEPLOY.rglob("*.yaml"))
PROMETHEUS = DEPLOY / "examples" / "prometheus-scrape.yaml"


def documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(DEPLOY)) for p in FILES])
def test_yaml_parses(path: Path) -> None:
    docs = documents(path)
    assert docs, f"{path} is empty"
    if path == PROMETHEUS:
        return
    for doc in docs:
        assert isinstance(doc, dict)
        assert doc.get("apiVersion"), f"{path}: a document without apiVersion"
        assert doc.get("kind"), f"{path}: a document without kind"
        if doc["kind"] not in ("Kustomization", "ClusterConfig"):
            assert doc.get("metadata", {}).get("name"), f"{path}: a {doc['kind']} without a name"


def test_kustomization_resources_exist() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (DEPLOY / resource).exists()


def test_required_examples_exist() -> None:
    names = {p.name for p in FILES}
    for wanted in (
        "t4-office-hours.yaml",
        "a10g-load.yaml",
        "cpu-only.yaml",
        "prometheus-scrape.yaml",
        "application.yaml",
        "siesta.yaml",
        "eksctl-cluster-autoscaler.yaml",
        "karpenter-gpu.yaml",
    ):
        assert wanted in names


def test_cluster_autoscaler_tags_describe_gpu_nodes() -> None:
    """Scale from zero: each GPU node group's ASG tags carry the labels, taint and GPU count."""
    config = yaml.safe_load((DEPLOY / "nodegroups" / "eksctl-cluster-autoscaler.yaml").read_text())
    prefix = "k8s.io/cluster-autoscaler/node-template/"
    gpu_groups = [g for g in config["managedNodeGroups"] if g["name"].startswith("gpu-")]
    assert len(gpu_groups) >= 4
    for group in gpu_groups:
        tags = group["tags"]
        assert group["minSize"] == 0
        assert len(group["availabilityZones"]) == 1  # one zone per group (EBS volumes)
        assert tags[prefix + "resources/nvidia.com/gpu"] == "1"
        assert tags[prefix + "label/nvidia.com/gpu.present"] == "true"
        assert (
            tags[prefix + "label/nvidia.com/gpu.product"]
            == group["labels"]["nvidia.com/gpu.product"]
        )
        assert tags[prefix + "taint/nvidia.com/gpu"] == "true:NoSchedule"


def test_karpenter_pools_declare_the_labels_siesta_selects_on() -> None:
    docs = documents(DEPLOY / "nodegroups" / "karpenter-gpu.yaml")
    pools = [d for d in docs if d["kind"] == "NodePool"]
    assert {
        p["spec"]["template"]["metadata"]["labels"]["nvidia.com/gpu.product"] for p in pools
    } == {
        "Tesla-T4",
        "NVIDIA-A10G",
    }
    for pool in pools:
        assert pool["spec"]["disruption"]["consolidationPolicy"].startswith("WhenEmpty")
        assert pool["spec"]["template"]["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"


def test_prometheus_config_relabels_model_labels() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    servers = next(j for j in config["scrape_configs"] if j["job_name"] == "siesta-model-servers")
    targets = {r.get("target_label"): r.get("source_labels") for r in servers["relabel_configs"]}
    assert targets["modeldeployment"] == ["__meta_kubernetes_pod_label_siesta_dev_modeldeployment"]
    assert targets["namespace"] == ["__meta_kubernetes_namespace"]
    operator = next(j for j in config["scrape_configs"] if j["job_name"] == "siesta-operator")
    assert operator["honor_labels"] is True


def test_promtool_check_config(tmp_path: Path) -> None:
    """`promtool check config`. Debian's Prometheus is built without Kubernetes service
    discovery, so kubernetes_sd_configs are swapped for a static target here (everything else,
    relabeling included, is checked as written) and their fields are checked by hand."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool missing: run `make setup` (Debian package prometheus)")
    config = yaml.safe_load(PROMETHEUS.read_text())
    for job in config["scrape_configs"]:
        for sd in job.pop("kubernetes_sd_configs"):
            assert sd["role"] in {"pod", "endpoints", "service", "node", "endpointslice"}
            assert set(sd) <= {"role", "namespaces", "selectors"}
        job["static_configs"] = [{"targets": ["127.0.0.1:9"]}]
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [promtool, "check", "config", str(checked)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
