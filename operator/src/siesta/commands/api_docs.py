"""`siesta api-docs`: write the API reference (Markdown) generated from the API models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from siesta.api.reference import render_reference


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "api-docs", help="write the ModelDeployment API reference (Markdown) from the API models"
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="file to write (default: standard output)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    text = render_reference()
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        print(args.output)
    return 0
