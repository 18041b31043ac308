"""`siesta gateway`: the OpenAI-compatible activator in front of the model servers."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from siesta.errors import UsageError
from siesta.gateway.settings import add_arguments, settings_from


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gateway",
        help="run the gateway: routes OpenAI requests by model and wakes models from zero",
        description=(
            "Serve /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/models, "
            "route each request to a ready replica of the ModelDeployment whose alias it "
            "names, and hold it while a model scaled to zero wakes up."
        ),
    )
    add_arguments(parser)
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from siesta.gateway.server import run_gateway

    try:
        settings = settings_from(vars(args))
    except ValueError as error:
        raise UsageError(str(error)) from None
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(run_gateway(settings))
    return 0
