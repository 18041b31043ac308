"""docs/eks.md works as written: every template it fills has its placeholders filled by the
guide's own commands and refused when left in (`siesta placeholders`), the values file
selects only nodes the guide creates, one device-plugin path with its Helm repository, the
Pod Identity trust policy, and an ALB health check the gateway answers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from siesta.cli import main
from siesta.commands.placeholders import PLACEHOLDER, placeholders_left

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "eks.md").read_text()
NODE_CLASS = ROOT / "deploy" / "nodegroups" / "ec2nodeclass-gpu.template.yaml"
TEMPLATES = [
    NODE_CLASS,
    ROOT / "deploy" / "eks" / "models-trust-policy.json",
    ROOT / "deploy" / "eks" / "models-serviceaccount.yaml",
]


def shell_blocks() -> str:
    return "\n".join(re.findall(r"^```sh\n(.*?)^```", GUIDE, re.M | re.S))


def test_the_placeholder_check_refuses_a_template_and_passes_it_filled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["placeholders", str(NODE_CLASS)]) == 1
    refused = capsys.readouterr().err
    role_line = next(
        n for n, line in enumerate(NODE_CLASS.read_text().splitlines(), 1) if "role:" in line
    )
    assert f"{NODE_CLASS}:{role_line}: <KARPENTER_NODE_ROLE> is not filled in" in refused
    assert "<CLUSTER_NAME> is not filled in" in refused
    filled = tmp_path / "ec2nodeclass-gpu.yaml"
    filled.write_text(
        NODE_CLASS.read_text()
        .replace("<CLUSTER_NAME>", "clinic")
        .replace("<KARPENTER_NODE_ROLE>", "KarpenterNodeRole-clinic")
    )
    assert main(["placeholders", str(filled)]) == 0
    assert capsys.readouterr().out == f"{filled}: no placeholders left\n"
    manifest = yaml.safe_load(filled.read_text())
    assert manifest["spec"]["role"] == "KarpenterNodeRole-clinic"
    # One file left unfilled among several still fails the check.
    assert main(["placeholders", str(filled), str(NODE_CLASS)]) == 1


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: path.name)
def test_the_guide_fills_every_placeholder_and_checks(template: Path) -> None:
    commands = shell_blocks()
    relative = str(template.relative_to(ROOT))
    assert relative in commands, f"docs/eks.md never fills {relative}"
    wanted = {placeholder for _, placeholder in placeholders_left(template.read_text())}
    assert wanted, f"{relative} is a template without placeholders"
    substituted = set(re.findall(r"s([|/])(<[A-Z][A-Z0-9_]*>)\1", commands))
    assert wanted <= {placeholder for _, placeholder in substituted}
    assert "siesta placeholders" in commands


def test_the_nodepools_use_the_node_class_of_the_template() -> None:
    node_class = yaml.safe_load(NODE_CLASS.read_text())
    assert node_class["kind"] == "EC2NodeClass"
    pools = [
        doc
        for doc in yaml.safe_load_all((ROOT / "deploy/nodegroups/karpenter-gpu.yaml").read_text())
        if doc
    ]
    assert {doc["kind"] for doc in pools} == {"NodePool"}, "the NodeClass lives in the template"
    for pool in pools:
        assert (
            pool["spec"]["template"]["spec"]["nodeClassRef"]["name"]
            == node_class["metadata"]["name"]
        )


def node_selectors(values: Any) -> list[dict[str, str]]:
    if isinstance(values, dict):
        found = [values["nodeSelector"]] if isinstance(values.get("nodeSelector"), dict) else []
        return found + [s for v in values.values() for s in node_selectors(v)]
    if isinstance(values, list):
        return [s for v in values for s in node_selectors(v)]
    return []


def test_the_values_file_selects_only_nodes_the_guide_creates() -> None:
    values = yaml.safe_load((ROOT / "charts/siesta/ci/eks-values.yaml").read_text())
    pools = [
        doc
        for doc in yaml.safe_load_all((ROOT / "deploy/nodegroups/karpenter-gpu.yaml").read_text())
        if doc
    ]
    created = [pool["spec"]["template"]["metadata"]["labels"] for pool in pools]
    for selector in node_selectors(values):
        assert any(selector.items() <= labels.items() for labels in created), selector


def test_one_device_plugin_path_with_its_helm_repository() -> None:
    commands = shell_blocks()
    repo = commands.index("helm repo add nvidia ")
    install = commands.index("helm install gpu-operator nvidia/gpu-operator")
    assert repo < install
    assert "--set driver.enabled=false" in commands[install:]
    assert "--set toolkit.enabled=false" in commands[install:]
    assert "--install-nvidia-plugin=false" in GUIDE  # eksctl's own plugin, if used


def test_pod_identity_trust_policy() -> None:
    policy = json.loads((ROOT / "deploy/eks/models-pod-identity-trust-policy.json").read_text())
    (statement,) = policy["Statement"]
    assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert set(statement["Action"]) == {"sts:AssumeRole", "sts:TagSession"}
    assert "deploy/eks/models-pod-identity-trust-policy.json" in shell_blocks()


def test_the_load_balancer_checks_a_path_the_gateway_serves_without_a_key() -> None:
    values = yaml.safe_load((ROOT / "charts/siesta/ci/eks-values.yaml").read_text())
    path = values["gateway"]["ingress"]["annotations"]["alb.ingress.kubernetes.io/healthcheck-path"]
    gateway_doc = (ROOT / "docs" / "gateway.md").read_text()
    assert f"`GET {path}`" in gateway_doc
    assert re.search(rf"`{re.escape(path)}` need no key", gateway_doc)


def test_placeholders_are_upper_case_in_angle_brackets() -> None:
    assert PLACEHOLDER.fullmatch("<CLUSTER_NAME>")
    assert not PLACEHOLDER.search("<none>")  # ordinary text, e.g. in comments, is not one
