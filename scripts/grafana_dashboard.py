"""Generate the Grafana dashboard (deploy/grafana/siesta-dashboard.json) and the chart's copy.

One dashboard, per model (variables: namespace, modeldeployment, and the gateway's model
alias): desired vs ready replicas, a phase timeline, cold-start phases, held requests,
tokens/s, GPU node-hours and dollars spent and saved. Every metric name in these queries is checked against what
Siesta exports (tests/unit/test_dashboard.py).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from _generated import run

from siesta.api.models import Phase
from siesta.operator.telemetry import PHASE_CODES

TARGETS = ["deploy/grafana/siesta-dashboard.json", "charts/siesta/dashboards/siesta-dashboard.json"]

MODEL = 'namespace=~"$namespace", modeldeployment=~"$modeldeployment"'
ALIAS = 'model=~"$alias"'
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# status.phase as exported by the operator (siesta_operator_phase, codes in PHASE_CODES).
PHASE_QUERY = f"max by (namespace, modeldeployment) (siesta_operator_phase{{{MODEL}}})"
PHASE_COLORS = {
    Phase.SCALED_TO_ZERO: "blue",
    Phase.WAITING_FOR_GPU: "orange",
    Phase.LOADING: "yellow",
    Phase.SCALING: "purple",
    Phase.READY: "green",
    Phase.PAUSED: "text",
    Phase.DEGRADED: "red",
}
PHASES = {code: (phase.value, PHASE_COLORS[phase]) for phase, code in PHASE_CODES.items()}


def target(expr: str, legend: str, ref: str = "A") -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref}


def panel(
    panel_id: int,
    title: str,
    kind: str,
    grid: tuple[int, int, int, int],
    targets: list[dict[str, Any]],
    description: str,
    unit: str = "short",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    x, y, w, h = grid
    for index, item in enumerate(targets):
        item["refId"] = chr(ord("A") + index)
    result: dict[str, Any] = {
        "id": panel_id,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": targets,
    }
    result.update(extra or {})
    return result


def variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": name},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "current": {"text": "All", "value": "$__all"},
        "allValue": ".*",
        "sort": 1,
    }


def dashboard() -> dict[str, Any]:
    phase_mappings = [
        {
            "type": "value",
            "options": {
                str(code): {"text": text, "color": color, "index": code}
                for code, (text, color) in PHASES.items()
            },
        }
    ]
    panels = [
        panel(
            1,
            "Desired vs ready replicas",
            "timeseries",
            (0, 0, 12, 8),
            [
                target(
                    f"sum by (namespace, modeldeployment) (siesta_operator_desired_replicas{{{MODEL}}})",
                    "desired {{modeldeployment}}",
                ),
                target(
                    f"sum by (namespace, modeldeployment) (siesta_operator_ready_replicas{{{MODEL}}})",
                    "ready {{modeldeployment}}",
                ),
                target(
                    f"sum by (namespace, modeldeployment) (siesta_operator_waiting_for_gpu_replicas{{{MODEL}}})",
                    "waiting for GPU {{modeldeployment}}",
                ),
            ],
            "What the last decision asked for, what is ready, and pods waiting for a GPU node.",
        ),
        panel(
            2,
            "Phase",
            "state-timeline",
            (12, 0, 12, 8),
            [target(PHASE_QUERY, "{{namespace}}/{{modeldeployment}}")],
            "The model's status.phase over time.",
            extra={
                "fieldConfig": {
                    "defaults": {"mappings": phase_mappings, "unit": "none"},
                    "overrides": [],
                }
            },
        ),
        panel(
            3,
            "Cold start by phase (p50 / p95)",
            "timeseries",
            (0, 8, 12, 8),
            [
                target(
                    f"histogram_quantile(0.5, sum by (phase, le) (rate(siesta_operator_cold_start_seconds_bucket{{{MODEL}}}[$__rate_interval])))",
                    "p50 {{phase}}",
                ),
                target(
                    f"histogram_quantile(0.95, sum by (phase, le) (rate(siesta_operator_cold_start_seconds_bucket{{{MODEL}}}[$__rate_interval])))",
                    "p95 {{phase}}",
                ),
                target(
                    f"max by (modeldeployment) (siesta_server_model_download_seconds{{{MODEL}}})",
                    "download {{modeldeployment}}",
                ),
                target(
                    f"max by (modeldeployment) (siesta_server_model_load_seconds{{{MODEL}}})",
                    "load {{modeldeployment}}",
                ),
            ],
            "pending = waiting for a GPU node, loading = scheduled to ready (image pull, model "
            "download, load); the server's own download and load times for comparison.",
            unit="s",
        ),
        panel(
            30,
            "Wake by stage (p50 / p95)",
            "timeseries",
            (0, 100, 24, 8),
            [
                target(
                    f"histogram_quantile(0.5, sum by (stage, le) (rate(siesta_operator_wake_stage_seconds_bucket{{{MODEL}}}[$__rate_interval])))",
                    "p50 {{stage}}",
                ),
                target(
                    f"histogram_quantile(0.95, sum by (stage, le) (rate(siesta_operator_wake_stage_seconds_bucket{{{MODEL}}}[$__rate_interval])))",
                    "p95 {{stage}}",
                ),
            ],
            "Each start from the scale-up to Ready, stage by stage (status.lastWake): node "
            "launch and registration, GPU allocatable, image pull, model fetch, load.",
            unit="s",
        ),
        panel(
            4,
            "Held requests (gateway)",
            "timeseries",
            (12, 8, 12, 8),
            [
                target(
                    f"sum by (model) (siesta_gateway_queued_requests{{{ALIAS}}})", "held {{model}}"
                ),
                target(
                    f"sum by (model) (siesta_gateway_in_flight_requests{{{ALIAS}}})",
                    "in flight {{model}}",
                ),
                target(
                    f"sum by (model) (rate(siesta_gateway_wake_timeouts_total{{{ALIAS}}}[$__rate_interval]))",
                    "wake timeouts/s {{model}}",
                ),
                target(
                    f"histogram_quantile(0.95, sum by (model, le) (rate(siesta_gateway_hold_seconds_bucket{{{ALIAS}}}[$__rate_interval])))",
                    "p95 hold s {{model}}",
                ),
            ],
            "Requests the gateway holds while a model wakes, and how long they wait.",
        ),
        panel(
            5,
            "Tokens per second",
            "timeseries",
            (0, 16, 12, 8),
            [
                target(
                    f"sum by (modeldeployment) (rate(llamacpp:tokens_predicted_total{{{MODEL}}}[$__rate_interval]))",
                    "generated {{modeldeployment}}",
                ),
                target(
                    f"sum by (modeldeployment) (rate(llamacpp:prompt_tokens_total{{{MODEL}}}[$__rate_interval]))",
                    "prompt {{modeldeployment}}",
                ),
                target(
                    f"sum by (modeldeployment) (llamacpp:requests_processing{{{MODEL}}})",
                    "processing {{modeldeployment}}",
                ),
            ],
            "Generation and prompt throughput of the model servers (llama.cpp metric names).",
            unit="short",
        ),
        panel(
            6,
            "Saved vs always-on in range ($)",
            "stat",
            (12, 16, 6, 8),
            [
                target(
                    f"sum(increase(siesta_operator_always_on_cost_dollars_total{{{MODEL}}}[$__range])) - sum(increase(siesta_operator_gpu_cost_dollars_total{{{MODEL}}}[$__range]))",
                    "saved",
                ),
            ],
            "Measured: what the range would have cost with each model always on (at least one "
            "replica on the node type it runs on) minus what its GPU nodes cost (status.cost; "
            "prices from the chart's cost.prices).",
            unit="currencyUSD",
        ),
        panel(
            7,
            "GPU node-hours used in range",
            "stat",
            (18, 16, 6, 8),
            [
                target(
                    f"sum(increase(siesta_operator_gpu_node_seconds_total{{{MODEL}}}[$__range])) / 3600",
                    "node-hours",
                )
            ],
            "Measured GPU node time the models' pods held (shared nodes split by GPUs requested).",
            unit="h",
        ),
        panel(
            8,
            "Scale changes and decisions",
            "timeseries",
            (0, 24, 12, 8),
            [
                target(
                    f"sum by (direction, reason) (increase(siesta_operator_scale_changes_total{{{MODEL}}}[$__rate_interval]))",
                    "{{direction}} ({{reason}})",
                ),
                target(
                    f"sum by (modeldeployment) (siesta_operator_load{{{MODEL}}})",
                    "load {{modeldeployment}}",
                ),
            ],
            "Replica changes written through /scale, by the kind of their reason; the load query's value.",
        ),
        panel(
            9,
            "Gateway requests by code",
            "timeseries",
            (12, 24, 12, 8),
            [
                target(
                    f"sum by (model, code) (rate(siesta_gateway_requests_total{{{ALIAS}}}[$__rate_interval]))",
                    "{{model}} {{code}}",
                ),
                target(
                    "sum by (reason) (rate(siesta_gateway_rejected_requests_total[$__rate_interval]))",
                    "rejected {{reason}}",
                ),
            ],
            "Requests answered by the gateway, and requests refused before routing.",
            unit="reqps",
        ),
        panel(
            10,
            "GPU spend vs always-on ($ per hour)",
            "timeseries",
            (0, 32, 12, 8),
            [
                target(
                    f"sum by (modeldeployment) (rate(siesta_operator_gpu_cost_dollars_total{{{MODEL}}}[$__rate_interval])) * 3600",
                    "spend {{modeldeployment}}",
                ),
                target(
                    f"sum by (modeldeployment) (rate(siesta_operator_always_on_cost_dollars_total{{{MODEL}}}[$__rate_interval])) * 3600",
                    "always-on {{modeldeployment}}",
                ),
            ],
            "Measured cost rate of each model's GPU nodes, and what always-on would cost.",
            unit="currencyUSD",
        ),
        panel(
            11,
            "Wakes from zero in range",
            "stat",
            (12, 32, 12, 8),
            [
                target(
                    f"sum by (in_window) (increase(siesta_operator_wakes_total{{{MODEL}}}[$__range]))",
                    "in window: {{in_window}}",
                ),
            ],
            "Starts from zero replicas, by whether they began inside a schedule window "
            "(prewarm not counted; inside a window a wake means the floor did not hold).",
        ),
        panel(
            12,
            "CPU bridge: replicas and who answered",
            "timeseries",
            (0, 108, 24, 8),
            [
                target(
                    f"sum by (modeldeployment) (siesta_operator_bridge_replicas{{{MODEL}}})",
                    "bridge replicas {{modeldeployment}}",
                ),
                target(
                    f"sum by (modeldeployment) (siesta_operator_bridge_ready_replicas{{{MODEL}}})",
                    "bridge ready {{modeldeployment}}",
                ),
                target(
                    f"sum by (model, served_by) (rate(siesta_gateway_requests_total{{{ALIAS}}}[$__rate_interval]))",
                    "{{model}} answered by {{served_by}}",
                ),
            ],
            "Models with spec.bridge: the CPU replica that answers while the GPU replica wakes "
            "(docs/bridge.md), and the gateway's requests by who served them (gpu, bridge, or "
            "the gateway itself).",
        ),
    ]
    return {
        "title": "Siesta: models scaling to zero",
        "uid": "siesta-models",
        "description": "Per-model replicas, phases, cold starts, held requests, tokens/s, GPU node-hours and dollars spent and saved.",
        "tags": ["siesta", "llama.cpp", "gpu"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-24h", "to": "now"},
        "timezone": "browser",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                },
                variable(
                    "namespace",
                    "Namespace",
                    "label_values(siesta_operator_desired_replicas, namespace)",
                ),
                variable(
                    "modeldeployment",
                    "Model",
                    'label_values(siesta_operator_desired_replicas{namespace=~"$namespace"}, modeldeployment)',
                ),
                variable(
                    "alias",
                    "Gateway model alias",
                    "label_values(siesta_gateway_requests_total, model)",
                ),
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def outputs() -> dict[str, str]:
    text = json.dumps(dashboard(), indent=2) + "\n"
    return dict.fromkeys(TARGETS, text)


if __name__ == "__main__":
    sys.exit(run(outputs, __doc__ or ""))
