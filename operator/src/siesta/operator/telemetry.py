"""The operator's own Prometheus metrics (`siesta_operator_*`, listed in docs/contracts.md)."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from siesta.api.models import Phase

MODEL = ("namespace", "modeldeployment")

DESIRED_REPLICAS = Gauge(
    "siesta_operator_desired_replicas", "Replicas the last decision asked for.", MODEL
)
REPLICAS = Gauge("siesta_operator_replicas", "Replicas of the model's StatefulSet.", MODEL)
READY_REPLICAS = Gauge("siesta_operator_ready_replicas", "Ready model server pods.", MODEL)
WAITING_FOR_GPU = Gauge(
    "siesta_operator_waiting_for_gpu_replicas", "Pods the scheduler cannot place yet.", MODEL
)
BRIDGE_REPLICAS = Gauge(
    "siesta_operator_bridge_replicas",
    "Replicas of the model's CPU bridge StatefulSet (docs/bridge.md); absent without a bridge.",
    MODEL,
)
BRIDGE_READY_REPLICAS = Gauge(
    "siesta_operator_bridge_ready_replicas", "Ready pods of the model's CPU bridge.", MODEL
)
PHASE = Gauge(
    "siesta_operator_phase",
    "The model's status.phase as a number (see PHASE_CODES): for state timelines.",
    MODEL,
)
# Stable numbers for dashboards; never renumber, only append.
PHASE_CODES = {
    Phase.SCALED_TO_ZERO: 0,
    Phase.WAITING_FOR_GPU: 1,
    Phase.LOADING: 2,
    Phase.SCALING: 3,
    Phase.READY: 4,
    Phase.PAUSED: 5,
    Phase.DEGRADED: 6,
}
LOAD = Gauge("siesta_operator_load", "Last value of the load query (NaN when unavailable).", MODEL)
DECISIONS = Counter(
    "siesta_operator_decisions_total",
    "Decisions made, by the kind of their first reason.",
    (*MODEL, "reason"),
)
SCALE_CHANGES = Counter(
    "siesta_operator_scale_changes_total",
    "Replica changes written through the StatefulSet /scale subresource.",
    (*MODEL, "direction", "reason"),
)
COLD_START = Histogram(
    "siesta_operator_cold_start_seconds",
    "Time from pod creation to ready, by phase: pending (waiting for a node), loading "
    "(scheduled to ready: pull, download, load) and total.",
    (*MODEL, "phase"),
    buckets=(1, 5, 10, 30, 60, 120, 180, 300, 450, 600, 900, 1200, 1800, 3600),
)
WAKE_STAGE = Histogram(
    "siesta_operator_wake_stage_seconds",
    "Seconds each stage of a server pod's start took, from the scale-up to Ready "
    "(status.lastWake); stage total is the whole start.",
    (*MODEL, "stage"),
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 90, 120, 180, 300, 600, 1200),
)
RECONCILE_ERRORS = Counter(
    "siesta_operator_reconcile_errors_total", "Failed reconcile cycles.", (*MODEL, "stage")
)
API_CALLS = Counter(
    "siesta_operator_api_calls_total",
    "Kubernetes API requests the operator made itself (kopf's watch streams excluded).",
    ("verb", "resource", "code"),
)
METRIC_QUERIES = Counter(
    "siesta_operator_metric_queries_total", "Load queries sent to Prometheus.", (*MODEL, "result")
)

# Measured GPU cost (siesta.operator.cost, sampled by the cost loop): counters, so
# increase(...[7d]) is the week's figure in Prometheus.
GPU_NODE_SECONDS = Counter(
    "siesta_operator_gpu_node_seconds_total",
    "GPU node time the model's pods held (shared nodes split by GPUs requested).",
    MODEL,
)
GPU_COST = Counter(
    "siesta_operator_gpu_cost_dollars_total",
    "That node time priced from the price table (chart values cost.prices), USD.",
    MODEL,
)
ALWAYS_ON_COST = Counter(
    "siesta_operator_always_on_cost_dollars_total",
    "What the same time would have cost with the model always on (>= 1 replica), USD.",
    MODEL,
)
WAKES = Counter(
    "siesta_operator_wakes_total",
    "Starts from zero replicas (a pod became ready while no other was), by whether the "
    "pod was created inside a schedule window (prewarm not counted).",
    (*MODEL, "in_window"),
)


def forget_model(namespace: str, name: str) -> None:
    """Drop the per-model gauges of a deleted ModelDeployment."""
    for gauge in (
        DESIRED_REPLICAS,
        REPLICAS,
        READY_REPLICAS,
        WAITING_FOR_GPU,
        LOAD,
        PHASE,
        BRIDGE_REPLICAS,
        BRIDGE_READY_REPLICAS,
    ):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)


def serve(port: int) -> None:
    """Serve /metrics on 0.0.0.0:port in a background thread (0 = disabled)."""
    if port > 0:
        start_http_server(port)
