"""Generate the ModelDeployment CustomResourceDefinition from the pydantic models.

Kubernetes needs a *structural* OpenAPI v3 schema: no $ref, no anyOf with null, every
node typed, int-or-string marked as such. Pydantic emits JSON Schema 2020-12, so this
module rewrites one into the other; CEL rules pass through from `json_schema_extra`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from siesta.api.contract import GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION
from siesta.api.models import BRIDGE_SUFFIX, ModelDeploymentSpec, ModelDeploymentStatus, cel

Schema = dict[str, Any]

PRINTER_COLUMNS = [
    {"name": "Min", "type": "integer", "jsonPath": ".spec.replicas.min"},
    {"name": "Max", "type": "integer", "jsonPath": ".spec.replicas.max"},
    {"name": "Desired", "type": "integer", "jsonPath": ".status.desiredReplicas"},
    {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {
        "name": "Cost",
        "type": "string",
        "jsonPath": ".status.cost.summary",
        "description": "This week's GPU spend and what it saved against always-on (USD).",
    },
    {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 0},
    {
        "name": "Wake",
        "type": "string",
        "jsonPath": ".status.lastWake.summary",
        "description": "The last start: seconds from scale-up to Ready, the longest stages.",
    },
    {
        "name": "Bridge",
        "type": "string",
        "jsonPath": ".status.bridge.state",
        "description": "The CPU bridge's state (docs/bridge.md), for models that have one.",
        "priority": 1,
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

# Rules on the whole object: at the root, CEL may read metadata.name (and nothing else of
# metadata). A model's CPU bridge is named "<model>-bridge" (contract.bridge_name): a model
# of that name could collide with another model's bridge.
ROOT_RULES = [
    cel(
        f"!self.metadata.name.endsWith('{BRIDGE_SUFFIX}')",
        f"a ModelDeployment's name cannot end in {BRIDGE_SUFFIX}: that is the name of a "
        "model's CPU bridge",
    )
]

_DROPPED_KEYS = {"title", "discriminator"}


def _inline(node: Any, defs: dict[str, Schema]) -> Any:
    """Replace every $ref with the definition it points to (recursively)."""
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].split("/")[-1]]
        merged = {**_inline(target, defs), **{k: v for k, v in node.items() if k != "$ref"}}
        return _inline(merged, defs)
    return {key: _inline(value, defs) for key, value in node.items() if key != "$defs"}


def _structural(node: Schema) -> Schema:
    """Rewrite one inlined JSON Schema node into a structural OpenAPI v3 node."""
    node = {k: v for k, v in node.items() if k not in _DROPPED_KEYS}
    variants = node.pop("anyOf", None)
    if variants is not None:
        non_null = [v for v in variants if v.get("type") != "null"]
        types = {v.get("type") for v in non_null}
        if types == {"integer", "string"}:
            node["x-kubernetes-int-or-string"] = True
        elif len(non_null) == 1:
            extra_rules = node.pop("x-kubernetes-validations", [])
            merged = {**non_null[0], **node}
            rules = non_null[0].get("x-kubernetes-validations", []) + extra_rules
            if rules:
                merged["x-kubernetes-validations"] = rules
            node = merged
        else:
            raise ValueError(f"cannot express anyOf {variants} in a structural schema")
        if node.get("default", "absent") is None:
            del node["default"]
            node["_optional"] = True
    node = {k: v for k, v in node.items() if k not in _DROPPED_KEYS}
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    if "exclusiveMinimum" in node:
        node["minimum"] = node.pop("exclusiveMinimum")
        node["exclusiveMinimum"] = True
    if node.get("additionalProperties") is True:
        # A free-form part of a Kubernetes object (an EnvVar's valueFrom, a volume source):
        # the API server checks it when the StatefulSet is written.
        node["x-kubernetes-preserve-unknown-fields"] = True
        node["type"] = "object"
        del node["additionalProperties"]
    if "properties" in node:
        node["type"] = "object"
        node["properties"] = {k: _structural(v) for k, v in node["properties"].items()}
        required = set(node.get("required", []))
        for name, child in node["properties"].items():
            optional = child.pop("_optional", False)
            # Nested sections default to {} so their own defaults apply on the server.
            if (
                name not in required
                and not optional
                and child.get("type") == "object"
                and "properties" in child
                and not child.get("required")
                and "default" not in child
            ):
                child["default"] = {}
        node.pop("additionalProperties", None)
    elif isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _structural(node["additionalProperties"])
    if "items" in node:
        node["items"] = _structural(node["items"])
        node["items"].pop("_optional", None)
    return node


def openapi_schema(model: type[Any]) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _structural(_inline(raw, raw.get("$defs", {})))


def crd_manifest() -> dict[str, Any]:
    spec_schema = openapi_schema(ModelDeploymentSpec)
    status_schema = openapi_schema(ModelDeploymentStatus)
    spec_schema["description"] = (
        "Desired state of a model: what to run, where, and when to scale it."
    )
    status_schema["description"] = "Observed state, written by the operator only."
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "siesta", "app.kubernetes.io/part-of": "siesta"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["siesta"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.manualReplicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A llama.cpp model served on GPU nodes that scales to and from zero.",
                            "required": ["spec"],
                            "x-kubernetes-validations": ROOT_RULES,
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


HEADER = "# Generated by `siesta crds` from siesta.api.models. Do not edit by hand.\n"


def render_crd() -> str:
    return HEADER + yaml.safe_dump(crd_manifest(), sort_keys=False, width=100)


def write_crds(output_dir: Path) -> list[Path]:
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / f"{GROUP}_{PLURAL}.yaml"
    path.write_text(render_crd())
    return [path]
