"""The chart's pre-pull DaemonSet (prepull.enabled): the CUDA server image on GPU nodes."""

from __future__ import annotations

from localworld.helm import CHART, find, helm, objects, template

AUTH = ("--set", "gateway.auth=none")


def test_off_by_default() -> None:
    assert "DaemonSet" not in {d["kind"] for d in objects(template(*AUTH))}


def test_pulls_the_cuda_image_on_every_gpu_node_before_it_is_initialized() -> None:
    docs = objects(
        template(
            *AUTH,
            "--set",
            "prepull.enabled=true",
            "--set",
            "operator.serverCudaImage=registry.example/siesta-server:9.9-cuda",
        )
    )
    spec = find(docs, "DaemonSet", "siesta-prepull")["spec"]["template"]["spec"]
    # Siesta's GPU nodes, whatever their taints (GPU taint, Karpenter's startup taints).
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert spec["tolerations"] == [{"operator": "Exists"}]
    (pull,) = spec["initContainers"]
    assert pull["image"] == "registry.example/siesta-server:9.9-cuda"
    assert pull["command"] == ["true"]
    assert {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"} in pull["env"]
    (pause,) = spec["containers"]
    assert pause["image"].startswith("registry.k8s.io/pause:")
    for container in (pull, pause):
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["resources"]["requests"] == {"cpu": "1m", "memory": "8Mi"}
    assert spec["automountServiceAccountToken"] is False
    assert "nvidia.com/gpu" not in str(pause["resources"])  # it never holds a GPU


def test_lint_with_prepull() -> None:
    helm("lint", str(CHART), *AUTH, "--set", "prepull.enabled=true")
