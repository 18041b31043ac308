"""Shared by the generators in scripts/: write outputs, or with --check report drift.

Each generator module defines ``outputs() -> dict[str, str]`` (repository-relative path ->
file content) and calls ``run(outputs)`` from ``main``. ``--check`` writes nothing and exits
1 listing every file that differs from what the generator would write.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def drift(outputs: dict[str, str]) -> list[str]:
    """Unified diffs of every output that differs from the file in the repository."""
    problems = []
    for relative, content in outputs.items():
        path = ROOT / relative
        current = path.read_text() if path.exists() else ""
        if current != content:
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                content.splitlines(keepends=True),
                f"{relative} (in the repository)",
                f"{relative} (generated)",
                n=1,
            )
            problems.append("".join(list(diff)[:60]))
    return problems


def run(outputs: Callable[[], dict[str, str]], description: str) -> int:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help="only report drift (exit 1)")
    args = parser.parse_args()
    generated = outputs()
    if args.check:
        problems = drift(generated)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("generated files are out of date: run `make generate`", file=sys.stderr)
        return 1 if problems else 0
    for relative, content in generated.items():
        path = ROOT / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != content:
            path.write_text(content)
            print(relative)
    return 0
