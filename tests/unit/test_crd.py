"""The CRD is generated from the models, structural, and in sync with crds/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from siesta.api.crd import crd_manifest, render_crd

REPO = Path(__file__).resolve().parents[2]


def walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    nodes: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        nodes.append((path, node))
        for key, value in node.get("properties", {}).items():
            nodes += walk(value, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            nodes += walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            nodes += walk(node["additionalProperties"], f"{path}{{}}")
    return nodes


def schema() -> dict[str, Any]:
    version = crd_manifest()["spec"]["versions"][0]
    return dict(version["schema"]["openAPIV3Schema"])


def test_committed_crd_matches_the_models() -> None:
    committed = (REPO / "crds" / "siesta.dev_modeldeployments.yaml").read_text()
    assert committed == render_crd(), "crds/ is stale: run `siesta crds --output-dir crds`"


def test_schema_is_structural() -> None:
    for path, node in walk(schema()):
        assert "$ref" not in node, path
        assert "anyOf" not in node or node.get("x-kubernetes-int-or-string"), path
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        assert "title" not in node, path
        assert "const" not in node, path
        assert not ("properties" in node and "additionalProperties" in node), path


def test_quantities_are_int_or_string() -> None:
    nodes = dict(walk(schema()))
    assert nodes[".spec.cache.size"]["x-kubernetes-int-or-string"] is True
    assert nodes[".spec.server.resources.limits{}"]["x-kubernetes-int-or-string"] is True


def test_cel_rules_are_present() -> None:
    rules = [
        rule["rule"]
        for _, node in walk(schema())
        for rule in node.get("x-kubernetes-validations", [])
    ]
    assert any(rule.endswith("self.min <= self.max") for rule in rules)
    assert "has(self.end) != has(self.duration)" in rules
    assert any("duration(self.idleTimeout) > duration('0s')" in rule for rule in rules)
    assert any(rule.startswith("self.matches('^([0-9A-Za-z*/,?#-]+") for rule in rules)


def test_subresources_and_printer_columns() -> None:
    version = crd_manifest()["spec"]["versions"][0]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.manualReplicas"
    assert [column["name"] for column in version["additionalPrinterColumns"]] == [
        "Min",
        "Max",
        "Desired",
        "Ready",
        "Phase",
        "Cost",
        "Reason",
        "Wake",
        "Bridge",
        "Age",
    ]


def test_defaults_reach_nested_fields() -> None:
    nodes = dict(walk(schema()))
    assert nodes[".spec.replicas"]["default"] == {}
    assert nodes[".spec.replicas.max"]["default"] == 1
    assert nodes[".spec.scaling.scaleDownDelay"]["default"] == "5m"
    assert "default" not in nodes[".spec.scaling.metric"]


def test_rendered_yaml_round_trips() -> None:
    assert yaml.safe_load(render_crd()) == crd_manifest()
