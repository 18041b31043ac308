"""The gateway's Prometheus metrics (names listed in docs/contracts.md, "Gateway metrics")."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

HOLD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "siesta_gateway_requests",
            "Requests answered, by model alias, HTTP status code and who answered: gpu (the "
            "model's replicas), bridge (its CPU bridge) or gateway (the gateway itself).",
            ["model", "code", "served_by"],
            registry=r,
        )
        self.in_flight = Gauge(
            "siesta_gateway_in_flight_requests",
            "Requests forwarded to a replica and not finished, by model alias and replica kind "
            "(gpu, bridge).",
            ["model", "served_by"],
            registry=r,
        )
        self.queued = Gauge(
            "siesta_gateway_queued_requests",
            "Requests held while the model has no ready replica.",
            ["model"],
            registry=r,
        )
        self.hold_seconds = Histogram(
            "siesta_gateway_hold_seconds",
            "Time a request was held before it was forwarded (or gave up).",
            ["model", "outcome"],
            buckets=HOLD_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "siesta_gateway_upstream_errors",
            "Failures talking to a replica: connect (not reached, retried), unavailable "
            "(503 from a replica, retried), busy (a replica's queue is full: another one is "
            "tried, else its 503 is passed on), broken (failed after the request was sent).",
            ["model", "kind"],
            registry=r,
        )
        self.timeouts = Counter(
            "siesta_gateway_wake_timeouts",
            "Requests answered 503 because the model did not become ready within wakeTimeout.",
            ["model"],
            registry=r,
        )
        self.rejected = Counter(
            "siesta_gateway_rejected_requests",
            "Requests refused before routing: model_busy, held_cap, held_bytes, "
            "body_too_large, body_timeout, unauthorized, forbidden, rate_limited, "
            "unknown_model, bad_request, "
            "shutting_down, model_failing.",
            ["reason"],
            registry=r,
        )
        self.busy = Counter(
            "siesta_gateway_busy_rejections",
            "Requests answered 503 at once because no more could be held, by model and cap "
            "(model: its maxHeldRequests; gateway: all held requests; bytes: held bodies).",
            ["model", "scope"],
            registry=r,
        )
        self.demand_writes = Counter(
            "siesta_gateway_demand_writes",
            "Demand Lease writes, by result (ok, error).",
            ["result"],
            registry=r,
        )
