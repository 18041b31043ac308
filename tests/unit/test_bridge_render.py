"""The CPU bridge's manifests (siesta.operator.bridge_render): a CPU twin of the model's server
that nothing counting GPU replicas can mistake for one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from siesta.api.contract import (
    BRIDGE_LABEL,
    MODEL_LABEL,
    REQUIRE_GPU_ENV,
    bridge_name,
)
from siesta.operator import bridge_render, render
from siesta.operator.settings import OperatorSettings
from support.specs import make_spec

OWNER = render.Owner(name="reception-7b", namespace="ai", uid="0000-uid")
SETTINGS = OperatorSettings(
    server_image="example.com/siesta-server:test",
    server_cuda_image="example.com/siesta-server:test-cuda",
    drain_timeout=timedelta(seconds=45),
)
RULES: dict[str, Any] = {
    "policyTypes": ["Ingress"],
    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "siesta-gateway"}}}]}],
}
CPU_POOL = {"eks.amazonaws.com/nodegroup": "cpu"}
CPU_TAINT = {"key": "pool", "operator": "Equal", "value": "cpu", "effect": "NoSchedule"}


def bridged(**bridge: Any) -> Any:
    return make_spec(
        bridge=bridge,
        server={"image": "example.com/custom:cuda", "extraArgs": ["--log-level", "debug"]},
        gpu={"count": 1, "products": ["Tesla-T4"], "nodeSelector": {"gpu": "yes"}},
        pod={"nodeSelector": {"karpenter.sh/capacity-type": "on-demand"}},
        adapters=[{"name": "support", "uri": "https://models.example.com/support.gguf"}],
    )


def statefulset(**bridge: Any) -> dict[str, Any]:
    return bridge_render.statefulset(OWNER, bridged(**bridge), SETTINGS)


def container(sts: dict[str, Any]) -> dict[str, Any]:
    return sts["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


def env(sts: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container(sts)["env"]}


def test_a_model_without_a_bridge_renders_as_before() -> None:
    spec = make_spec()
    assert bridge_render.children(OWNER, spec, SETTINGS) == []
    assert [c["kind"] for c in render.children(OWNER, bridged(), SETTINGS)] == [
        c["kind"] for c in render.children(OWNER, spec, SETTINGS)
    ]


def test_the_bridge_is_named_and_labelled_apart_from_the_model() -> None:
    sts = statefulset()
    model_selector = render.selector_labels(OWNER.name)
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["metadata"]["name"] == bridge_name(OWNER.name) == "reception-7b-bridge"
    for labels in (sts["metadata"]["labels"], pod_labels):
        assert labels[BRIDGE_LABEL] == OWNER.name
        assert MODEL_LABEL not in labels
    # Neither the model's StatefulSet nor its Services ever select a bridge pod.
    assert not all(pod_labels.get(key) == value for key, value in model_selector.items())
    assert sts["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "siesta-bridge",
        BRIDGE_LABEL: OWNER.name,
    }
    assert sts["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid


def test_the_bridge_runs_the_same_model_on_the_cpu() -> None:
    sts = statefulset()
    pod = sts["spec"]["template"]["spec"]
    values = env(sts)
    assert container(sts)["image"] == SETTINGS.server_image  # never the CUDA build
    assert values["SIESTA_GPU_LAYERS"] == "0"
    assert REQUIRE_GPU_ENV not in values
    assert values["SIESTA_ALIAS"] == OWNER.name
    assert values["SIESTA_MODEL"] == "https://models.example.com/m.gguf"
    assert container(sts)["args"] == [
        "--lora",
        "support=https://models.example.com/support.gguf@1",
        "--log-level",
        "debug",
    ]
    assert container(sts)["resources"] == {"requests": {"cpu": "4", "memory": "8Gi"}}
    assert "affinity" not in pod
    assert "tolerations" not in pod
    assert "nodeSelector" not in pod


def test_its_own_file_threads_context_resources_and_cpu_pool() -> None:
    sha = "a" * 64
    sts = statefulset(
        uri="https://models.example.com/m-q4.gguf",
        sha256=sha,
        threads=8,
        contextSize=2048,
        resources={"requests": {"cpu": "8", "memory": "6Gi"}, "limits": {"memory": "7Gi"}},
        nodeSelector=CPU_POOL,
        tolerations=[CPU_TAINT],
    )
    pod = sts["spec"]["template"]["spec"]
    values = env(sts)
    assert (values["SIESTA_MODEL"], values["SIESTA_SHA256"]) == (
        "https://models.example.com/m-q4.gguf",
        sha,
    )
    assert values["SIESTA_CTX_SIZE"] == "2048"
    assert container(sts)["args"][-2:] == ["--threads", "8"]
    assert container(sts)["resources"] == {
        "requests": {"cpu": "8", "memory": "6Gi"},
        "limits": {"memory": "7Gi"},
    }
    assert pod["nodeSelector"] == CPU_POOL
    assert pod["tolerations"] == [CPU_TAINT]


def test_the_cache_is_node_local_scratch_space() -> None:
    sts = statefulset()
    assert "volumeClaimTemplates" not in sts["spec"]
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes[render.CACHE_VOLUME] == {"name": render.CACHE_VOLUME, "emptyDir": {}}
    mounts = {m["name"]: m["mountPath"] for m in container(sts)["volumeMounts"]}
    assert mounts[render.CACHE_VOLUME] == render.CACHE_DIR


def test_service_and_network_policy_select_the_bridge_pods() -> None:
    with_policy = OperatorSettings(model_network_policy=RULES)
    kinds = [
        (c["kind"], c["metadata"]["name"])
        for c in bridge_render.children(OWNER, bridged(), with_policy)
    ]
    assert kinds == [
        ("Service", "reception-7b-bridge"),
        ("NetworkPolicy", "reception-7b-bridge"),
        ("StatefulSet", "reception-7b-bridge"),
    ]
    service, policy, _ = bridge_render.children(OWNER, bridged(), with_policy)
    selector = bridge_render.bridge_selector_labels(OWNER.name)
    assert service["spec"]["selector"] == selector
    assert service["metadata"]["labels"][BRIDGE_LABEL] == OWNER.name
    assert policy["spec"] == {"podSelector": {"matchLabels": selector}, **RULES}
    without = bridge_render.children(OWNER, bridged(), SETTINGS)
    assert [c["kind"] for c in without] == ["Service", "StatefulSet"]


def test_the_config_hash_follows_the_bridge_settings() -> None:
    first = statefulset()["metadata"]["annotations"]
    assert first == statefulset()["metadata"]["annotations"]
    assert first != statefulset(threads=2)["metadata"]["annotations"]
