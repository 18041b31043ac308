"""Every generated file is in step with its generator (`make generate` rewrites them all).

CRDs (crds/), the chart's CRD copy, README and dashboard, the plain manifests in deploy/
(rendered by `helm template`) and docs/api-reference.md.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from siesta.api.crd import render_crd
from siesta.api.reference import render_reference

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))  # the generators are scripts, not a package


def _script(name: str) -> Callable[[], dict[str, str]]:
    outputs: Callable[[], dict[str, str]] = importlib.import_module(name).outputs
    return outputs


GENERATORS: dict[str, Callable[[], dict[str, str]]] = {
    "siesta crds": lambda: {"crds/siesta.dev_modeldeployments.yaml": render_crd()},
    "siesta api-docs": lambda: {"docs/api-reference.md": render_reference()},
    "scripts/chart_crds.py": lambda: _script("chart_crds")(),
    "scripts/chart_readme.py": lambda: _script("chart_readme")(),
    "scripts/grafana_dashboard.py": lambda: _script("grafana_dashboard")(),
    "scripts/render_deploy.py": lambda: _script("render_deploy")(),
}


@pytest.mark.parametrize("generator", list(GENERATORS))
def test_generated_files_are_current(generator: str) -> None:
    drift = importlib.import_module("_generated").drift
    problems = drift(GENERATORS[generator]())
    assert not problems, (
        f"{generator} would change these files; run `make generate`:\n" + "\n".join(problems)
    )
