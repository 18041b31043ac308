"""The chart on the real control plane: install, run as its ServiceAccounts, upgrade, uninstall.

These tests install cluster-scoped objects (the ModelDeployment CRD, ClusterRoles, the
ClusterKopfPeering) and uninstall them again, which would pull the CRD from under every other
test of the session. So they get a control plane of their own (the same kit/cluster
scripts, cluster name `<SIESTA_CLUSTER_NAME>-chart`), started once for this module.

Pods of the chart's Deployments cannot run real containers here (kwok marks them Running),
so the operator and gateway run as local processes authenticated with tokens of the chart's
ServiceAccounts (`kubectl create token`): exactly the rights the chart grants, nothing more.

The tests run in file order and build on each other (install -> run -> upgrade -> uninstall).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from localworld.cluster import Cluster, start_cluster, stop_cluster
from localworld.helm import CHART, NAMESPACE, RELEASE, ROOT, helm
from localworld.operator_env import wait_for
from localworld.procs import BIN, Proc, free_port, start, start_gateway

pytestmark = pytest.mark.cluster

EXAMPLE = ROOT / "deploy" / "examples" / "cpu-only.yaml"
MD_CRD = "customresourcedefinitions/modeldeployments.siesta.dev"


@contextmanager
def _cluster_name(name: str) -> Iterator[None]:
    before = os.environ.get("SIESTA_CLUSTER_NAME")
    os.environ["SIESTA_CLUSTER_NAME"] = name
    try:
        yield
    finally:
        if before is None:
            del os.environ["SIESTA_CLUSTER_NAME"]
        else:
            os.environ["SIESTA_CLUSTER_NAME"] = before


@pytest.fixture(scope="module")
def chart_cluster() -> Iterator[Cluster]:
    name = os.environ.get("SIESTA_CLUSTER_NAME", "siesta") + "-chart"
    with _cluster_name(name):
        try:
            running = start_cluster()
        except Exception as exc:
            pytest.fail(f"chart test cluster did not start: {exc}", pytrace=False)
    yield running
    if running.started_here and os.environ.get("SIESTA_KEEP_CLUSTER") != "1":
        with _cluster_name(name):
            stop_cluster()


def chart_helm(cluster: Cluster, *args: str, check: bool = True) -> Any:
    return helm(*args, "--kubeconfig", str(cluster.kubeconfig), env=cluster.env, check=check)


def account_kubeconfig(cluster: Cluster, account: str, directory: Path) -> Path:
    """A kubeconfig holding only a token of the chart's ServiceAccount `account`."""
    return cluster.service_account_kubeconfig(
        NAMESPACE, account, directory / f"{account}.kubeconfig", duration="1h"
    )


def start_operator(kubeconfig: Path, log_dir: Path, *args: str, **chart_env: str) -> Proc:
    env = {"KUBECONFIG": str(kubeconfig), "SIESTA_SERVER_IMAGE": "siesta-server:test"}
    env |= chart_env
    env |= {"SIESTA_METRICS_PORT": str(free_port())}
    os.environ.pop("KUBERNETES_SERVICE_HOST", None)
    proc = start("operator", [str(BIN / "siesta"), "operator", *args], env=env, log_dir=log_dir)
    return proc


def example(namespace: str) -> dict[str, Any]:
    md: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    md["metadata"]["namespace"] = namespace
    return md


def exists(cluster: Cluster, *args: str) -> bool:
    return cluster.kubectl("get", *args, check=False).returncode == 0


def leftovers(cluster: Cluster, release: str) -> list[str]:
    """Everything still labelled with the release, in every namespace and cluster-wide."""
    kinds = (
        "deployments,services,serviceaccounts,configmaps,roles,rolebindings,"
        "horizontalpodautoscalers,poddisruptionbudgets,kopfpeerings"
    )
    selector = f"app.kubernetes.io/instance={release}"
    found = cluster.kubectl("get", kinds, "-A", "-l", selector, "-o", "name").stdout.split()
    found += cluster.kubectl(
        "get", "clusterroles,clusterrolebindings,clusterkopfpeerings", "-l", selector, "-o", "name"
    ).stdout.split()
    return found


KEYS = ("--set", "gateway.apiKeys.existingSecret=siesta-api-keys")


