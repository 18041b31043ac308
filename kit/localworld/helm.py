"""Helm for the chart tests: the binary built by kit/cluster/build.sh, and rendering."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from localworld.cluster import cluster_paths

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "siesta"
RELEASE = "siesta"
NAMESPACE = "siesta-system"


def helm_binary() -> Path:
    """$HELM, else the test cluster's helm (`make cluster-build` builds it)."""
    if os.environ.get("HELM"):
        return Path(os.environ["HELM"])
    path = Path(cluster_paths()["CLUSTER_BIN_DIR"]) / "helm"
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make cluster-build` (or set HELM)", pytrace=False)
    return path


def helm(
    *args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(helm_binary()), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


def template(*args: str, chart: Path = CHART) -> str:
    return helm("template", RELEASE, str(chart), "-n", NAMESPACE, "--include-crds", *args).stdout


def objects(rendered: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    for doc in docs:
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name):
            return doc
    raise AssertionError(f"no {kind} {name or ''} in the rendered chart")


def operator_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The operator container's environment (name -> value) in rendered manifests."""
    pod = find(docs, "Deployment", "siesta-operator")["spec"]["template"]["spec"]
    return {item["name"]: item.get("value", "") for item in pod["containers"][0]["env"]}
