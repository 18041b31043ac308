"""`siesta operator`: run the Kubernetes operator (kopf) in the foreground."""

from __future__ import annotations

import argparse
import logging
import random
import time
from typing import Any

from siesta.errors import UsageError
from siesta.operator.settings import SettingsError, settings_from


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "operator",
        help="run the operator (ModelDeployments -> GPU StatefulSets that scale to zero)",
        description=(
            "Run the Siesta operator. Settings come from SIESTA_* environment variables "
            "(docs/contracts.md); the flags below override them."
        ),
    )
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=None,
        help="watch only this namespace (repeatable)",
    )
    parser.add_argument(
        "--metrics-port", type=int, help="port for /metrics (SIESTA_METRICS_PORT, 8081; 0 = off)"
    )
    parser.add_argument("--prometheus-url", help="Prometheus base URL (SIESTA_PROMETHEUS_URL)")
    parser.add_argument(
        "--peering",
        help="kopf peering object (SIESTA_PEERING, default 'siesta'); 'standalone': none",
    )
    parser.add_argument(
        "--priority",
        type=int,
        help="peering priority; default: the start time (a newer instance takes over)",
    )
    parser.add_argument(
        "--liveness", help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    flags = {
        "SIESTA_METRICS_PORT": None if args.metrics_port is None else str(args.metrics_port),
        "SIESTA_PROMETHEUS_URL": args.prometheus_url,
        "SIESTA_PEERING": args.peering,
        "SIESTA_NAMESPACES": ",".join(args.namespace) if args.namespace else None,
    }
    try:
        settings = settings_from(flags)
    except SettingsError as error:
        raise UsageError(str(error)) from error

    import kopf  # imported here: the other subcommands do not need it

    import siesta.operator.handlers  # noqa: F401 - registers the handlers
    from siesta.operator.kube import load_credentials
    from siesta.operator.preflight import run_preflight

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # kopf logs every handler call at INFO; the operator logs what it does itself.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    priority = (
        args.priority
        if args.priority is not None
        else int(time.time() * 1000) + random.randint(0, 999)
    )
    namespaces = list(settings.namespaces)
    load_credentials()
    # Say at once what would otherwise be a silent wait (peering object, CRDs).
    preflight = run_preflight(settings.peering, settings.namespaces)
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=preflight.standalone,
        peering_name=preflight.peering or None,
        priority=priority,
        liveness_endpoint=args.liveness,
        # The handlers' startup reads the settings (handlers.configure); /healthz the preflight.
        memo=kopf.Memo(settings=settings, preflight=preflight),
    )
    return 0
