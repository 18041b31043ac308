"""The cost loop: once a minute per ModelDeployment, measure its GPU node time into status.cost.

The thin adapter around `siesta.operator.cost` (pure): it reads the model's pods, the nodes
they run on and the other GPU pods on those nodes, and merge-patches `status.cost` (a key
nothing else writes) and the `siesta_operator_gpu_*` counters. Settings come from the
environment the chart sets (values `cost.*`):

- SIESTA_COST_PRICES: JSON, region -> capacity type -> instance type -> USD per hour
- SIESTA_COST_REGION: the region of nodes without topology.kubernetes.io/region
- SIESTA_COST_INTERVAL: seconds between samples (default 60; 0 turns the loop off)
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from siesta.api.contract import GROUP, MODEL_LABEL, PLURAL, VERSION, ModelKey
from siesta.api.models import ModelDeploymentSpec
from siesta.api.prices import DEFAULT_REGION, GPU_ON_DEMAND
from siesta.operator import cost, telemetry
from siesta.operator.cost_sample import node_facts, pod_facts, sample
from siesta.operator.kube import Kube
from siesta.operator.observe import parse_time

logger = logging.getLogger(__name__)


def _interval() -> float:
    try:
        return float(os.environ.get("SIESTA_COST_INTERVAL", "") or 60.0)
    except ValueError:
        return 60.0


@lru_cache(maxsize=1)
def price_table() -> cost.PriceTable:
    """From SIESTA_COST_PRICES; without it, the on-demand table the chart's defaults hold."""
    region = os.environ.get("SIESTA_COST_REGION", "").strip() or DEFAULT_REGION
    text = os.environ.get("SIESTA_COST_PRICES", "").strip()
    if not text:
        table = {name: {cost.ON_DEMAND: dict(types)} for name, types in GPU_ON_DEMAND.items()}
        return cost.PriceTable(table, region)
    try:
        prices = json.loads(text)
    except json.JSONDecodeError as error:
        logger.error("SIESTA_COST_PRICES is not JSON (%s): nodes are counted, not priced", error)
        prices = {}
    return cost.PriceTable(prices if isinstance(prices, dict) else {}, region)


# --- the adapter ---------------------------------------------------------------------------


def _counted(
    state: cost.CostState, previous: cost.CostState | None
) -> tuple[float, float, float, int, int]:
    before = previous.total if previous is not None else cost.Totals(state.total.since)
    now = state.total
    return (
        now.node_seconds - before.node_seconds,
        now.spend - before.spend,
        now.always_on - before.always_on,
        now.wakes - now.wakes_in_window - (before.wakes - before.wakes_in_window),
        now.wakes_in_window - before.wakes_in_window,
    )


async def _node_pods(
    kube: Kube, node_names: Iterable[str], own: list[dict[str, Any]]
) -> list[cost.PodFacts]:
    """Every GPU pod on the model's nodes (only its own if pods cannot be listed cluster-wide)."""
    found: list[cost.PodFacts] = []
    try:
        for node in node_names:
            bodies = await kube.pods(field_selector=f"spec.nodeName={node}")
            found += [facts for body in bodies if (facts := pod_facts(body)) is not None]
    except ApiException as error:
        if error.status != 403:
            raise
        found = [facts for body in own if (facts := pod_facts(body)) is not None]
    return found


async def _nodes(kube: Kube, names: Iterable[str]) -> dict[str, cost.NodeFacts]:
    """The model's nodes; one that is gone (or unreadable without RBAC) is counted, not priced."""
    return {name: node_facts(body) for name in names if (body := await kube.node(name))}


async def measure(
    kube: Kube, now: datetime, body: Mapping[str, Any], namespace: str, name: str
) -> None:
    """One sample of one model: read its pods and nodes, write status.cost, count."""
    try:
        spec = ModelDeploymentSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return  # the model loop reports an invalid spec
    created = parse_time((body.get("metadata") or {}).get("creationTimestamp")) or now
    own = await kube.pods(namespace, label_selector=f"{MODEL_LABEL}={name}")
    node_names = sorted({facts.node for b in own if (facts := pod_facts(b)) is not None})
    node_pods = await _node_pods(kube, node_names, own)
    nodes = await _nodes(kube, node_names)
    key = ModelKey(namespace, name)
    status = dict(body.get("status") or {})
    state, previous = sample(key, spec, status, created, own, node_pods, nodes, price_table(), now)
    node_seconds, spend, always_on, outside, inside = _counted(state, previous)
    telemetry.GPU_NODE_SECONDS.labels(*key).inc(max(node_seconds, 0.0))
    telemetry.GPU_COST.labels(*key).inc(max(spend, 0.0))
    telemetry.ALWAYS_ON_COST.labels(*key).inc(max(always_on, 0.0))
    telemetry.WAKES.labels(*key, "false").inc(max(outside, 0))
    telemetry.WAKES.labels(*key, "true").inc(max(inside, 0))
    await kube.patch_status(namespace, name, {"cost": cost.to_status(state)})


if _interval() > 0:

    @kopf.timer(GROUP, VERSION, PLURAL, interval=_interval(), initial_delay=5.0)
    async def account_cost(
        body: kopf.Body, namespace: str | None, name: str, memo: Any, **_: Any
    ) -> None:
        """Sample the model's GPU node time into status.cost (docs/operations.md, "Cost")."""
        runtime = memo.runtime
        await measure(runtime.kube, runtime.now(), body, namespace or "", name)
