"""`siesta placeholders FILE...`: refuse a template whose <PLACEHOLDERS> were not all filled.

The EKS guide ships templates (deploy/nodegroups/ec2nodeclass-gpu.template.yaml) with
placeholders such as <CLUSTER_NAME> for values only the user knows. Applied unfilled, they
fail late and far away (Karpenter launches nothing); this check fails at once, naming each
placeholder left and its line.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from siesta.errors import UsageError

PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*>")
EXIT_PLACEHOLDERS_LEFT = 1


def placeholders_left(text: str) -> list[tuple[int, str]]:
    """(line number, placeholder) of each <PLACEHOLDER> in `text`."""
    return [
        (number, match.group(0))
        for number, line in enumerate(text.splitlines(), start=1)
        for match in PLACEHOLDER.finditer(line)
    ]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "placeholders",
        help="fail if a filled-in template still holds a <PLACEHOLDER> (before kubectl apply)",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        try:
            text = path.read_text()
        except OSError as error:
            raise UsageError(f"cannot read {path}: {error.strerror}") from None
        left = placeholders_left(text)
        for number, placeholder in left:
            print(f"{path}:{number}: {placeholder} is not filled in", file=sys.stderr)
        if left:
            status = EXIT_PLACEHOLDERS_LEFT
        else:
            print(f"{path}: no placeholders left")
    return status
