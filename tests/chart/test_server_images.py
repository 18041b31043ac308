"""Every install path gives the operator the CPU and the CUDA server image, and the operator,
run with what the chart renders, gives GPU models the CUDA one.

The paths: the chart's defaults, docs/eks.md's values (charts/siesta/ci/eks-values.yaml),
the Argo CD and Flux examples (their values over the chart), and the plain manifests in
deploy/ (the kustomize base). Each is rendered with the real helm; the operator part runs
render.statefulset (pure) with settings read from the rendered Deployment's env.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from localworld.helm import ROOT, objects, operator_env, template
from siesta.api.contract import REQUIRE_GPU_ENV
from siesta.operator import render
from siesta.operator.settings import (
    DEFAULT_SERVER_CUDA_IMAGE,
    DEFAULT_SERVER_IMAGE,
    OperatorSettings,
)
from support.specs import make_spec

GITOPS = ROOT / "deploy" / "gitops"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _argocd_values() -> dict[str, Any]:
    app = next(
        doc
        for doc in _documents(GITOPS / "argocd" / "application.yaml")
        if doc["kind"] == "Application" and doc["metadata"]["name"] == "siesta"
    )
    return app["spec"]["source"]["helm"]["valuesObject"]  # type: ignore[no-any-return]


def _flux_values() -> dict[str, Any]:
    release = next(
        doc for doc in _documents(GITOPS / "flux" / "siesta.yaml") if doc["kind"] == "HelmRelease"
    )
    return release["spec"]["values"]  # type: ignore[no-any-return]


def _rendered(path: str, tmp_path: Path) -> list[dict[str, Any]]:
    """The objects of one install path."""
    if path == "deploy/ (kustomize base)":
        kustomization = yaml.safe_load((ROOT / "deploy" / "kustomization.yaml").read_text())
        return [
            doc for name in kustomization["resources"] for doc in _documents(ROOT / "deploy" / name)
        ]
    values: dict[str, Any] | Path | None = {
        # The defaults plus the one choice every install makes: the gateway's API keys.
        "chart defaults": {"gateway": {"apiKeys": {"existingSecret": "siesta-api-keys"}}},
        "docs/eks.md values": ROOT / "charts" / "siesta" / "ci" / "eks-values.yaml",
        "Argo CD": _argocd_values(),
        "Flux": _flux_values(),
    }[path]
    if isinstance(values, dict):
        file = tmp_path / "values.yaml"
        file.write_text(yaml.safe_dump(values))
        values = file
    return objects(template(*(["-f", str(values)] if values else [])))


PATHS = ["chart defaults", "docs/eks.md values", "Argo CD", "Flux", "deploy/ (kustomize base)"]


@pytest.mark.parametrize("path", PATHS)
def test_every_install_path_names_both_server_images(path: str, tmp_path: Path) -> None:
    env = operator_env(_rendered(path, tmp_path))
    assert env["SIESTA_SERVER_IMAGE"] == DEFAULT_SERVER_IMAGE
    assert env["SIESTA_SERVER_CUDA_IMAGE"] == DEFAULT_SERVER_CUDA_IMAGE
    assert f"{DEFAULT_SERVER_IMAGE}-cuda" == DEFAULT_SERVER_CUDA_IMAGE


def test_operator_with_chart_defaults_gives_gpu_models_the_cuda_image(tmp_path: Path) -> None:
    settings = OperatorSettings.from_env(operator_env(_rendered("chart defaults", tmp_path)))
    owner = render.Owner(name="reception-7b", namespace="ai", uid="uid")

    def server(**sections: Any) -> dict[str, Any]:
        sts = render.statefulset(owner, make_spec(**sections), settings)
        return sts["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]

    def env(container: dict[str, Any]) -> dict[str, str]:
        return {item["name"]: item["value"] for item in container["env"]}

    t4 = server(gpu={"count": 1, "products": ["Tesla-T4"]})
    assert t4["image"] == "ghcr.io/siesta-dev/siesta-server:0.1.0-cuda"
    assert env(t4)[REQUIRE_GPU_ENV] == "1"
    cpu = server(gpu={"count": 0})
    assert cpu["image"] == "ghcr.io/siesta-dev/siesta-server:0.1.0"
    assert REQUIRE_GPU_ENV not in env(cpu)
    assert server(gpu={"count": 1}, server={"image": "mine:1"})["image"] == "mine:1"
