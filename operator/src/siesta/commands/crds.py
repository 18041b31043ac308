"""`siesta crds`: write the CRD YAML generated from the API models."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from siesta.api.crd import write_crds


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "crds", help="write the ModelDeployment CRD generated from the API models"
    )
    parser.add_argument(
        "--output-dir", type=Path, default=Path("crds"), help="directory to write into"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    for path in write_crds(args.output_dir):
        print(path)
    return 0
