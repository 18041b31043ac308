"""The `siesta` command. Each subcommand lives in its own module under siesta.commands."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from siesta.api.loader import InvalidManifest
from siesta.errors import UsageError

# Module names, each with register(subparsers) that sets `handler` on its parser.
COMMANDS = [
    "siesta.commands.explain",
    "siesta.commands.preview",
    "siesta.commands.crds",
    "siesta.commands.api_docs",
    "siesta.commands.simulate",
    "siesta.commands.report",
    "siesta.commands.traces",
    "siesta.commands.gateway",
    "siesta.commands.run_operator",
    "siesta.commands.placeholders",
]

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="siesta", description="Scale-to-zero for llama.cpp models on Kubernetes GPUs."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMANDS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.handler(args)
    except (InvalidManifest, UsageError) as error:
        print(f"siesta: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    return status


if __name__ == "__main__":
    sys.exit(main())
