"""The Argo CD health check for ModelDeployment (Lua), run with lupa against sample objects.

Argo CD runs the script with the live object as the global `obj` and reads `hs.status` /
`hs.message` from the returned table; the same is done here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import LuaRuntime

from siesta.api.contract import API_VERSION

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "gitops" / "argocd" / "modeldeployment-health.lua"
CONFIGMAP = ROOT / "deploy" / "gitops" / "argocd" / "argocd-cm-health.yaml"


def health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(SCRIPT.read_text())
    return str(result["status"]), str(result["message"])


def md(status: dict[str, Any] | None = None, generation: int = 1, **spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "ModelDeployment",
        "metadata": {"name": "reception-7b", "namespace": "ai", "generation": generation},
        "spec": {"model": {"uri": "https://models.example.com/m.gguf"}, **spec},
    }
    if status is not None:
        obj["status"] = {"observedGeneration": 1, **status}
    return obj


def condition(kind: str, status: str, message: str = "") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": kind, "message": message}


CASES = [
    ("no status yet", md(), "Progressing", "waiting for the Siesta operator"),
    ("ready", md({"phase": "Ready", "reason": "inside window office-hours"}), "Healthy", "Ready"),
    (
        "scaled to zero is healthy",
        md({"phase": "ScaledToZero", "reason": "idle since 09:12"}),
        "Healthy",
        "ScaledToZero: idle since 09:12",
    ),
    ("waiting for a GPU node", md({"phase": "WaitingForGPU"}), "Progressing", "WaitingForGPU"),
    ("loading", md({"phase": "Loading"}), "Progressing", "Loading"),
    ("scaling", md({"phase": "Scaling"}), "Progressing", "Scaling"),
    (
        "degraded phase",
        md({"phase": "Degraded", "reason": "reception-7b-0: ImagePullBackOff"}),
        "Degraded",
        "ImagePullBackOff",
    ),
    (
        "invalid schedule condition",
        md(
            {
                "phase": "Ready",
                "conditions": [
                    condition("Ready", "True"),
                    condition("ScheduleValid", "False", "unknown time zone 'Europe/Berlinn'"),
                ],
            }
        ),
        "Degraded",
        "ScheduleValid: unknown time zone",
    ),
    (
        "invalid spec condition",
        md({"phase": "Degraded", "conditions": [condition("SpecValid", "False", "bad uri")]}),
        "Degraded",
        "SpecValid: bad uri",
    ),
    ("paused spec", md({"phase": "Ready"}, paused=True), "Suspended", "paused"),
    ("paused phase", md({"phase": "Paused", "reason": "paused"}), "Suspended", "paused"),
    (
        "spec change not yet observed",
        md({"phase": "Ready"}, generation=2),
        "Progressing",
        "not yet observed",
    ),
    (
        "healthy conditions do not degrade",
        md(
            {
                "phase": "ScaledToZero",
                "conditions": [
                    condition("SpecValid", "True"),
                    condition("ScheduleValid", "True"),
                    condition("MetricsAvailable", "False", "Prometheus unreachable"),
                ],
            }
        ),
        "Healthy",
        "ScaledToZero",
    ),
]


@pytest.mark.parametrize(
    ("obj", "expected", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_health(obj: dict[str, Any], expected: str, message: str) -> None:
    status, text = health(obj)
    assert status == expected
    assert message in text


def test_every_phase_is_covered() -> None:
    from siesta.api.models import Phase

    for phase in Phase:
        status, _ = health(md({"phase": phase.value}))
        assert status in {"Healthy", "Progressing", "Degraded", "Suspended"}


def test_configmap_carries_the_same_script() -> None:
    configmap = yaml.safe_load(CONFIGMAP.read_text())
    script = configmap["data"]["resource.customizations.health.siesta.dev_ModelDeployment"]
    assert script == SCRIPT.read_text()
