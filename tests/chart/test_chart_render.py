"""The Helm chart without a cluster: lint, golden renders, values schema, security defaults.

Goldens live in tests/chart/golden/ (one per scenario: every charts/siesta/ci/*-values.yaml;
`default` is the defaults plus the one explicit choice a fresh install must make). After an intended change: `UPDATE_GOLDEN=1 pytest tests/chart`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from localworld.helm import CHART, ROOT, find, helm, objects, template

GOLDEN = Path(__file__).parent / "golden"
SCENARIOS = {
    path.name.removesuffix("-values.yaml"): path
    for path in sorted((CHART / "ci").glob("*-values.yaml"))
}


_KEY_SECRET = ("--set", "gateway.apiKeys.existingSecret=keys")


def render(scenario: str) -> str:
    return template("-f", str(SCENARIOS[scenario]))


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_lint(scenario: str) -> None:
    result = helm("lint", "--strict", str(CHART), "-f", str(SCENARIOS[scenario]))
    assert "0 chart(s) failed" in result.stdout


def test_a_gateway_without_api_keys_must_be_asked_for() -> None:
    """Closed by default: no key Secret and no `auth: none` -> no install, and why."""
    refused = helm("template", "x", str(CHART), check=False)
    assert refused.returncode != 0
    assert "gateway.apiKeys.existingSecret is empty" in refused.stderr, refused.stderr
    assert "set gateway.auth=none" in refused.stderr
    # Without a gateway there is nothing to authenticate.
    helm("template", "x", str(CHART), "--set", "gateway.enabled=false")


def _gateway_env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    gateway = find(docs, "Deployment", "siesta-gateway")["spec"]["template"]["spec"]
    return {e["name"]: e.get("value") for e in gateway["containers"][0]["env"]}


def test_auth_none_is_explicit_and_uses_no_keys() -> None:
    open_env = _gateway_env(objects(render("default")))
    assert "SIESTA_GATEWAY_API_KEYS_FILE" not in open_env
    # A key Secret left over from before does not half-enable keys under `auth: none`.
    docs = objects(template("--set", "gateway.auth=none", *_KEY_SECRET))
    assert "SIESTA_GATEWAY_API_KEYS_FILE" not in _gateway_env(docs)
    keyed = _gateway_env(objects(template(*_KEY_SECRET)))
    assert keyed["SIESTA_GATEWAY_API_KEYS_FILE"] == "/etc/siesta/api-keys/api-keys"


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_golden(scenario: str) -> None:
    rendered = render(scenario)
    path = GOLDEN / f"{scenario}.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(rendered)
    assert path.exists(), f"{path} missing: run UPDATE_GOLDEN=1 pytest tests/chart"
    assert rendered == path.read_text(), (
        f"`helm template` of scenario {scenario!r} differs from {path.relative_to(ROOT)}; "
        "if intended, regenerate with UPDATE_GOLDEN=1 pytest tests/chart"
    )


def test_every_golden_has_a_scenario() -> None:
    assert {p.stem for p in GOLDEN.glob("*.yaml")} == set(SCENARIOS)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "gateway.replicas=-1"], "minimum: got -1"),
        (["--set", "operator.defaultIdleTimeout=soon"], "does not match pattern"),
        (["--set", "image.pullPolicy=Sometimes"], "value must be one of"),
        (["--set", "gateway.replica=3"], "additional properties 'replica' not allowed"),
        (["--set", "operator.prometheusUrl=prometheus:9090"], "does not match pattern"),
        (["--set", "watchNamespaces[0]=Not_A_Namespace"], "does not match pattern"),
        (["--set", "gateway.service.type=Ingress"], "value must be one of"),
        (["--set", "crds.install=maybe"], "crds/install"),
        (["--set", "gateway.auth=open"], "value must be one of"),
    ],
)
def test_schema_rejects_bad_values(values: list[str], message: str) -> None:
    result = helm("template", "x", str(CHART), *values, check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def _containers(docs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [
        (doc["spec"]["template"]["spec"], container)
        for doc in docs
        if doc["kind"] == "Deployment"
        for container in doc["spec"]["template"]["spec"]["containers"]
    ]


def test_hardened_defaults() -> None:
    docs = objects(render("default"))
    pairs = _containers(docs)
    assert len(pairs) == 2
    for pod, container in pairs:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["requests"]
    operator = find(docs, "Deployment", "siesta-operator")
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}


def _rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for doc in docs if doc["kind"] in ("ClusterRole", "Role") for rule in doc["rules"]]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_no_access_to_secrets(scenario: str) -> None:
    for rule in _rules(objects(render(scenario))):
        assert "secrets" not in rule["resources"]
        assert "*" not in rule["resources"]
        assert "*" not in rule["verbs"]


def test_namespaced_mode_grants_writes_only_in_watched_namespaces() -> None:
    docs = objects(render("namespaced"))
    watched = yaml.safe_load((CHART / "ci" / "namespaced-values.yaml").read_text())[
        "watchNamespaces"
    ]
    cluster_rules = [r for d in docs if d["kind"] == "ClusterRole" for r in d["rules"]]
    # Cluster-wide only: reading CRDs, and the nodes (status.cost) and Karpenter NodeClaims
    # (status.lastWake) of the models' pods, which are cluster-scoped.
    assert cluster_rules == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["list", "watch"],
        },
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
        {"apiGroups": ["karpenter.sh"], "resources": ["nodeclaims"], "verbs": ["list"]},
    ]
    roles = [d for d in docs if d["kind"] == "Role"]
    assert sorted({r["metadata"]["namespace"] for r in roles}) == sorted(watched)
    peerings = [d for d in docs if d["kind"] == "KopfPeering"]
    assert sorted(p["metadata"]["namespace"] for p in peerings) == sorted(watched)
    assert not [d for d in docs if d["kind"] == "ClusterKopfPeering"]
    for _pod, container in _containers(docs):
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["SIESTA_NAMESPACES"] == ",".join(watched)


def test_operator_rbac_matches_what_the_operator_uses() -> None:
    """The ported rules of deploy/rbac (framework + application blocks), unchanged."""
    role = find(objects(render("default")), "ClusterRole", "siesta-operator")
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert ("apps", "statefulsets/scale", "patch") in granted
    assert ("siesta.dev", "modeldeployments/status", "patch") in granted
    assert ("coordination.k8s.io", "leases", "list") in granted
    assert ("coordination.k8s.io", "leases", "create") not in granted  # only the gateway writes
    # Pods on an older template are replaced when idle (OnDelete); models' NetworkPolicies
    # and the gateway's Lease RoleBindings are written per model.
    assert ("", "pods", "delete") in granted
    assert ("networking.k8s.io", "networkpolicies", "update") in granted
    assert ("rbac.authorization.k8s.io", "rolebindings", "create") in granted
    (bind,) = [r for r in role["rules"] if "bind" in r["verbs"]]
    assert bind == {
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["clusterroles"],
        "verbs": ["bind"],
        "resourceNames": ["siesta-gateway-leases"],
    }


def test_the_gateway_writes_leases_only_where_models_are() -> None:
    """Cluster-wide: its Lease ClusterRole is bound by nothing in the chart (the operator
    binds it per model namespace); namespaced: Roles in the watched namespaces only."""
    docs = objects(render("default"))
    leases = find(docs, "ClusterRole", "siesta-gateway-leases")
    assert leases["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "create", "patch"],
        }
    ]
    bound = [d["roleRef"]["name"] for d in docs if d["kind"].endswith("RoleBinding")]
    assert "siesta-gateway-leases" not in bound
    reads = find(docs, "ClusterRole", "siesta-gateway")
    assert all("leases" not in rule["resources"] for rule in reads["rules"])
    env = {
        e["name"]: e.get("value")
        for e in find(docs, "Deployment", "siesta-operator")["spec"]["template"]["spec"][
            "containers"
        ][0]["env"]
    }
    assert env["SIESTA_GATEWAY_LEASE_ROLE"] == "siesta-gateway-leases"
    assert env["SIESTA_GATEWAY_SERVICE_ACCOUNT"] == "siesta-system/siesta-gateway"

    namespaced = objects(render("namespaced"))
    assert not [d for d in namespaced if d["metadata"]["name"] == "siesta-gateway-leases"]
    lease_roles = [
        d["metadata"]["namespace"]
        for d in namespaced
        if d["kind"] == "Role"
        and d["metadata"]["name"] == "siesta-gateway"
        and any("leases" in rule["resources"] for rule in d["rules"])
    ]
    assert lease_roles == ["ai", "ai-staging"]


def test_chart_crd_is_the_generated_crd() -> None:
    chart_crd = find(
        objects(render("default")), "CustomResourceDefinition", "modeldeployments.siesta.dev"
    )
    source = yaml.safe_load((ROOT / "crds" / "siesta.dev_modeldeployments.yaml").read_text())
    assert chart_crd["spec"] == source["spec"]
    assert chart_crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    no_keep = objects(template("--set", "crds.keep=false", "--set", "gateway.enabled=false"))
    crd = find(no_keep, "CustomResourceDefinition", "modeldeployments.siesta.dev")
    assert "helm.sh/resource-policy" not in crd["metadata"]["annotations"]
    external = helm(
        "template", "x", str(CHART), "--set", "crds.install=false", "--set", "gateway.auth=none"
    ).stdout
    assert not [d for d in objects(external) if d["kind"] == "CustomResourceDefinition"]


def test_api_key_secret_is_mounted_not_granted() -> None:
    docs = objects(render("production"))
    gateway = find(docs, "Deployment", "siesta-gateway")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in gateway["volumes"]}
    assert volumes["api-keys"]["secret"]["secretName"] == "siesta-api-keys"
    env = {e["name"]: e.get("value") for e in gateway["containers"][0]["env"]}
    assert env["SIESTA_GATEWAY_API_KEYS_FILE"] == "/etc/siesta/api-keys/api-keys"


def test_optional_objects() -> None:
    default_kinds = {d["kind"] for d in objects(render("default"))}
    assert not default_kinds & {
        "ServiceMonitor",
        "PodMonitor",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
    }
    docs = objects(render("production"))
    assert {"ServiceMonitor", "PodMonitor", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= {
        d["kind"] for d in docs
    }
    assert "replicas" not in find(docs, "Deployment", "siesta-gateway")["spec"]  # the HPA owns it
    monitor = find(docs, "PodMonitor")
    relabel = monitor["spec"]["podMetricsEndpoints"][0]["relabelings"]
    assert {
        "sourceLabels": ["__meta_kubernetes_pod_label_siesta_dev_modeldeployment"],
        "targetLabel": "modeldeployment",
    } in relabel
    dashboard = find(docs, "ConfigMap", "siesta-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"]["siesta-dashboard.json"] == (
        ROOT / "deploy" / "grafana" / "siesta-dashboard.json"
    ).read_text().rstrip("\n")
