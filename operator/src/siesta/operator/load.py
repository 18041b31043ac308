"""The load query and how to read its answer: a value, or why there is none. Pure.

Empty-result semantics (docs/contracts.md): an empty result while no replica is ready means
load 0 (nobody exports the series); while replicas are ready it means "no data", and the
policy holds replicas rather than scale down on missing data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

DEFAULT_QUERY = (
    'sum(llamacpp:requests_processing{namespace="$namespace",modeldeployment="$name"})'
    ' + sum(llamacpp:requests_deferred{namespace="$namespace",modeldeployment="$name"})'
)


@dataclass(frozen=True)
class LoadReading:
    value: float | None
    error: str = ""
    """Why there is no value, or why it came from a fallback source."""
    source: str = "prometheus"
    """Who answered: prometheus, servers (their own /metrics) or gateway (in-flight counts)."""


def render_query(template: str | None, namespace: str, name: str) -> str:
    return (template or DEFAULT_QUERY).replace("$namespace", namespace).replace("$name", name)


def _number(text: Any) -> float:
    value = float(text)
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"query returned {text}")
    return value


def interpret(result: Any, ready: int) -> LoadReading:
    """Turn a /api/v1/query `result` into a reading (several series are summed)."""
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        try:  # a scalar: [time, "value"]
            return LoadReading(_number(result[1]))
        except (TypeError, ValueError) as error:
            return LoadReading(None, f"query returned an unusable value: {error}")
    if not isinstance(result, list):
        return LoadReading(None, "query returned an unexpected result type")
    if not result:
        if ready > 0:
            return LoadReading(None, "query returned no data while replicas are ready")
        return LoadReading(0.0)
    total = 0.0
    try:
        for series in result:
            total += _number(series["value"][1])
    except (KeyError, IndexError, TypeError, ValueError) as error:
        return LoadReading(None, f"query returned an unusable value: {error}")
    return LoadReading(total)


def with_fallback(
    prometheus: LoadReading, servers: LoadReading | None, gateway_in_flight: int | None
) -> LoadReading:
    """Prometheus when it answers; else the servers' own load; else the gateways' in-flight
    count (None: no gateway reports); unavailable only while none of them answers.

    The servers' sum over the ready pods is what the default query asks Prometheus for. A
    fallback reading keeps Prometheus's error, so status and reasons say why it is used.
    """
    if prometheus.value is not None:
        return prometheus
    if servers is not None and servers.value is not None:
        return LoadReading(servers.value, prometheus.error, "servers")
    if gateway_in_flight is not None:
        return LoadReading(float(gateway_in_flight), prometheus.error, "gateway")
    errors = [prometheus.error] + ([servers.error] if servers is not None else [])
    return LoadReading(None, "; ".join(e for e in errors if e), prometheus.source)
