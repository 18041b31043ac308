"""The release workflow publishes exactly what the chart, the GitOps examples and the docs name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from siesta.operator.settings import DEFAULT_SERVER_CUDA_IMAGE, DEFAULT_SERVER_IMAGE

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
CHART = ROOT / "charts" / "siesta"


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _published(version: str) -> tuple[set[str], str]:
    """(image references, chart OCI repository) the workflow pushes for `version`."""
    workflow = _load(WORKFLOW)
    env = workflow["env"]
    prefix = f"{env['REGISTRY']}/{env['OWNER']}"
    images = {
        f"{prefix}/{entry['name']}:{version}{entry['suffix']}"
        for entry in workflow["jobs"]["image"]["strategy"]["matrix"]["include"]
    }
    push = next(s for s in workflow["jobs"]["chart"]["steps"] if s.get("id") == "push")
    assert 'oci://$REGISTRY/$OWNER/charts"' in push["run"]
    return images, f"oci://{prefix}/charts/{_load(CHART / 'Chart.yaml')['name']}"


def test_runs_on_version_tags_only() -> None:
    workflow = _load(WORKFLOW)
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert set(triggers) == {"push"}
    assert triggers["push"]["tags"] == ["v[0-9]+.[0-9]+.[0-9]+"]


def test_chart_defaults_name_published_images() -> None:
    chart = _load(CHART / "Chart.yaml")
    values = _load(CHART / "values.yaml")
    version = chart["appVersion"]
    assert chart["version"] == version
    images, _ = _published(version)
    control_plane = f"{values['image']['repository']}:{values['image']['tag'] or version}"
    assert control_plane in images
    assert values["operator"]["serverImage"] in images
    assert values["operator"]["serverImage"] == DEFAULT_SERVER_IMAGE
    assert values["operator"]["serverCudaImage"] in images
    assert values["operator"]["serverCudaImage"] == DEFAULT_SERVER_CUDA_IMAGE
    assert f"{values['operator']['serverImage']}-cuda" == values["operator"]["serverCudaImage"]
    assert len(images) == 3


def test_gitops_examples_install_the_published_chart() -> None:
    version = _load(CHART / "Chart.yaml")["version"]
    _, chart_repo = _published(version)
    argocd = list(yaml.safe_load_all((ROOT / "deploy/gitops/argocd/application.yaml").read_text()))
    app = next(
        d for d in argocd if d["kind"] == "Application" and d["metadata"]["name"] == "siesta"
    )
    repo = next(d for d in argocd if d["kind"] == "Secret")["stringData"]
    assert repo["enableOCI"] == "true"
    assert repo["type"] == "helm"
    source = app["spec"]["source"]
    assert source["repoURL"] == repo["url"]
    assert f"oci://{source['repoURL']}/{source['chart']}" == chart_repo
    assert source["targetRevision"] == version
    flux = list(yaml.safe_load_all((ROOT / "deploy/gitops/flux/siesta.yaml").read_text()))
    oci = next(d for d in flux if d["kind"] == "OCIRepository")
    assert oci["spec"]["url"] == chart_repo


def test_release_doc_names_every_artifact() -> None:
    doc = (ROOT / "docs" / "releases.md").read_text()
    images, chart_repo = _published("X.Y.Z")
    for reference in [*images, chart_repo]:
        assert f"`{reference}" in doc, reference
