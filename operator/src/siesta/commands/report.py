"""`siesta report`: measured GPU spend and savings per ModelDeployment, from status.cost.

Reads the ModelDeployments from the cluster (the current kubeconfig context) or from a file
saved with `kubectl get md -A -o yaml`; prints per model: spend, always-on, saved, GPU
node-hours, wakes, wakes inside a schedule window, and the p95 wake time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from siesta.api.contract import GROUP, PLURAL, VERSION
from siesta.errors import UsageError
from siesta.operator import cost

PERIODS = ("today", "week", "total")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report", help="measured GPU spend and savings per ModelDeployment (status.cost)"
    )
    parser.add_argument(
        "--since",
        default="7d",
        help="Nd (today and the N-1 days before it, e.g. 7d), today, week (since Monday) or "
        "total (since creation); default 7d",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("-n", "--namespace", help="only this namespace")
    where.add_argument(
        "-A", "--all-namespaces", action="store_true", help="every namespace (the default)"
    )
    parser.add_argument(
        "-f",
        "--filename",
        type=Path,
        help="read a saved `kubectl get md -A -o yaml` instead of the cluster",
    )
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)"
    )
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table")
    parser.set_defaults(handler=run)


@dataclass(frozen=True)
class Row:
    namespace: str
    name: str
    since: str | None
    spend: float | None
    always_on: float | None
    saved: float | None
    node_hours: float | None
    wakes: int | None
    wakes_in_window: int | None
    wake_p95_seconds: float | None
    note: str = ""


def _period(text: str) -> str | int:
    if text in PERIODS:
        return text
    match = re.fullmatch(r"([1-9][0-9]*)d", text)
    if match is None:
        raise UsageError(f"--since: {text!r} is not Nd (7d), today, week or total")
    days = int(match.group(1))
    if days > cost.DAYS_KEPT + 1:
        raise UsageError(f"--since: status.cost keeps {cost.DAYS_KEPT + 1} days; use total")
    return days


def row(body: Mapping[str, Any], since: str | int) -> Row:
    """One model's line, from its status.cost. Pure."""
    meta = body.get("metadata") or {}
    namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    state = cost.from_status((body.get("status") or {}).get("cost"))
    if state is None:
        return Row(
            namespace, name, None, None, None, None, None, None, None, None, "no status.cost yet"
        )
    if isinstance(since, int):
        totals = cost.last_days(state, since)
    else:
        totals = {"today": state.today, "week": state.week, "total": state.total}[since]
    waits = [wake.seconds for wake in state.wakes if wake.started >= totals.since]
    p95 = cost.percentile(waits, 0.95)
    note = (
        f"{state.unobserved_seconds / 3600:.1f} h unobserved"
        if state.unobserved_seconds >= 60
        else ""
    )
    return Row(
        namespace,
        name,
        totals.since.isoformat(),
        round(totals.spend, 2),
        round(totals.always_on, 2),
        round(totals.saved, 2),
        round(totals.node_seconds / 3600, 2),
        totals.wakes,
        totals.wakes_in_window,
        round(p95, 1) if p95 is not None else None,
        note,
    )


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def format_table(rows: Iterable[Row]) -> str:
    header = (
        "NAMESPACE",
        "NAME",
        "SPEND",
        "ALWAYS-ON",
        "SAVED",
        "NODE-H",
        "WAKES",
        "IN-WINDOW",
        "WAKE P95",
        "SINCE",
    )
    lines = [header]
    for r in rows:
        share = (
            f" ({100 * r.saved / r.always_on:.0f}%)" if r.saved is not None and r.always_on else ""
        )
        lines.append(
            (
                r.namespace,
                r.name,
                _money(r.spend),
                _money(r.always_on),
                _money(r.saved) + share,
                "-" if r.node_hours is None else f"{r.node_hours:.2f}",
                "-" if r.wakes is None else str(r.wakes),
                "-" if r.wakes_in_window is None else str(r.wakes_in_window),
                "-" if r.wake_p95_seconds is None else f"{r.wake_p95_seconds:.0f}s",
                (r.since or r.note)[:16] + (f"  {r.note}" if r.since and r.note else ""),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _from_file(path: Path) -> list[dict[str, Any]]:
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as error:
        raise UsageError(f"{path}: cannot read: {error}") from error
    items: list[dict[str, Any]] = []
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == "List":
            items += [item for item in document.get("items") or [] if isinstance(item, dict)]
        elif isinstance(document, dict) and document.get("kind") == "ModelDeployment":
            items.append(document)
    return items


def _from_cluster(namespace: str | None, kubeconfig: str | None) -> list[dict[str, Any]]:
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    try:
        # Read KUBECONFIG now: the client library reads it once, when first imported.
        path = kubeconfig or os.environ.get("KUBECONFIG") or None
        config.load_kube_config(config_file=path)  # type: ignore[no-untyped-call]
    except (ConfigException, OSError):
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except ConfigException as error:
            raise UsageError(f"no cluster to read (kubeconfig or in-cluster): {error}") from None
    api = client.CustomObjectsApi()
    try:
        if namespace:
            listed = api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        else:
            listed = api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    except client.exceptions.ApiException as error:
        raise UsageError(f"cannot list ModelDeployments: {error.status} {error.reason}") from None
    except Exception as error:  # connection refused, TLS: one line, not a traceback
        raise UsageError(f"cannot reach the cluster: {error}") from None
    items = listed.get("items") if isinstance(listed, dict) else None
    return [item for item in items or [] if isinstance(item, dict)]


def run(args: argparse.Namespace) -> int:
    since = _period(args.since)
    items = (
        _from_file(args.filename)
        if args.filename
        else _from_cluster(args.namespace, args.kubeconfig)
    )
    if args.namespace:
        items = [i for i in items if (i.get("metadata") or {}).get("namespace") == args.namespace]
    items.sort(
        key=lambda i: (
            (i.get("metadata") or {}).get("namespace", ""),
            (i.get("metadata") or {}).get("name", ""),
        )
    )
    rows = [row(item, since) for item in items]
    if args.output == "json":
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    print(format_table(rows) if rows else "no ModelDeployments")
    return 0