def test_a_gateway_without_keys_must_be_asked_for(chart_cluster: Cluster) -> None:
    refused = chart_helm(
        chart_cluster, "install", RELEASE, str(CHART), "-n", NAMESPACE, "--create-namespace",
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "gateway.apiKeys.existingSecret is empty" in refused.stderr, refused.stderr
    assert "gateway.auth=none" in refused.stderr
    releases = chart_helm(chart_cluster, "list", "-A", "-q").stdout.split()
    assert RELEASE not in releases


def test_install(chart_cluster: Cluster) -> None:
    chart_cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    chart_cluster.kubectl(
        "create", "secret", "generic", "siesta-api-keys", "-n", NAMESPACE,
        "--from-literal=api-keys=sk-chart-test",
    )  # fmt: skip
    result = chart_helm(
        chart_cluster, "install", RELEASE, str(CHART), "-n", NAMESPACE, "--create-namespace",
        *KEYS, "--wait", "--timeout=3m",
    )  # fmt: skip
    assert "Next steps" in result.stdout
    cluster = chart_cluster
    cluster.kubectl("wait", "--for=condition=Established", MD_CRD, "--timeout=60s")
    for crd in ("clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"):
        assert exists(cluster, "crd", crd)
    assert exists(cluster, "clusterkopfpeering", "siesta")
    for name in ("siesta-operator", "siesta-gateway"):
        deployment = cluster.get_json("deployment", name, "-n", NAMESPACE)
        assert deployment["status"].get("availableReplicas", 0) >= 1, deployment["status"]
    status = json.loads(
        chart_helm(cluster, "status", RELEASE, "-n", NAMESPACE, "-o", "json").stdout
    )
    assert status["info"]["status"] == "deployed"


def test_service_accounts_cannot_read_secrets(chart_cluster: Cluster) -> None:
    for account in ("siesta-operator", "siesta-gateway"):
        subject = f"--as=system:serviceaccount:{NAMESPACE}:{account}"
        answer = chart_cluster.kubectl(
            "auth", "can-i", "get", "secrets", "-A", subject, check=False
        )
        assert answer.stdout.strip() == "no"
    subject = f"--as=system:serviceaccount:{NAMESPACE}:siesta-operator"
    can = chart_cluster.kubectl(
        "auth", "can-i", "patch", "statefulsets", "--subresource=scale", "-n", "ai", subject
    )
    assert can.stdout.strip() == "yes"


def test_operator_and_gateway_run_as_the_charts_service_accounts(
    chart_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = chart_cluster
    cluster.kubectl("create", "namespace", "ai", check=False)
    # What the chart's operator Deployment sets: the models' NetworkPolicy, the gateway's
    # Lease role and account (bound per model namespace by the operator).
    deployment = cluster.get_json("deployment", "siesta-operator", "-n", NAMESPACE)
    chart_env = {
        e["name"]: e["value"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        if e["name"].startswith(("SIESTA_MODEL_NETWORK", "SIESTA_GATEWAY_"))
    }
    assert set(chart_env) == {
        "SIESTA_MODEL_NETWORK_POLICY",
        "SIESTA_GATEWAY_LEASE_ROLE",
        "SIESTA_GATEWAY_SERVICE_ACCOUNT",
    }
    gateway_subject = f"--as=system:serviceaccount:{NAMESPACE}:siesta-gateway"

    def gateway_can(verb: str, namespace: str) -> str:
        answer = cluster.kubectl(
            "auth", "can-i", verb, "leases", "-n", namespace, gateway_subject, check=False
        )
        return str(answer.stdout.strip())

    assert gateway_can("create", "ai") == "no"  # no model there yet
    operator = start_operator(
        account_kubeconfig(cluster, "siesta-operator", tmp_path), tmp_path, **chart_env
    )
    gateway: Proc | None = None
    try:
        cluster.apply(example("ai"))

        def statefulset() -> bool:
            if not operator.alive():
                pytest.fail(f"operator exited:\n{operator.log_tail()}")
            return exists(cluster, "statefulset", "tiny-cpu", "-n", "ai")

        wait_for("the StatefulSet of the example model", statefulset, timeout=90)
        sts = cluster.get_json("statefulset", "tiny-cpu", "-n", "ai")
        assert sts["spec"]["replicas"] == 0  # no schedule, no demand: asleep
        container = sts["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "siesta-server:test"

        def phase() -> Any:
            md = cluster.get_json("modeldeployment", "tiny-cpu", "-n", "ai")
            return md.get("status", {}).get("phase")

        assert wait_for("a status phase", phase, timeout=60) == "ScaledToZero"
        # The gateway may write Leases where the model is, and nowhere else.
        binding = cluster.get_json("rolebinding", "tiny-cpu-gateway-leases", "-n", "ai")
        assert binding["roleRef"]["name"] == "siesta-gateway-leases"
        for verb in ("create", "patch", "get"):
            assert gateway_can(verb, "ai") == "yes"
            assert gateway_can(verb, "kube-system") == "no"
            assert gateway_can(verb, NAMESPACE) == "no"
        policy = cluster.get_json("networkpolicy", "tiny-cpu-model-server", "-n", "ai")
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        assert policy["spec"]["podSelector"]["matchLabels"]["siesta.dev/modeldeployment"] == (
            "tiny-cpu"
        )
        # The chart's ClusterKopfPeering is found (no fallback to an unguarded standalone mode).
        assert "falling back to the standalone mode" not in operator.log_path.read_text()

        gateway = start_gateway(
            account_kubeconfig(cluster, "siesta-gateway", tmp_path), log_dir=tmp_path
        )
        with urllib.request.urlopen(gateway.url + "/v1/models", timeout=5) as response:
            models = json.loads(response.read())
        assert "tiny-cpu" in [m["id"] for m in models["data"]]

        # Deleted while the operator runs, so its finalizer goes with it.
        cluster.kubectl("delete", "modeldeployment", "tiny-cpu", "-n", "ai", "--timeout=60s")
    finally:
        if gateway:
            gateway.stop()
        operator.stop()
        print(operator.log_tail(80))
    assert "Forbidden" not in operator.log_path.read_text(), operator.log_tail(80)


def _chart_with_extra_column(directory: Path) -> Path:
    """A copy of the chart at version 0.2.0 whose CRD has one more printer column."""
    chart = directory / "siesta"
    shutil.copytree(CHART, chart)
    meta = chart / "Chart.yaml"
    meta.write_text(re.sub(r"(?m)^version: .*$", "version: 0.2.0", meta.read_text()))
    crd = chart / "templates" / "crds" / "modeldeployments.yaml"
    text = crd.read_text()
    marker = "    additionalPrinterColumns:\n"
    assert marker in text
    column = "    - name: Alias\n      type: string\n      jsonPath: .spec.model.alias\n"
    crd.write_text(text.replace(marker, marker + column, 1))
    return chart


def test_upgrade_upgrades_the_crd(chart_cluster: Cluster) -> None:
    cluster = chart_cluster
    cluster.apply(example("ai"))  # no operator running: no finalizer
    with tempfile.TemporaryDirectory() as directory:
        chart = _chart_with_extra_column(Path(directory))
        chart_helm(
            cluster, "upgrade", RELEASE, str(chart), "-n", NAMESPACE, "--wait", "--timeout=3m",
            *KEYS, "--set", "gateway.replicas=3",
        )  # fmt: skip
    crd = cluster.get_json(MD_CRD)
    columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns[0] == "Alias"
    assert crd["metadata"]["labels"]["helm.sh/chart"] == "siesta-0.2.0"
    table = cluster.kubectl("get", "md", "-n", "ai").stdout
    assert "ALIAS" in table.splitlines()[0]
    assert "tiny-cpu" in table  # existing objects untouched
    gateway = cluster.get_json("deployment", "siesta-gateway", "-n", NAMESPACE)
    assert gateway["spec"]["replicas"] == 3
    history = json.loads(
        chart_helm(cluster, "history", RELEASE, "-n", NAMESPACE, "-o", "json").stdout
    )
    assert [h["chart"] for h in history] == ["siesta-0.1.0", "siesta-0.2.0"]


def test_uninstall_keeps_the_crd_and_leaves_nothing_else(chart_cluster: Cluster) -> None:
    cluster = chart_cluster
    chart_helm(cluster, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout=2m")
    assert leftovers(cluster, RELEASE) == []
    # crds.keep (default): the CRD and every ModelDeployment stay.
    assert exists(cluster, MD_CRD)
    assert exists(cluster, "modeldeployment", "tiny-cpu", "-n", "ai")
    # kopf's peering CRDs (the chart's crds/ folder) are never deleted by Helm.
    assert exists(cluster, "crd", "clusterkopfpeerings.kopf.dev")


def test_uninstall_without_keep_deletes_the_crd(chart_cluster: Cluster) -> None:
    cluster = chart_cluster
    # The documented clean-up after an uninstall with crds.keep (deletes every ModelDeployment).
    cluster.kubectl("delete", MD_CRD, "--timeout=60s")
    chart_helm(
        cluster, "install", RELEASE, str(CHART), "-n", NAMESPACE, "--set", "crds.keep=false",
        "--set", "gateway.auth=none", "--wait", "--timeout=3m",
    )  # fmt: skip
    assert "helm.sh/resource-policy" not in cluster.get_json(MD_CRD)["metadata"].get(
        "annotations", {}
    )
    chart_helm(cluster, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout=2m")
    assert leftovers(cluster, RELEASE) == []

    def crd_gone() -> bool:
        return not exists(cluster, MD_CRD)

    wait_for("the CRD to be deleted", crd_gone, timeout=60)


def test_namespaced_mode(chart_cluster: Cluster, tmp_path: Path) -> None:
    """watchNamespaces: Roles only; the operator reconciles there with no cluster-wide writes."""
    cluster = chart_cluster
    watched = "team-a"
    cluster.kubectl("create", "namespace", watched, check=False)
    release = "siesta-team-a"
    chart_helm(
        cluster, "install", release, str(CHART), "-n", NAMESPACE, "--create-namespace",
        "--set", f"watchNamespaces={{{watched}}}", "--set", "gateway.auth=none",
        "--wait", "--timeout=3m",
    )  # fmt: skip
    account = "siesta-team-a-operator"
    subject = f"--as=system:serviceaccount:{NAMESPACE}:{account}"
    gateway = f"--as=system:serviceaccount:{NAMESPACE}:siesta-team-a-gateway"
    for namespace, expected in ((watched, "yes"), ("default", "no"), ("kube-system", "no")):
        answer = cluster.kubectl(
            "auth", "can-i", "create", "statefulsets", "-n", namespace, subject, check=False
        )
        assert answer.stdout.strip() == expected
        # The gateway writes demand Leases only in the namespaces the chart names.
        for verb in ("create", "patch"):
            answer = cluster.kubectl(
                "auth", "can-i", verb, "leases", "-n", namespace, gateway, check=False
            )
            assert answer.stdout.strip() == expected, (verb, namespace)
    assert exists(cluster, "kopfpeering", "siesta", "-n", watched)

    operator = start_operator(
        account_kubeconfig(cluster, account, tmp_path), tmp_path, "--namespace", watched
    )
    try:
        cluster.apply(example(watched))
        wait_for(
            "the StatefulSet in the watched namespace",
            lambda: exists(cluster, "statefulset", "tiny-cpu", "-n", watched),
            timeout=90,
        )
        cluster.kubectl("delete", "modeldeployment", "tiny-cpu", "-n", watched, "--timeout=60s")
    finally:
        operator.stop()
        print(operator.log_tail(80))
    assert "Forbidden" not in operator.log_path.read_text(), operator.log_tail(80)
    chart_helm(cluster, "uninstall", release, "-n", NAMESPACE, "--wait", "--timeout=2m")
    assert leftovers(cluster, release) == []


def test_plain_manifests_apply(chart_cluster: Cluster) -> None:
    """deploy/: `kubectl apply -f deploy/crds.yaml`, then `kubectl apply -k deploy/`."""
    cluster = chart_cluster
    cluster.kubectl("apply", "-f", str(ROOT / "deploy" / "crds.yaml"))
    cluster.kubectl("wait", "--for=condition=Established", MD_CRD, "--timeout=60s")
    cluster.kubectl("apply", "-k", str(ROOT / "deploy"))
    for name in ("siesta-operator", "siesta-gateway"):
        assert exists(cluster, "deployment", name, "-n", NAMESPACE)
    assert exists(cluster, "clusterkopfpeering", "siesta")
    cluster.kubectl("delete", "-f", str(ROOT / "deploy" / "siesta.yaml"), "--wait=false")
