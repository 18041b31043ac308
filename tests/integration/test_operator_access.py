"""Per model, on the real control plane: the NetworkPolicy of its pods and the RoleBinding
that lets the gateway write demand Leases in the model's namespace, and nowhere else.

The operator runs as its ServiceAccount with deploy/rbac/operator-rbac.yaml, which holds
`bind` on the gateway's Lease ClusterRole only; the API server's escalation check is real.
The gateway account is one made for this test, so no other test's grant can answer for it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from localworld.cluster import Cluster
from localworld.operator_env import OperatorRunner, get, model_deployment, status, wait_for

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_RBAC = ROOT / "deploy" / "rbac" / "gateway-rbac.yaml"
LEASE_ROLE = "siesta-gateway-leases"
RULES = {
    "policyTypes": ["Ingress", "Egress"],
    "ingress": [
        {
            "ports": [{"port": "http", "protocol": "TCP"}],
            "from": [
                {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "siesta-gateway"}}}
            ],
        }
    ],
    "egress": [{"ports": [{"port": 443, "protocol": "TCP"}]}],
}


def lease_role(cluster: Cluster) -> None:
    """The chart's (unbound) Lease ClusterRole, as deploy/rbac/gateway-rbac.yaml has it."""
    for document in yaml.safe_load_all(GATEWAY_RBAC.read_text()):
        if (
            document
            and document["kind"] == "ClusterRole"
            and document["metadata"]["name"] == (LEASE_ROLE)
        ):
            cluster.apply(document)
            return
    raise AssertionError(f"no ClusterRole {LEASE_ROLE} in {GATEWAY_RBAC}")


def test_each_model_gets_its_policy_and_the_gateway_its_leases_there_only(
    cluster: Cluster, namespace: str, operator_runner: OperatorRunner
) -> None:
    lease_role(cluster)
    cluster.kubectl("create", "serviceaccount", "gateway-under-test", "-n", namespace)
    subject = f"--as=system:serviceaccount:{namespace}:gateway-under-test"

    def can(verb: str, where: str) -> str:
        answer = cluster.kubectl("auth", "can-i", verb, "leases", "-n", where, subject, check=False)
        return str(answer.stdout.strip())

    assert can("create", namespace) == "no"
    runner = operator_runner.start(
        SIESTA_MODEL_NETWORK_POLICY=json.dumps(RULES),
        SIESTA_GATEWAY_LEASE_ROLE=LEASE_ROLE,
        SIESTA_GATEWAY_SERVICE_ACCOUNT=f"{namespace}/gateway-under-test",
    )
    cluster.apply(model_deployment("chat", replicas={"min": 0, "max": 1}), namespace)
    wait_for(
        "ScaledToZero", lambda: status(cluster, "chat", namespace).get("phase") == "ScaledToZero"
    )
    binding = wait_for(
        "the RoleBinding", lambda: get(cluster, "rolebinding", "chat-gateway-leases", namespace)
    )
    assert binding["metadata"]["ownerReferences"][0]["name"] == "chat"
    for verb in ("create", "patch", "get"):
        assert can(verb, namespace) == "yes"
        assert can(verb, "kube-system") == "no"
        assert can(verb, "default") == "no"
    policy = get(cluster, "networkpolicy", "chat-model-server", namespace)
    assert policy is not None
    assert policy["spec"]["podSelector"]["matchLabels"]["siesta.dev/modeldeployment"] == "chat"
    assert policy["spec"]["egress"] == RULES["egress"]

    # A change of the rules reaches the existing policy (the config hash differs).
    runner.stop()
    changed = {**RULES, "egress": [{"ports": [{"port": 443, "protocol": "TCP"}, {"port": 80}]}]}
    operator_runner.start(
        SIESTA_MODEL_NETWORK_POLICY=json.dumps(changed),
        SIESTA_GATEWAY_LEASE_ROLE=LEASE_ROLE,
        SIESTA_GATEWAY_SERVICE_ACCOUNT=f"{namespace}/gateway-under-test",
    )
    wait_for(
        "the policy updated",
        lambda: (
            (p := get(cluster, "networkpolicy", "chat-model-server", namespace))
            and len(p["spec"]["egress"][0]["ports"]) == 2
        ),
    )
    assert "Forbidden" not in operator_runner.logs()
