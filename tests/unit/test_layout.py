"""The repository's test layout: pytest imports test modules by their basename (no
packages under tests/), so two files of one name hide each other; tests/ holds tests only."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_two_test_modules_share_a_name() -> None:
    names = Counter(path.name for path in (ROOT / "tests").rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []


def test_the_local_world_lives_in_kit() -> None:
    assert (ROOT / "kit" / "localworld" / "cluster.py").is_file()
    assert (ROOT / "kit" / "cluster" / "up.sh").is_file()
    assert not (ROOT / "tests" / "cluster").exists()
    assert sorted(p.name for p in (ROOT / "tests" / "support").glob("*.py")) == ["specs.py"]
