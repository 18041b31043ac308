"""Every PromQL in the Grafana dashboard names metrics Siesta (or llama.cpp) really exports.

The known names come from the exporters themselves: the operator's telemetry module (the
default prometheus_client registry), a GatewayMetrics registry and a ServerMetrics registry
(which also renders the llama.cpp-compatible `llamacpp:*` names), expanded with the suffixes
each metric type exposes (_total, _bucket, _sum, _count, _created).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

import siesta.operator.telemetry  # noqa: F401 - registers the operator's metrics
from siesta.gateway.metrics import GatewayMetrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "siesta-dashboard.json"
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created", ""),
    "gauge": ("",),
    "info": ("_info",),
}
PROMQL_WORDS = {
    "sum", "by", "without", "rate", "irate", "increase", "histogram_quantile", "max",
    "min", "avg", "count", "max_over_time", "avg_over_time", "min_over_time",
    "sum_over_time", "label_values", "or", "and", "unless", "le", "on", "ignoring",
    "group_left", "group_right", "offset", "bool", "topk", "bottomk", "clamp_min", "abs",
    "vector", "scalar", "time",
}  # fmt: skip


def exported(registry: CollectorRegistry) -> set[str]:
    names = set()
    for family in registry.collect():
        for suffix in SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def known_metrics() -> set[str]:
    names = exported(REGISTRY) | exported(GatewayMetrics().registry)
    try:
        from siesta_server.metrics import ServerMetrics
    except ImportError:  # pragma: no cover - the server distribution is installed in dev
        pytest.fail("siesta-server must be installed to check the dashboard's llamacpp: names")
    return names | exported(ServerMetrics().registry)


def expressions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def metric_names(expr: str) -> set[str]:
    """Identifiers in metric position: not labels, functions, keywords or Grafana variables."""
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)  # ranges
    expr = re.sub(r"\$\w+", "0", expr)  # Grafana variables
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    expr = re.sub(r"\b(label_values)\(([^,()]+),\s*\w+\)", r"\2", expr)  # label argument
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr))
    return {n for n in names if n not in PROMQL_WORDS and not re.fullmatch(r"[0-9eE]+", n)}


def test_expressions_found() -> None:
    assert len(list(expressions(json.loads(DASHBOARD.read_text())))) >= 15


def test_every_metric_in_the_dashboard_is_exported() -> None:
    known = known_metrics()
    assert "llamacpp:tokens_predicted_total" in known
    assert "siesta_gateway_queued_requests" in known
    assert "siesta_operator_cold_start_seconds_bucket" in known
    unknown = {
        expr: sorted(metric_names(expr) - known)
        for expr in expressions(json.loads(DASHBOARD.read_text()))
        if metric_names(expr) - known
    }
    assert not unknown, f"metrics no component exports: {unknown}"


def test_the_checker_catches_a_typo() -> None:
    known = known_metrics()
    expr = 'sum(rate(llamacpp:tokens_predicted{namespace="ai"}[5m])) by (modeldeployment)'
    assert metric_names(expr) - known == {"llamacpp:tokens_predicted"}


def test_dashboard_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    titles = " | ".join(panel["title"] for panel in dashboard["panels"])
    for wanted in ("Desired vs ready", "Phase", "Cold start", "Held requests", "Tokens", "Saved"):
        assert wanted in titles
    # Money and node-hours come from the measured cost counters, not from replica counts.
    units = {
        panel["title"]: panel["fieldConfig"]["defaults"]["unit"] for panel in dashboard["panels"]
    }
    assert units["Saved vs always-on in range ($)"] == "currencyUSD"
    assert units["GPU node-hours used in range"] == "h"
    exprs = " ".join(t["expr"] for panel in dashboard["panels"] for t in panel["targets"])
    for counter in (
        "gpu_cost_dollars_total",
        "always_on_cost_dollars_total",
        "gpu_node_seconds_total",
    ):
        assert f"siesta_operator_{counter}" in exprs
    variables = [v["name"] for v in dashboard["templating"]["list"]]
    assert {"namespace", "modeldeployment"} <= set(variables)
