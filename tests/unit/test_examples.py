"""Every ModelDeployment in deploy/examples/ is valid under the same models as the CRD."""

from __future__ import annotations

from pathlib import Path

import pytest

from siesta.api.loader import load_model_deployments
from siesta.policy import CompiledSchedule

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(
    path
    for path in (REPO / "deploy" / "examples").rglob("*.yaml")
    if "kind: ModelDeployment" in path.read_text()
)


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 1


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_is_valid(path: Path) -> None:
    for md in load_model_deployments(path):
        CompiledSchedule(md.spec.schedule)  # time zone and crons evaluate too
