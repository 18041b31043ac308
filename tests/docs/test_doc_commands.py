"""Every command in a ```console block of the docs runs, and prints what the docs show.

Convention (docs/getting-started.md): ```console blocks hold `$ command` lines, optionally
followed by the expected output; this test runs each command from the repository root and,
where output is shown, compares it line by line (in a scratch directory whose deploy/,
charts/, crds/ and docs/ point into the repository, so files a command writes stay out of it). Only commands that need no cluster or cloud
may appear there: `siesta ...`, `helm lint|template ...`, `kubectl kustomize ...`.
Commands for a real cluster go into ```sh blocks, which are shown but not run.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from localworld.cluster import cluster_paths
from localworld.helm import helm_binary
from localworld.procs import BIN

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([*(ROOT / "docs").glob("*.md"), ROOT / "charts" / "siesta" / "README.md"])
RUNNABLE = (("siesta",), ("helm", "lint"), ("helm", "template"), ("kubectl", "kustomize"))
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


@dataclass(frozen=True)
class DocCommand:
    source: str
    command: str
    output: tuple[str, ...]


def console_commands(path: Path) -> list[DocCommand]:
    found: list[DocCommand] = []
    for kind, body in BLOCK.findall(path.read_text()):
        if kind != "console":
            continue
        command: str | None = None
        output: list[str] = []
        lines = re.sub(r"\\\n\s*", " ", body).splitlines()  # join `\` continuations
        for line in [*lines, "$ "]:
            if line.startswith("$ "):
                if command:
                    source = f"{path.relative_to(ROOT)}: {command[:60]}"
                    found.append(DocCommand(source, command, tuple(output)))
                command, output = line[2:].strip(), []
            else:
                output.append(line.rstrip())
    return found


COMMANDS = [command for path in DOCS for command in console_commands(path)]


def resolve(argv: list[str]) -> list[str]:
    if argv[0] == "siesta":
        return [str(BIN / "siesta"), *argv[1:]]
    if argv[0] == "helm":
        return [str(helm_binary()), *argv[1:]]
    if argv[0] == "kubectl":
        return [str(Path(cluster_paths()["CLUSTER_BIN_DIR"]) / "kubectl"), *argv[1:]]
    raise AssertionError(argv)


def test_docs_have_runnable_commands() -> None:
    assert len(COMMANDS) >= 10


@pytest.mark.parametrize("doc", COMMANDS, ids=[c.source for c in COMMANDS])
def test_doc_command(doc: DocCommand, tmp_path: Path) -> None:
    argv = shlex.split(doc.command)
    assert any(tuple(argv[: len(p)]) == p for p in RUNNABLE), (
        f"{doc.source}: ```console blocks are run by this test; only "
        f"{[' '.join(p) for p in RUNNABLE]} may appear there (use ```sh for the rest)"
    )
    # Relative paths resolve as in the repository root; files commands write land in tmp.
    for name in ("deploy", "charts", "crds", "docs"):
        (tmp_path / name).symlink_to(ROOT / name)
    result = subprocess.run(
        resolve(argv), cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"{doc.command}\n{result.stdout}\n{result.stderr}"
    if doc.output:
        assert [line.rstrip() for line in result.stdout.rstrip("\n").splitlines()] == list(
            doc.output
        ), f"the output of `{doc.command}` differs from {doc.source}"
