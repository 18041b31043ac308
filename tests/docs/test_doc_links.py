"""Every relative link and every repository file the docs name exists.

Scans docs/*.md, the README files (clients/ and examples/ too) and the chart's NOTES.txt: Markdown links `[x](path)`
(relative to the page; web links and anchors aside) and repository paths such as
`deploy/examples/t4-office-hours.yaml` or `crds/` wherever they appear (relative to the
repository root). A renamed or deleted file then fails here instead of in a reader's shell.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(
    [
        *(ROOT / "docs").glob("*.md"),
        ROOT / "README.md",
        ROOT / "CONTRIBUTING.md",
        ROOT / "kit" / "README.md",
        ROOT / "charts" / "siesta" / "README.md",
        ROOT / "charts" / "siesta" / "templates" / "NOTES.txt",
        *(ROOT / "clients").glob("*/README.md"),
        *(ROOT / "examples").glob("*/README.md"),
    ]
)
TOP_LEVEL = ("charts", "clients", "crds", "deploy", "docs", "examples", "kit", "operator",
             "scripts", "server", "tests")  # fmt: skip
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# A repository path: a top-level folder, then path characters; no template or glob syntax.
REPO_PATH = re.compile(r"(?<![\w./${-])((?:" + "|".join(TOP_LEVEL) + r")/[\w./-]*)(?![\w*{<$])")


CODE = re.compile(r"^```.*?^```|`[^`\n]*`", re.M | re.S)


def relative_links(text: str) -> list[str]:
    found = []
    for target in LINK.findall(CODE.sub("", text)):  # `[a-z]([-a-z]*)` is not a link
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # https:, mailto:, an anchor on the same page
        found.append(target.split("#", 1)[0])
    return found


# A page named by itself (`FACTS.md`, "see operations.md"): docs/ or the root must have it.
PAGE_NAME = re.compile(r"(?<![\w./-])([\w-]+\.md)\b")


def page_names(text: str) -> list[str]:
    return PAGE_NAME.findall(text)


def repository_paths(text: str) -> list[str]:
    paths = []
    for match in REPO_PATH.findall(text):
        path = match.rstrip(".,:;")
        if path.endswith("/.") or "..." in path:
            continue
        paths.append(path)
    return paths


def missing(page: Path) -> list[str]:
    text = page.read_text()
    absent = [
        f"link {target}"
        for target in relative_links(text)
        if target and not (page.parent / target).exists()
    ]
    absent += [
        f"path {path}"
        for path in repository_paths(text)
        # a subproject's README (clients/typescript) names its own files from its folder
        if not (ROOT / path).exists() and not (page.parent / path).exists()
    ]
    absent += [
        f"page {name}"
        for name in page_names(text)
        if not any((folder / name).exists() for folder in (ROOT / "docs", ROOT, page.parent))
    ]
    return sorted(set(absent))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_files_exist(page: Path) -> None:
    assert missing(page) == []


def test_the_scanner_finds_what_it_should() -> None:
    text = "See [the API](api-reference.md#spec), `deploy/examples/nope.yaml` and crds/."
    assert relative_links(text) == ["api-reference.md"]
    assert relative_links("`[a-z]([-a-z]*)` or [web](https://x.dev/a) or [up](#top)") == []
    assert repository_paths(text) == ["deploy/examples/nope.yaml", "crds/"]
    assert repository_paths("https://github.com/o/r/tree/main/docs/x.md") == []
    assert page_names("facts (FACTS.md), see docs/x.md") == ["FACTS.md"]
