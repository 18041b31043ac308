"""`siesta report`: per-model spend, savings, wakes and p95 wake time from status.cost."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from siesta.cli import main
from siesta.commands.report import row
from siesta.operator import cost
from support.specs import utc

BERLIN = "Europe/Berlin"
MONDAY = utc("2026-11-23T00:00+01:00")
ON = (cost.NodeUse("n1", "g4dn.xlarge", 1.0, 0.6),)


def week_of_evenings() -> dict[str, Any]:
    """A model on for one hour every evening (19-20h) of a week, with one wake each."""
    state = cost.begin(MONDAY - timedelta(days=1), MONDAY, BERLIN)
    for day in range(7):
        evening = MONDAY + timedelta(days=day, hours=19)
        state = cost.advance(state, evening, (), 0, 1, 0.6, BERLIN)
        state = cost.record_wake(state, cost.Wake(evening, 200.0 + 10 * day, in_window=day == 0))
        for minute in range(0, 60, 10):  # on at 19:00 ... 19:50
            state = cost.advance(state, evening + timedelta(minutes=minute), ON, 1, 1, 0.6, BERLIN)
        state = cost.advance(state, evening + timedelta(minutes=60), (), 0, 1, 0.6, BERLIN)
    state = cost.advance(state, MONDAY + timedelta(days=6, hours=23), (), 0, 1, 0.6, BERLIN)
    return {
        "apiVersion": "siesta.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "reception", "namespace": "ai"},
        "spec": {"model": {"uri": "https://x/m.gguf"}},
        "status": {"cost": cost.to_status(state)},
    }


def test_rows_per_period() -> None:
    body = week_of_evenings()
    week = row(body, "week")
    assert week.spend == pytest.approx(7 * 0.6, abs=0.01)
    assert week.node_hours == pytest.approx(7.0)
    assert week.wakes == 7
    assert week.wakes_in_window == 1
    assert week.wake_p95_seconds == pytest.approx(257.0)
    assert week.saved == pytest.approx(week.always_on - week.spend, abs=0.01)
    two = row(body, 2)  # Sunday and Saturday
    assert two.wakes == 2
    assert two.spend == pytest.approx(2 * 0.6, abs=0.01)
    assert row({"metadata": {"name": "new"}}, "week").note == "no status.cost yet"


def test_report_from_a_saved_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "mds.yaml"
    saved.write_text(
        yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [week_of_evenings()]})
    )
    assert main(["report", "-f", str(saved), "--since", "7d"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == [
        "NAMESPACE", "NAME", "SPEND", "ALWAYS-ON", "SAVED", "NODE-H", "WAKES", "IN-WINDOW", "WAKE", "P95", "SINCE",
    ]  # fmt: skip
    assert table[1].split()[:3] == ["ai", "reception", "$4.20"]
    assert main(["report", "-f", str(saved), "-o", "json", "--since", "total"]) == 0
    [only] = json.loads(capsys.readouterr().out)
    assert only["wakes"] == 7
    assert main(["report", "-f", str(saved), "--since", "a fortnight"]) == 2
    assert "--since: 'a fortnight' is not Nd (7d), today, week or total" in capsys.readouterr().err
