"""Scripts and benchmarks import what exists, also inside functions.

They run outside the test suite (`make demo`, the benchmarks), and most import lazily, so a
renamed test helper broke `make demo` once without any test noticing. Every `from M import N`
of Siesta's own packages or the local world (kit/localworld), at any depth, must resolve.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted([*ROOT.glob("scripts/*.py"), *ROOT.glob("tests/benchmarks/*.py")])
OWN = ("siesta", "siesta_server", "localworld", "support")


def own_imports(path: Path) -> list[tuple[str, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
            continue
        if node.module.split(".")[0] in OWN:
            found += [(node.module, alias.name) for alias in node.names]
    return found


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_own_import_resolves(path: Path) -> None:
    missing = []
    for module, name in own_imports(path):
        imported = importlib.import_module(module)
        if not hasattr(imported, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ModuleNotFoundError:
                missing.append(f"from {module} import {name}")
    assert missing == []


def test_the_check_sees_the_demos_lazy_imports() -> None:
    assert ("localworld.cluster", "wait_for") in own_imports(ROOT / "scripts" / "demo.py")
