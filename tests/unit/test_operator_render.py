"""The manifests a ModelDeployment owns: pure functions of (model, settings), no I/O."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from siesta.api.contract import API_VERSION, CONFIG_HASH_ANNOTATION, MODEL_LABEL
from siesta.operator import render
from siesta.operator.settings import OperatorSettings
from support.specs import make_spec

OWNER = render.Owner(name="reception-7b", namespace="ai", uid="0000-uid")
SETTINGS = OperatorSettings(
    server_image="example.com/siesta-server:test",
    server_cuda_image="example.com/siesta-server:test-cuda",
    drain_timeout=timedelta(seconds=45),
)


def statefulset(**sections: Any) -> dict[str, Any]:
    return render.statefulset(OWNER, make_spec(**sections), SETTINGS)


def pod_spec(sts: dict[str, Any]) -> dict[str, Any]:
    return sts["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def container(sts: dict[str, Any]) -> dict[str, Any]:
    return pod_spec(sts)["containers"][0]  # type: ignore[no-any-return]


def env(sts: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container(sts)["env"]}


def test_labels_owner_and_names_follow_the_contract() -> None:
    sts = statefulset()
    labels = {
        "app.kubernetes.io/name": "siesta-server",
        "app.kubernetes.io/instance": "reception-7b",
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/part-of": "siesta",
        "app.kubernetes.io/managed-by": "siesta-operator",
        MODEL_LABEL: "reception-7b",
    }
    assert sts["metadata"]["name"] == "reception-7b"
    assert sts["metadata"]["namespace"] == "ai"
    assert sts["metadata"]["labels"] == labels
    assert sts["spec"]["template"]["metadata"]["labels"] == labels
    assert sts["spec"]["serviceName"] == "reception-7b-pods"
    assert sts["spec"]["replicas"] == 0
    assert sts["metadata"]["ownerReferences"] == [
        {
            "apiVersion": API_VERSION,
            "kind": "ModelDeployment",
            "name": "reception-7b",
            "uid": "0000-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    selector = sts["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()


def test_server_settings_become_environment() -> None:
    sts = statefulset(
        server={
            "contextSize": 8192,
            "parallel": 2,
            "gpuLayers": 20,
            "extraArgs": ["--threads", "4"],
        }
    )
    assert container(sts)["image"] == "example.com/siesta-server:test-cuda"
    assert container(sts)["args"] == ["--threads", "4"]
    assert env(sts) == {
        "SIESTA_MODEL": "https://models.example.com/m.gguf",
        "SIESTA_ALIAS": "reception-7b",
        "SIESTA_HOST": "0.0.0.0",
        "SIESTA_PORT": "8080",
        "SIESTA_METRICS_PORT": "9090",
        "SIESTA_CTX_SIZE": "8192",
        "SIESTA_PARALLEL": "2",
        "SIESTA_GPU_LAYERS": "20",
        "SIESTA_CACHE_DIR": "/models",
        "SIESTA_DRAIN_TIMEOUT": "45",
        "SIESTA_REQUIRE_GPU": "1",
    }


def test_spec_image_alias_and_sha_win() -> None:
    sha = "ab" * 32
    spec = make_spec(server={"image": "mine:1"})
    spec = spec.model_copy(
        update={"model": spec.model.model_copy(update={"alias": "chat", "sha256": sha})}
    )
    sts = render.statefulset(OWNER, spec, SETTINGS)
    assert container(sts)["image"] == "mine:1"
    assert env(sts)["SIESTA_ALIAS"] == "chat"
    assert env(sts)["SIESTA_SHA256"] == sha


def test_gpu_limit_affinity_and_default_toleration() -> None:
    sts = statefulset(gpu={"count": 2, "products": ["Tesla-T4", "nvidia-a10g"]})
    assert container(sts)["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    terms = pod_spec(sts)["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    (expressions,) = [term["matchExpressions"] for term in terms["nodeSelectorTerms"]]
    assert {"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]} in expressions
    (products,) = [e["values"] for e in expressions if e["key"] == "nvidia.com/gpu.product"]
    for spelling in ("Tesla-T4", "TESLA-T4", "tesla-t4", "NVIDIA-A10G", "nvidia-a10g"):
        assert spelling in products
    assert pod_spec(sts)["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["Tesla-T4"], ["Tesla-T4", "TESLA-T4", "tesla-t4"]),
        (["TESLA-T4"], ["TESLA-T4", "Tesla-T4", "tesla-t4"]),
        (["nvidia-l4"], ["nvidia-l4", "NVIDIA-L4"]),
        (["Custom-GPU"], ["Custom-GPU", "CUSTOM-GPU", "custom-gpu"]),
    ],
)
def test_product_variants_match_without_case(given: list[str], expected: list[str]) -> None:
    assert render.product_variants(given) == expected


def test_gpu_any_product_and_cpu_only() -> None:
    any_gpu = statefulset(gpu={"count": 1})
    terms = pod_spec(any_gpu)["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    keys = [e["key"] for e in terms["nodeSelectorTerms"][0]["matchExpressions"]]
    assert keys == ["nvidia.com/gpu.present"]

    cpu = statefulset(
        gpu={"count": 0}, server={"resources": {"requests": {"cpu": "2", "memory": "4Gi"}}}
    )
    assert "affinity" not in pod_spec(cpu)
    assert "tolerations" not in pod_spec(cpu)
    assert container(cpu)["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"}}
    assert env(cpu)["SIESTA_GPU_LAYERS"] == "0"
    assert container(cpu)["image"] == "example.com/siesta-server:test"
    assert "SIESTA_REQUIRE_GPU" not in env(cpu)


def test_gpu_models_get_the_cuda_image_and_must_run_on_the_gpu() -> None:
    gpu = statefulset(gpu={"count": 1})
    assert container(gpu)["image"] == "example.com/siesta-server:test-cuda"
    assert env(gpu)["SIESTA_REQUIRE_GPU"] == "1"
    # gpuLayers: 0 on a GPU model asks for the CPU: nothing to require.
    assert "SIESTA_REQUIRE_GPU" not in env(statefulset(server={"gpuLayers": 0}))
    # The model's own image wins for GPU and CPU models alike.
    for count in (0, 1):
        own = statefulset(gpu={"count": count}, server={"image": "mine:1"})
        assert container(own)["image"] == "mine:1"


def test_explicit_tolerations_and_node_selector() -> None:
    sts = statefulset(
        gpu={
            "count": 1,
            "nodeSelector": {"eks.amazonaws.com/nodegroup": "gpu-g4dn"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
            ],
        }
    )
    assert pod_spec(sts)["nodeSelector"] == {"eks.amazonaws.com/nodegroup": "gpu-g4dn"}
    assert pod_spec(sts)["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
    ]


@pytest.mark.parametrize("when_scaled", ["Retain", "Delete"])
def test_remote_model_gets_a_cache_claim_with_retention(when_scaled: str) -> None:
    sts = statefulset(cache={"size": "40Gi", "storageClassName": "gp3", "whenScaled": when_scaled})
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "model-cache"
    assert claim["spec"]["resources"]["requests"]["storage"] == "40Gi"
    assert claim["spec"]["storageClassName"] == "gp3"
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenScaled": when_scaled,
        "whenDeleted": "Delete",
    }
    assert {"name": "model-cache", "mountPath": "/models"} in container(sts)["volumeMounts"]


def test_pvc_model_mounts_the_claim_read_only() -> None:
    sts = statefulset(model={"uri": "pvc://shared-models/llama/7b.gguf"})
    assert "volumeClaimTemplates" not in sts["spec"]
    volumes = {v["name"]: v for v in pod_spec(sts)["volumes"]}
    assert volumes["model-source"]["persistentVolumeClaim"] == {
        "claimName": "shared-models",
        "readOnly": True,
    }
    mounts = {m["name"]: m for m in container(sts)["volumeMounts"]}
    assert mounts["model-source"] == {
        "name": "model-source",
        "mountPath": "/model-source",
        "readOnly": True,
    }
    assert env(sts)["SIESTA_MODEL"] == "/model-source/llama/7b.gguf"


def test_model_inside_the_image_needs_no_claim() -> None:
    sts = statefulset(model={"uri": "file:///opt/models/tiny.gguf"})
    assert "volumeClaimTemplates" not in sts["spec"]
    for volume in pod_spec(sts)["volumes"]:
        assert volume["emptyDir"]["medium"] == "Memory"  # never blocks the autoscaler


def test_adapters_become_lora_flags_before_extra_args() -> None:
    sts = statefulset(
        adapters=[
            {"name": "support", "uri": "https://models.example.com/support.gguf"},
            {"name": "sales", "uri": "/opt/sales.gguf", "scale": 0.5, "sha256": "AB" * 32},
        ],
        server={"extraArgs": ["--threads", "8"]},
    )
    assert container(sts)["args"] == [
        "--lora", "support=https://models.example.com/support.gguf@1",
        "--lora", "sales=/opt/sales.gguf@0.5",
        "--lora-sha256", "sales=" + "ab" * 32,
        "--threads", "8",
    ]  # fmt: skip


def test_pvc_adapters_mount_each_claim_once() -> None:
    sts = statefulset(
        model={"uri": "pvc://shared-models/llama/7b.gguf"},
        adapters=[
            {"name": "a", "uri": "pvc://shared-models/loras/a.gguf"},
            {"name": "b", "uri": "pvc://team-loras/b.gguf"},
        ],
    )
    volumes = {v["name"]: v for v in pod_spec(sts)["volumes"]}
    assert volumes["model-source-1"]["persistentVolumeClaim"]["claimName"] == "team-loras"
    assert len([v for v in volumes.values() if "persistentVolumeClaim" in v]) == 2
    assert container(sts)["args"] == [
        "--lora", "a=/model-source/loras/a.gguf@1",
        "--lora", "b=/model-source-1/b.gguf@1",
    ]  # fmt: skip
    assert env(sts)["SIESTA_MODEL"] == "/model-source/llama/7b.gguf"


def test_a_remote_adapter_of_a_local_model_gets_the_cache_claim() -> None:
    sts = statefulset(
        model={"uri": "file:///opt/models/base.gguf"},
        adapters=[{"name": "a", "uri": "https://models.example.com/a.gguf"}],
    )
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "model-cache"


def test_probes_never_kill_a_loading_pod_and_drain_has_time() -> None:
    sts = statefulset()
    server = container(sts)
    startup = server["startupProbe"]
    assert startup["httpGet"]["path"] == "/health"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 3600
    # A waking model is Ready within a second of loading: requests are held until then.
    assert startup["periodSeconds"] == 1
    assert server["readinessProbe"]["httpGet"]["path"] == "/health"
    # The liveness probe only starts after the startup probe succeeded, and ignores /health.
    assert "httpGet" not in server["livenessProbe"]
    assert server["lifecycle"]["preStop"] == {"sleep": {"seconds": render.PRESTOP_SLEEP_SECONDS}}
    assert pod_spec(sts)["terminationGracePeriodSeconds"] > 45 + render.PRESTOP_SLEEP_SECONDS


def test_pods_are_safe_to_evict_and_hardened() -> None:
    sts = statefulset()
    assert sts["spec"]["template"]["metadata"]["annotations"] == {render.SAFE_TO_EVICT: "true"}
    assert pod_spec(sts)["securityContext"]["runAsNonRoot"] is True
    assert container(sts)["securityContext"]["readOnlyRootFilesystem"] is True
    assert container(sts)["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_services() -> None:
    headless = render.headless_service(OWNER)
    assert headless["metadata"]["name"] == "reception-7b-pods"
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    service = render.service(OWNER)
    assert service["metadata"]["name"] == "reception-7b"
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]
    for child in (headless, service):
        assert child["metadata"]["ownerReferences"][0]["uid"] == "0000-uid"
        assert child["spec"]["selector"] == render.selector_labels("reception-7b")


def test_config_hash_changes_with_the_spec_only() -> None:
    first = statefulset(server={"contextSize": 4096})
    again = statefulset(server={"contextSize": 4096})
    changed = statefulset(server={"contextSize": 8192})
    stamp = CONFIG_HASH_ANNOTATION
    assert first["metadata"]["annotations"][stamp] == again["metadata"]["annotations"][stamp]
    assert first["metadata"]["annotations"][stamp] != changed["metadata"]["annotations"][stamp]
    assert [c["kind"] for c in render.children(OWNER, make_spec(), SETTINGS)] == [
        "Service",
        "Service",
        "StatefulSet",
    ]


def test_immutable_fields() -> None:
    sts = statefulset(cache={"size": "20Gi"})
    same = dict(sts["spec"])
    assert not render.immutable_fields_differ(sts, same)
    bigger = statefulset(cache={"size": "40Gi"})
    assert render.immutable_fields_differ(bigger, same)
    local = statefulset(model={"uri": "file:///m.gguf"})
    assert render.immutable_fields_differ(local, same)
    assert not render.immutable_fields_differ(statefulset(server={"parallel": 8}), same)
