"""Who may reach a model and who may write its demand: the NetworkPolicy and the gateway's
Lease RoleBinding the operator writes next to each model's StatefulSet. Pure."""

from __future__ import annotations

import json
from typing import Any

import pytest

from siesta.api.contract import CONFIG_HASH_ANNOTATION, MODEL_LABEL
from siesta.operator import render
from siesta.operator.observe import child_view
from siesta.operator.plan import Model, Remembered, Views, plan
from siesta.operator.settings import OperatorSettings, SettingsError
from support.specs import make_spec, utc

OWNER = render.Owner(name="chat", namespace="ai", uid="uid-1")
RULES: dict[str, Any] = {
    "policyTypes": ["Ingress", "Egress"],
    "ingress": [{"ports": [{"port": "http", "protocol": "TCP"}], "from": [{"podSelector": {}}]}],
    "egress": [{"ports": [{"port": 443, "protocol": "TCP"}]}],
}
ENV = {
    "SIESTA_MODEL_NETWORK_POLICY": json.dumps(RULES),
    "SIESTA_GATEWAY_LEASE_ROLE": "siesta-gateway-leases",
    "SIESTA_GATEWAY_SERVICE_ACCOUNT": "siesta-system/siesta-gateway",
}


def test_settings_read_the_policy_and_the_gateway_account() -> None:
    settings = OperatorSettings.from_env(ENV)
    assert settings.model_network_policy == RULES
    assert settings.gateway_lease_role == "siesta-gateway-leases"
    assert settings.gateway_account == ("siesta-system", "siesta-gateway")
    assert OperatorSettings.from_env({}).model_network_policy is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SIESTA_MODEL_NETWORK_POLICY": "{nope"}, "not JSON"),
        ({"SIESTA_MODEL_NETWORK_POLICY": "[]"}, "a JSON object is needed"),
        ({"SIESTA_GATEWAY_SERVICE_ACCOUNT": "siesta-gateway"}, "is not NAMESPACE/NAME"),
    ],
)
def test_bad_settings_say_which_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        OperatorSettings.from_env(env)


def test_the_policy_selects_exactly_the_models_pods() -> None:
    policy = render.network_policy(OWNER, RULES)
    assert policy["metadata"]["name"] == "chat-model-server"
    assert policy["metadata"]["namespace"] == "ai"
    assert policy["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert policy["metadata"]["labels"][MODEL_LABEL] == "chat"
    selector = policy["spec"]["podSelector"]["matchLabels"]
    pod_labels = render.statefulset(OWNER, make_spec(), OperatorSettings())["spec"]["template"][
        "metadata"
    ]["labels"]
    assert selector.items() <= pod_labels.items()
    other = render.statefulset(render.Owner("other", "ai", "u2"), make_spec(), OperatorSettings())
    assert not selector.items() <= other["spec"]["template"]["metadata"]["labels"].items()
    assert {k: v for k, v in policy["spec"].items() if k != "podSelector"} == RULES


def test_the_lease_binding_names_the_role_and_the_gateway() -> None:
    binding = render.gateway_lease_binding(
        OWNER, "siesta-gateway-leases", ("siesta-system", "siesta-gateway")
    )
    assert binding["metadata"]["namespace"] == "ai"  # the model's namespace, nowhere else
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "siesta-gateway-leases",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "namespace": "siesta-system", "name": "siesta-gateway"}
    ]


def test_children_come_before_the_pods_only_when_configured() -> None:
    kinds = [c["kind"] for c in render.children(OWNER, make_spec(), OperatorSettings())]
    assert kinds == ["Service", "Service", "StatefulSet"]
    settings = OperatorSettings.from_env(ENV)
    kinds = [c["kind"] for c in render.children(OWNER, make_spec(), settings)]
    assert kinds == ["Service", "Service", "NetworkPolicy", "RoleBinding", "StatefulSet"]


def test_the_plan_creates_them_once_and_updates_them_on_change() -> None:
    settings = OperatorSettings.from_env(ENV)
    model = Model.read({"spec": {"model": {"uri": "file:///m.gguf"}}}, OWNER, settings)
    now = utc("2026-11-25T12:00:00")
    first = plan(model, Views(), Remembered(), None, settings, now)
    assert [(c.action, c.kind) for c in first.children][2:4] == [
        ("create", "NetworkPolicy"),
        ("create", "RoleBinding"),
    ]
    existing = [child_view(c.manifest) for c in first.children]
    again = plan(model, Views.build([], [], existing), Remembered(), None, settings, now)
    assert again.children == ()
    changed = {**ENV, "SIESTA_MODEL_NETWORK_POLICY": json.dumps({**RULES, "egress": []})}
    other = OperatorSettings.from_env(changed)
    model = Model.read({"spec": {"model": {"uri": "file:///m.gguf"}}}, OWNER, other)
    updated = plan(model, Views.build([], [], existing), Remembered(), None, other, now)
    assert [(c.action, c.kind) for c in updated.children] == [("update", "NetworkPolicy")]
    assert CONFIG_HASH_ANNOTATION in updated.children[0].manifest["metadata"]["annotations"]
