"""The chart's locked-down data plane: NetworkPolicies, the gateway's Ingress and HTTPRoute,
and the key the gateway sends to model servers that check keys themselves.

The test cluster's CNI does not enforce NetworkPolicies, so these check the objects: what
they select and whom they let in (docs/security.md).
"""

from __future__ import annotations

from typing import Any

import pytest

from localworld.helm import CHART, find, objects, template
from siesta.operator import render

EKS = str(CHART / "ci" / "eks-values.yaml")


def policies(*args: str) -> list[dict[str, Any]]:
    return [d for d in objects(template(*args)) if d["kind"] == "NetworkPolicy"]


def test_model_pods_accept_only_the_gateway_operator_and_scraper() -> None:
    (policy,) = policies()
    assert policy["metadata"]["namespace"] == "siesta-system"
    spec = policy["spec"]
    selected = spec["podSelector"]["matchLabels"]
    model_pod_labels = render.labels("any-model")
    assert selected.items() <= model_pod_labels.items()  # it selects every model pod...
    assert spec["policyTypes"] == ["Ingress"]  # ...and leaves their downloads alone
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    gateway, operator, scraper = rule["from"]
    release = {"kubernetes.io/metadata.name": "siesta-system"}
    assert gateway["namespaceSelector"]["matchLabels"] == release
    assert gateway["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "siesta-gateway"
    assert operator["namespaceSelector"]["matchLabels"] == release
    assert operator["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "siesta-operator"
    assert scraper["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    assert scraper["podSelector"] == {}


def test_pod_labels_of_the_gateway_and_operator_match_the_policy() -> None:
    docs = objects(template())
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    gateway, operator, _ = policy["spec"]["ingress"][0]["from"]
    for peer, name in ((gateway, "siesta-gateway"), (operator, "siesta-operator")):
        labels = find(docs, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert peer["podSelector"]["matchLabels"].items() <= labels.items()


def test_one_policy_per_model_namespace() -> None:
    watched = policies("--set", "watchNamespaces={ai,research}")
    assert [p["metadata"]["namespace"] for p in watched] == ["ai", "research"]
    listed = policies("--set", "networkPolicy.namespaces={team-a}", "--set", "watchNamespaces={ai}")
    assert [p["metadata"]["namespace"] for p in listed] == ["team-a"]
    assert policies("--set", "networkPolicy.enabled=false") == []


def test_extra_sources_and_scraper_from_values() -> None:
    (policy,) = policies(
        "-f",
        EKS,
        "--set-json",
        'networkPolicy.extraFrom=[{"namespaceSelector":{"matchLabels":{"team":"batch"}}}]',
    )
    peers = policy["spec"]["ingress"][0]["from"]
    assert peers[2]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}
    assert peers[3] == {"namespaceSelector": {"matchLabels": {"team": "batch"}}}
    assert policy["metadata"]["namespace"] == "ai"


def test_ingress_keeps_held_requests_open() -> None:
    docs = objects(template("-f", EKS))
    ingress = find(docs, "Ingress", "siesta-gateway")
    assert ingress["spec"]["ingressClassName"] == "alb"
    attributes = ingress["metadata"]["annotations"][
        "alb.ingress.kubernetes.io/load-balancer-attributes"
    ]
    assert attributes == "idle_timeout.timeout_seconds=900"  # above wakeTimeout's 600 s
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "llm.clinic.internal"
    (path,) = rule["http"]["paths"]
    assert path["backend"] == {"service": {"name": "siesta-gateway", "port": {"name": "http"}}}
    service = find(docs, "Service", "siesta-gateway")
    assert [p["name"] for p in service["spec"]["ports"]] == ["http"]


def test_http_route() -> None:
    docs = objects(
        template(
            "--set",
            "gateway.httpRoute.enabled=true",
            "--set",
            "gateway.httpRoute.hostnames={llm.example.com}",
        )
    )
    route = find(docs, "HTTPRoute", "siesta-gateway")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [
        {"name": "shared-gateway", "namespace": "gateway-system"}
    ]
    assert route["spec"]["hostnames"] == ["llm.example.com"]
    (rule,) = route["spec"]["rules"]
    assert rule["backendRefs"] == [{"name": "siesta-gateway", "port": 80}]
    assert rule["timeouts"] == {"request": "0s"}
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/v1"}}]
    assert not [d for d in objects(template()) if d["kind"] in ("HTTPRoute", "Ingress")]


def test_gateway_gets_the_model_server_key_as_a_file() -> None:
    gateway = find(objects(template("-f", EKS)), "Deployment", "siesta-gateway")
    pod = gateway["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["model-server-key"]["secret"]["secretName"] == "siesta-model-server-key"
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["SIESTA_GATEWAY_UPSTREAM_KEY_FILE"] == "/etc/siesta/model-server-key/api-key"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "networkPolicy.namespaces[0]=Not_A_Namespace"], "does not match pattern"),
        (["--set", "gateway.ingress.hosts[0].paths[0].pathType=Sometimes"], "value must be one of"),
        (["--set", "gateway.httpRoute.timeouts.request=ten minutes"], "does not match pattern"),
    ],
)
def test_schema_rejects_bad_network_values(values: list[str], message: str) -> None:
    from localworld.helm import helm

    result = helm("template", "x", str(CHART), *values, check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
