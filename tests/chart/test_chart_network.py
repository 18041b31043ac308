"""The chart's locked-down data plane: the models' NetworkPolicy (the chart's values, which
the operator writes for every model), the gateway's Ingress and HTTPRoute, and the key the
gateway sends to model servers that check keys themselves.

The test cluster's CNI does not enforce NetworkPolicies, so these check the objects: what
they select, whom they let in and where they let out (docs/security.md).
"""

from __future__ import annotations

from typing import Any

import pytest

from localworld.helm import CHART, find, objects, template
from localworld.helm import operator_env as rendered_operator_env
from siesta.operator import render
from siesta.operator.settings import OperatorSettings
from support.specs import make_spec

EKS = str(CHART / "ci" / "eks-values.yaml")
DEFAULT = ("-f", str(CHART / "ci" / "default-values.yaml"))


def operator_env(*args: str) -> dict[str, str]:
    return rendered_operator_env(objects(template(*DEFAULT, *args)))


def model_policy(*args: str) -> dict[str, Any]:
    """The NetworkPolicy the operator writes for a model `chat` in `ai`, from the chart's
    values (the operator renders it: every namespace that holds models is covered)."""
    settings = OperatorSettings.from_env(operator_env(*args))
    assert settings.model_network_policy is not None
    return render.network_policy(
        render.Owner("chat", "ai", "uid"), dict(settings.model_network_policy)
    )


def test_model_pods_accept_only_the_gateway_operator_and_scraper() -> None:
    spec = model_policy()["spec"]
    selected = spec["podSelector"]["matchLabels"]
    assert selected.items() <= render.labels("chat").items()
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    api, metrics = spec["ingress"]
    assert api["ports"] == [{"port": "http", "protocol": "TCP"}]
    gateway, operator = api["from"]
    release = {"kubernetes.io/metadata.name": "siesta-system"}
    assert gateway["namespaceSelector"]["matchLabels"] == release
    assert gateway["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "siesta-gateway"
    assert operator["namespaceSelector"]["matchLabels"] == release
    assert operator["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "siesta-operator"
    # The scraper reaches the metrics port only, never the API.
    assert metrics["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    (scraper,) = metrics["from"]
    assert scraper["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    assert scraper["podSelector"] == {}


def test_model_pods_reach_only_dns_and_the_model_sources() -> None:
    dns, sources = model_policy()["spec"]["egress"]
    assert dns["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    (kube_dns,) = dns["to"]
    assert kube_dns["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    assert sources == {"ports": [{"port": 443, "protocol": "TCP"}]}
    open_egress = model_policy("--set", "networkPolicy.egress.enabled=false")["spec"]
    assert open_egress["policyTypes"] == ["Ingress"]
    assert "egress" not in open_egress


def test_the_policy_ports_are_the_model_pods_ports() -> None:
    sts = render.statefulset(render.Owner("chat", "ai", "uid"), make_spec(), OperatorSettings())
    names = {p["name"] for p in sts["spec"]["template"]["spec"]["containers"][0]["ports"]}
    for rule in model_policy()["spec"]["ingress"]:
        assert {p["port"] for p in rule["ports"]} <= names


def test_pod_labels_of_the_gateway_and_operator_match_the_policy() -> None:
    docs = objects(template(*DEFAULT))
    gateway, operator = model_policy()["spec"]["ingress"][0]["from"]
    for peer, name in ((gateway, "siesta-gateway"), (operator, "siesta-operator")):
        labels = find(docs, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert peer["podSelector"]["matchLabels"].items() <= labels.items()


def test_the_chart_renders_no_policy_of_its_own() -> None:
    """One per model, by the operator: none that could miss a namespace."""
    docs = objects(template(*DEFAULT, "--set", "watchNamespaces={ai,research}"))
    assert not [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert "SIESTA_MODEL_NETWORK_POLICY" not in operator_env("--set", "networkPolicy.enabled=false")


def test_extra_sources_and_scraper_from_values() -> None:
    policy = model_policy(
        "-f",
        EKS,
        "--set-json",
        'networkPolicy.extraFrom=[{"namespaceSelector":{"matchLabels":{"team":"batch"}}}]',
    )
    api, metrics = policy["spec"]["ingress"]
    assert api["from"][2] == {"namespaceSelector": {"matchLabels": {"team": "batch"}}}
    assert metrics["from"][0]["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/name": "prometheus"}
    }


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
            *DEFAULT,
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
    assert not [d for d in objects(template(*DEFAULT)) if d["kind"] in ("HTTPRoute", "Ingress")]


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
        (["--set", "networkPolicy.namespaces[0]=ai"], "additional properties 'namespaces'"),
        (["--set-json", "networkPolicy.egress.modelSources=[{}]"], "missing property 'ports'"),
        (["--set", "gateway.ingress.hosts[0].paths[0].pathType=Sometimes"], "value must be one of"),
        (["--set", "gateway.httpRoute.timeouts.request=ten minutes"], "does not match pattern"),
    ],
)
def test_schema_rejects_bad_network_values(values: list[str], message: str) -> None:
    from localworld.helm import helm

    result = helm("template", "x", str(CHART), *values, check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
