"""`siesta explain`, `siesta preview` and `siesta crds` as users run them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OFFICE = REPO / "deploy" / "examples" / "t4-office-hours.yaml"


def siesta(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "siesta", *args], capture_output=True, text=True, check=False
    )


def test_preview_json_lists_each_change_in_local_time() -> None:
    result = siesta(
        "preview",
        "-f",
        str(OFFICE),
        "--from",
        "2026-11-27T12:00:00Z",
        "--to",
        "2026-11-30T12:00:00Z",
        "-o",
        "json",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {"time": "2026-11-27T13:00:00+01:00", "minReplicas": 1, "window": "office-hours"},
        {"time": "2026-11-27T18:00:00+01:00", "minReplicas": 0, "window": None},
        {"time": "2026-11-30T07:50:00+01:00", "minReplicas": 1, "window": "office-hours"},
    ]


def test_preview_lists_the_bridge_windows() -> None:
    result = siesta(
        "preview",
        "-f",
        str(REPO / "deploy" / "examples" / "t4-night-bridge.yaml"),
        "--from",
        "2026-12-07T12:00:00+01:00",
        "--to",
        "2026-12-08T12:00:00+01:00",
        "-o",
        "json",
    )
    assert result.returncode == 0, result.stderr
    bridge = [entry for entry in json.loads(result.stdout) if "bridgeReplicas" in entry]
    assert bridge == [
        {"time": "2026-12-07T12:00:00+01:00", "bridgeReplicas": 0, "window": None},
        {"time": "2026-12-07T20:00:00+01:00", "bridgeReplicas": 1, "window": "nights"},
        {"time": "2026-12-08T07:00:00+01:00", "bridgeReplicas": 0, "window": None},
    ]


def test_explain_json_shape() -> None:
    result = siesta(
        "explain",
        "-f",
        str(OFFICE),
        "--at",
        "2026-11-25T18:30:00+01:00",
        "--replicas",
        "1",
        "--last-active",
        "2026-11-25T18:20:00+01:00",
        "-o",
        "json",
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload == {
        "desiredReplicas": 1,
        "reasons": [
            "last active 2026-11-25T17:20Z; idle timeout 15m ends 2026-11-25T17:35Z",
            "load 0 at 3 per replica wants 0",
            "outside schedule windows; replicas.min is 0",
        ],
        "nextChange": "2026-11-25T18:35:00+01:00",
    }


def test_explain_writes_lists_the_operators_plan() -> None:
    result = siesta(
        "explain", "-f", str(OFFICE), "--at", "2026-11-28T22:30:00+01:00", "--pending", "1",
        "--writes", "-o", "json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    writes = json.loads(result.stdout)["writes"]
    assert [line.split(" (")[0].split(":")[0] for line in writes] == [
        "scale StatefulSet to 1",
        "event ScaledUp",
        "status",
    ]


def test_explain_unavailable_metric_holds() -> None:
    result = siesta(
        "explain",
        "-f",
        str(OFFICE),
        "--at",
        "2026-11-25T23:00:00Z",
        "--replicas",
        "2",
        "--metric",
        "unavailable",
        "-o",
        "json",
    )
    assert json.loads(result.stdout)["desiredReplicas"] == 2


def test_explain_text_names_the_next_transition() -> None:
    result = siesta("explain", "-f", str(OFFICE), "--at", "2026-11-25T12:00:00Z", "--replicas", "1")
    assert result.returncode == 0
    assert "inside window office-hours" in result.stdout
    assert "next: 0 replica(s) at 2026-11-25T18:00:00+01:00" in result.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "apiVersion: siesta.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: m}\nspec:\n  model: {uri: https://x/m.gguf}\n  replicas: {min: 3, max: 1}\n",
            "spec.replicas: replicas.min must be <= replicas.max",
        ),
        (
            "apiVersion: siesta.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: m}\nspec:\n  model: {}\n",
            "spec.model.uri: Field required",
        ),
        ("kind: [unclosed", "not valid YAML"),
        ("kind: ConfigMap\n", "no ModelDeployment in this file"),
    ],
)
def test_invalid_files_give_one_line_and_exit_2(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "md.yaml"
    path.write_text(content)
    result = siesta("explain", "-f", str(path), "--at", "2026-11-25T12:00:00Z")
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--at", "tomorrow"], "--at: 'tomorrow' is not an ISO 8601 time"),
        (["--at", "2026-11-25T12:00:00"], "needs a UTC offset"),
        (
            ["--at", "2026-11-25T12:00:00Z", "--metric", "lots"],
            "--metric: 'lots' is neither a number nor 'unavailable'",
        ),
    ],
)
def test_bad_arguments_exit_2(args: list[str], message: str) -> None:
    result = siesta("explain", "-f", str(OFFICE), *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_crds_command_writes_the_committed_crd(tmp_path: Path) -> None:
    result = siesta("crds", "--output-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    written = tmp_path / "siesta.dev_modeldeployments.yaml"
    assert written.read_text() == (REPO / "crds" / written.name).read_text()


def test_console_script_is_installed() -> None:
    assert shutil.which("siesta") or (Path(sys.executable).parent / "siesta").exists()
