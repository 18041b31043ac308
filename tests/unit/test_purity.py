"""siesta.policy stays pure: no kopf, no Kubernetes client, no network, no clock."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

POLICY = Path(__file__).resolve().parents[2] / "operator" / "src" / "siesta" / "policy"
FORBIDDEN_MODULES = {
    "kopf",
    "kubernetes",
    "aiohttp",
    "prometheus_api_client",
    "requests",
    "httpx",
    "socket",
    "time",
    "siesta.operator",
    "siesta.gateway",
}
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic"}


def imported_modules(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(POLICY.glob("*.py")), ids=lambda p: p.name)
def test_policy_module_is_pure(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for module in imported_modules(tree):
        assert not any(
            module == bad or module.startswith(bad + ".") for bad in FORBIDDEN_MODULES
        ), module
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            assert node.func.attr not in CLOCK_CALLS, f"{path.name}:{node.lineno} reads the clock"


def test_importing_policy_loads_no_io_library() -> None:
    probe = "import sys, siesta.policy; print(sorted(m for m in ('kopf', 'kubernetes', 'aiohttp') if m in sys.modules))"
    output = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "[]"
