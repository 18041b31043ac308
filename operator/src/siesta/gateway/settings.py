"""Gateway settings: every flag can also come from a SIESTA_* environment variable.

The names and defaults are part of docs/contracts.md ("Gateway settings").
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from siesta.api.durations import parse_duration

MIB = 1024 * 1024


@dataclass(frozen=True)
class GatewaySettings:
    host: str = "0.0.0.0"
    port: int = 8080
    max_body: int = 4 * MIB
    queue_size: int = 100
    max_held: int = 1000
    api_keys_file: Path | None = None
    upstream_key_file: Path | None = None
    namespaces: tuple[str, ...] = ()
    pod_name: str = "siesta-gateway"
    kubeconfig: str | None = None
    keepalive_interval: float = 5.0
    retry_after: int = 5
    connect_timeout: float = 2.0
    drain_timeout: float = 30.0
    max_held_bytes: int = 256 * MIB
    max_header_size: int = 16 * 1024
    max_connections: int = 4096
    idle_timeout: float = 30.0
    body_timeout: float = 30.0
    cors_origins: tuple[str, ...] = ()


# flag, environment variable, help
_OPTIONS: list[tuple[str, str, str]] = [
    ("--host", "SIESTA_GATEWAY_HOST", "address to listen on (default 0.0.0.0)"),
    ("--port", "SIESTA_GATEWAY_PORT", "listen port; /metrics is served there too (8080)"),
    ("--max-body", "SIESTA_GATEWAY_MAX_BODY", "request body limit in bytes (4 MiB)"),
    (
        "--queue-size",
        "SIESTA_GATEWAY_QUEUE_SIZE",
        "held requests per model unless its spec.scaling.maxHeldRequests says (100)",
    ),
    ("--max-held", "SIESTA_GATEWAY_MAX_HELD", "held requests in all (1000)"),
    ("--max-held-bytes", "SIESTA_GATEWAY_MAX_HELD_BYTES", "bodies of held requests (256 MiB)"),
    (
        "--max-header-size",
        "SIESTA_GATEWAY_MAX_HEADER_SIZE",
        "longest request line or header line; longer gets 431 (16 KiB)",
    ),
    ("--max-connections", "SIESTA_GATEWAY_MAX_CONNECTIONS", "open connections (4096)"),
    (
        "--idle-timeout",
        "SIESTA_GATEWAY_IDLE_TIMEOUT",
        "close a connection without a whole request head this long (30s)",
    ),
    ("--body-timeout", "SIESTA_GATEWAY_BODY_TIMEOUT", "time to send a request body (30s)"),
    (
        "--cors-origins",
        "SIESTA_GATEWAY_CORS_ORIGINS",
        "comma-separated browser origins allowed to call the API (none)",
    ),
    ("--api-keys-file", "SIESTA_GATEWAY_API_KEYS_FILE", "one API key per line; unset = no auth"),
    (
        "--upstream-key-file",
        "SIESTA_GATEWAY_UPSTREAM_KEY_FILE",
        "API key the model servers want (their --api-key-file); first line is sent",
    ),
    ("--namespaces", "SIESTA_NAMESPACES", "comma-separated namespaces to serve (default all)"),
    ("--pod-name", "SIESTA_GATEWAY_POD_NAME", "this replica's name (default POD_NAME or host)"),
    ("--kubeconfig", "KUBECONFIG", "kubeconfig file (default: in-cluster, then ~/.kube/config)"),
    ("--keepalive", "SIESTA_GATEWAY_KEEPALIVE", "SSE keep-alive interval while waiting (5s)"),
    ("--retry-after", "SIESTA_GATEWAY_RETRY_AFTER", "Retry-After seconds on 503 (5)"),
    ("--connect-timeout", "SIESTA_GATEWAY_CONNECT_TIMEOUT", "connect timeout to a replica (2s)"),
    (
        "--drain-timeout",
        "SIESTA_GATEWAY_DRAIN_TIMEOUT",
        "on SIGTERM, wait this long for requests (30s)",
    ),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for flag, env, help_text in _OPTIONS:
        parser.add_argument(flag, default=None, help=f"{help_text} [{env}]")


def _seconds(text: str) -> float:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        return parse_duration(text).total_seconds()


def _list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _pod_name(environ: Mapping[str, str]) -> str:
    return environ.get("POD_NAME") or socket.gethostname() or "siesta-gateway"


def settings_from(
    values: Mapping[str, str | None], environ: Mapping[str, str] | None = None
) -> GatewaySettings:
    """Flags (``values``, keyed by dest) win over environment variables, then defaults."""
    environ = os.environ if environ is None else environ
    raw: dict[str, str] = {}
    for flag, env, _ in _OPTIONS:
        dest = flag.removeprefix("--").replace("-", "_")
        value = values.get(dest)
        if value is None and environ.get(env, "").strip():
            value = environ[env].strip()
        if value is not None:
            raw[dest] = value
    try:
        settings = GatewaySettings(
            host=raw.get("host", GatewaySettings.host),
            port=int(raw.get("port", GatewaySettings.port)),
            max_body=int(raw.get("max_body", GatewaySettings.max_body)),
            queue_size=int(raw.get("queue_size", GatewaySettings.queue_size)),
            max_held=int(raw.get("max_held", GatewaySettings.max_held)),
            api_keys_file=Path(raw["api_keys_file"]) if raw.get("api_keys_file") else None,
            upstream_key_file=(
                Path(raw["upstream_key_file"]) if raw.get("upstream_key_file") else None
            ),
            namespaces=_list(raw.get("namespaces", "")),
            pod_name=raw.get("pod_name") or _pod_name(environ),
            kubeconfig=raw.get("kubeconfig"),
            keepalive_interval=_seconds(raw.get("keepalive", "5")),
            retry_after=int(raw.get("retry_after", GatewaySettings.retry_after)),
            connect_timeout=_seconds(raw.get("connect_timeout", "2")),
            drain_timeout=_seconds(raw.get("drain_timeout", "30")),
            max_held_bytes=int(raw.get("max_held_bytes", GatewaySettings.max_held_bytes)),
            max_header_size=int(raw.get("max_header_size", GatewaySettings.max_header_size)),
            max_connections=int(raw.get("max_connections", GatewaySettings.max_connections)),
            idle_timeout=_seconds(raw.get("idle_timeout", "30")),
            body_timeout=_seconds(raw.get("body_timeout", "30")),
            cors_origins=_list(raw.get("cors_origins", "")),
        )
    except ValueError as error:
        raise ValueError(f"invalid gateway setting: {error}") from None
    sizes = (
        settings.max_body,
        settings.queue_size,
        settings.max_held,
        settings.port,
        settings.max_held_bytes,
        settings.max_header_size,
        settings.max_connections,
    )
    if min(sizes) < 1:
        raise ValueError(
            "port, max body, queue size, max held (bytes), header size and connections "
            "must be positive"
        )
    if min(settings.keepalive_interval, settings.idle_timeout, settings.body_timeout) <= 0:
        raise ValueError("keep-alive interval, idle and body timeouts must be positive")
    return settings
