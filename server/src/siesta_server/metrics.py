"""Prometheus metrics: llama.cpp's own names (so dashboards and the operator's queries work
with either runtime) plus `siesta_server_*` extras.

The server adds no pod or namespace labels: Prometheus's scrape config attaches
`namespace` and `modeldeployment` through relabeling.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from siesta_server.native import Adapter

# `*_created` series only double the scrape size here (llama-server exposes none either).
disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass
class EngineCounters:
    """Written only by the decode thread; read by the scrape (ints/floats: GIL-atomic)."""

    prompt_tokens: int = 0
    prompt_tokens_cached: int = 0
    prompt_seconds: float = 0.0
    tokens_predicted: int = 0
    tokens_predicted_seconds: float = 0.0
    n_decode: int = 0
    n_busy_slots: int = 0
    n_tokens_max: int = 0
    requests_processing: int = 0
    requests_deferred: int = 0
    total_slots: int = 0


@dataclass
class ServerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    engine: EngineCounters = field(default_factory=EngineCounters)

    def __post_init__(self) -> None:
        self.registry.register(_LlamaCppCollector(self.engine))
        self.model_load_seconds = Gauge(
            "siesta_server_model_load_seconds",
            "Seconds spent loading the model into memory (after any download)",
            registry=self.registry,
        )
        self.download_seconds = Gauge(
            "siesta_server_model_download_seconds",
            "Seconds spent fetching and verifying the model before loading",
            registry=self.registry,
        )
        self.download_bytes = Counter(
            "siesta_server_download_bytes",
            "Bytes of model data downloaded",
            registry=self.registry,
        )
        self.fetch_info = Gauge(
            "siesta_server_model_fetch_info",
            "Where this start's model came from: source (URI scheme), cache (hit, miss or "
            "local) and the download's connections; the operator's wake stages read it",
            ["source", "cache", "connections"],
            registry=self.registry,
        )
        self.download_rate = Gauge(
            "siesta_server_download_bytes_per_second",
            "Model download rate: over the last few seconds while downloading, then the average",
            registry=self.registry,
        )
        self.last_request_timestamp = Gauge(
            "siesta_server_last_request_timestamp_seconds",
            "Unix time of the last inference request received (0: none yet)",
            registry=self.registry,
        )
        self.time_to_first_token = Histogram(
            "siesta_server_time_to_first_token_seconds",
            "Seconds from receiving a request to its first generated token (queueing included)",
            buckets=TTFT_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "siesta_server_requests",
            "Inference requests answered, by endpoint and HTTP status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.model_requests = Counter(
            "siesta_server_adapter_requests",
            "Inference requests by the model name they used: a LoRA adapter, or the base alias",
            ["adapter"],
            registry=self.registry,
        )
        self.model_tokens = Counter(
            "siesta_server_adapter_tokens",
            "Prompt and generated tokens by the model name they used (adapter or base alias)",
            ["adapter", "kind"],
            registry=self.registry,
        )
        self.ready = Gauge(
            "siesta_server_ready",
            "1 when the model is loaded and requests are accepted, else 0",
            registry=self.registry,
        )
        self.base_name = ""  # the base model's alias: the `adapter` label of plain requests

    def fetched(self, source: str, cache: str, connections: int) -> None:
        self.fetch_info.labels(source=source, cache=cache, connections=str(connections)).set(1)

    def request_received(self, adapter: Adapter | None = None) -> None:
        self.last_request_timestamp.set(time.time())
        self.model_requests.labels(self._label(adapter)).inc()

    def adapter_tokens(self, adapter: Adapter | None, kind: str, count: int) -> None:
        """Count `kind` ("prompt" or "predicted") tokens under the adapter's name."""
        self.model_tokens.labels(self._label(adapter), kind).inc(count)

    def _label(self, adapter: Adapter | None) -> str:
        return adapter.name if adapter is not None else self.base_name

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LlamaCppCollector(Collector):
    """Exposes EngineCounters under llama.cpp's `llamacpp:` metric names and help texts."""

    def __init__(self, counters: EngineCounters) -> None:
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        c = self._counters
        # CounterMetricFamily adds the `_total` suffix itself.
        counters = [
            ("prompt_tokens", "Number of prompt tokens processed.", c.prompt_tokens),
            (
                "prompt_tokens_cached",
                "Number of prompt tokens reused from the cache",
                c.prompt_tokens_cached,
            ),
            ("prompt_seconds", "Prompt process time", c.prompt_seconds),
            ("tokens_predicted", "Number of generation tokens processed.", c.tokens_predicted),
            (
                "tokens_predicted_seconds",
                "Predict process time",
                c.tokens_predicted_seconds,
            ),
            ("n_decode", "Total number of llama_decode() calls", c.n_decode),
        ]
        for name, help_text, value in counters:
            yield CounterMetricFamily(f"llamacpp:{name}", help_text, value=value)
        gauges = [
            (
                "prompt_tokens_seconds",
                "Average prompt throughput in tokens/s.",
                c.prompt_tokens / c.prompt_seconds if c.prompt_seconds else 0.0,
            ),
            (
                "predicted_tokens_seconds",
                "Average generation throughput in tokens/s.",
                c.tokens_predicted / c.tokens_predicted_seconds
                if c.tokens_predicted_seconds
                else 0.0,
            ),
            ("requests_processing", "Number of requests processing.", c.requests_processing),
            ("requests_deferred", "Number of requests deferred.", c.requests_deferred),
            (
                "n_busy_slots_per_decode",
                "Average number of busy slots per llama_decode() call",
                c.n_busy_slots / max(c.n_decode, 1),
            ),
            ("n_tokens_max", "Largest observed n_tokens.", c.n_tokens_max),
        ]
        for name, help_text, value in gauges:
            yield GaugeMetricFamily(f"llamacpp:{name}", help_text, value=value)
        yield GaugeMetricFamily(
            "siesta_server_slots", "Parallel slots (--parallel)", value=c.total_slots
        )
