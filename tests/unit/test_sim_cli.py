"""`siesta simulate` end to end in-process: table, JSON, plot; and the simulator's purity."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from siesta.cli import main

EXAMPLES = Path(__file__).parents[2] / "deploy" / "examples"
TRACE = (
    "# span: 2026-11-23T00:00:00+01:00 2026-11-24T00:00:00+01:00\n"
    "timestamp,duration\n"
    "2026-11-23T06:00:00Z,10\n"  # 07:00 Berlin: before the window, a cold start
    "2026-11-23T10:00:00Z,10\n"  # 11:00: inside office hours
    "2026-11-23T20:00:00Z,10\n"  # 21:00: evening
)


def test_json_output_has_every_policy_and_the_resolved_world(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "day.csv"
    trace.write_text(TRACE)
    arguments = [
        "simulate",
        "-f",
        str(EXAMPLES / "t4-office-hours.yaml"),
        "--trace",
        str(trace),
        "-o",
        "json",
    ]
    assert main([*arguments, "--model-load", "90s"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["hours"] == 24.0
    assert report["world"]["instanceType"] == "g4dn.xlarge"
    assert report["world"]["modelLoadSeconds"] == 90.0
    policies = {p["policy"]: p for p in report["policies"]}
    assert list(policies) == ["always-on", "idle-only", "schedule-only", "siesta"]
    assert policies["always-on"]["nodeHours"] == 24.0
    assert policies["siesta"]["coldStarts"] == 2  # 07:00 and 21:00; 11:00 is warm
    assert policies["siesta"]["coldStartsInWindow"] == 0
    assert policies["idle-only"]["coldStartsInWindow"] == 1
    assert policies["schedule-only"]["rejected"] == 2
    assert policies["siesta"]["waits"]["max"] == 270.0  # 180 s node + 90 s model


def test_table_output_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    trace = tmp_path / "day.csv"
    trace.write_text(TRACE)
    plot = tmp_path / "day.png"
    md = str(EXAMPLES / "t4-office-hours.yaml")
    assert (
        main(
            ["simulate", "-f", md, "--trace", str(trace), "--policy", "siesta", "--plot", str(plot)]
        )
        == 0
    )
    out = capsys.readouterr().out
    rows = [
        line.split()[0]
        for line in out.splitlines()
        if line and line.split()[0] in ("siesta", "always-on")
    ]
    assert rows == ["siesta"]
    assert f"plot: {plot}" in out
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_the_simulator_imports_no_kubernetes_client_and_no_matplotlib() -> None:
    code = (
        "import sys, siesta.sim.compare, siesta.sim.report, siesta.commands.simulate; "
        "bad = [m for m in ('kopf', 'kubernetes', 'matplotlib', 'aiohttp') if m in sys.modules]; "
        "print(bad)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_fine_tune_traces_compare_deployments_with_adapters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    traces = []
    for index in range(3):
        path = tmp_path / f"tune-{index}.csv"
        path.write_text(TRACE)
        traces += ["--fine-tune-trace", str(path)]
    example = str(EXAMPLES / "t4-three-fine-tunes.yaml")
    assert main(["simulate", "-f", example, *traces, "-o", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    separate, adapters = report["setups"]
    assert (separate["deployments"], adapters["deployments"]) == (3, 1)
    assert separate["requests"] == adapters["requests"] == 9
    # The same traffic three times: one node does what three did.
    assert adapters["nodeHours"] == pytest.approx(separate["nodeHours"] / 3, rel=0.01)
    assert main(["simulate", "-f", example, *traces[:2]]) == 2  # one trace is no comparison
    assert "at least two" in capsys.readouterr().err
