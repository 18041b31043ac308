"""Operator settings: flags over SIESTA_* environment variables over defaults (docs/contracts.md).

Built once by `siesta operator` and handed to kopf in its memo; nothing writes os.environ.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from siesta.api.contract import DEFAULT_IDLE_TIMEOUT
from siesta.api.durations import parse_duration

DEFAULT_SERVER_IMAGE = "ghcr.io/siesta-dev/siesta-server:0.1.0"
DEFAULT_SERVER_CUDA_IMAGE = f"{DEFAULT_SERVER_IMAGE}-cuda"
DEFAULT_METRICS_PORT = 8081
DEFAULT_PEERING = "siesta"


class SettingsError(ValueError):
    """An environment variable holds a value the operator cannot use."""


@dataclass(frozen=True)
class OperatorSettings:
    server_image: str = DEFAULT_SERVER_IMAGE
    """The model server for models without GPUs (the CPU build)."""
    server_cuda_image: str = DEFAULT_SERVER_CUDA_IMAGE
    """The model server for models with `gpu.count > 0` (the CUDA build)."""
    prometheus_url: str | None = None
    default_idle_timeout: str = DEFAULT_IDLE_TIMEOUT
    metric_interval: timedelta = timedelta(seconds=30)
    namespaces: tuple[str, ...] = ()
    clock_offset: timedelta = timedelta(0)
    metrics_port: int = DEFAULT_METRICS_PORT
    peering: str = DEFAULT_PEERING
    """Name of the ClusterKopfPeering (or KopfPeering) object; empty = standalone."""
    drain_timeout: timedelta = timedelta(seconds=60)
    prometheus_timeout: float = 5.0
    model_network_policy: Mapping[str, Any] | None = None
    """A NetworkPolicy spec without its podSelector (policyTypes, ingress, egress): each model
    gets one for its pods (SIESTA_MODEL_NETWORK_POLICY, JSON; the chart renders it)."""
    gateway_lease_role: str = ""
    """A ClusterRole the operator binds, per model, to `gateway_account` in the model's
    namespace: the gateway may write demand Leases only where models are."""
    gateway_account: tuple[str, str] | None = None
    """The gateway's ServiceAccount (namespace, name), from SIESTA_GATEWAY_SERVICE_ACCOUNT."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorSettings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str:
            return env.get(name, "").strip()

        def duration(name: str, default: str) -> timedelta:
            text = get(name) or default
            try:
                return parse_duration(text)
            except ValueError as error:
                raise SettingsError(f"{name}: {error}") from None

        def integer(name: str, default: int) -> int:
            text = get(name)
            try:
                return int(text) if text else default
            except ValueError:
                raise SettingsError(f"{name}={text!r} is not an integer") from None

        def number(name: str, default: float) -> float:
            text = get(name)
            try:
                return float(text) if text else default
            except ValueError:
                raise SettingsError(f"{name}={text!r} is not a number") from None

        def json_object(name: str) -> Mapping[str, Any] | None:
            text = get(name)
            if not text:
                return None
            try:
                value = json.loads(text)
            except ValueError as error:
                raise SettingsError(f"{name}: not JSON: {error}") from None
            if not isinstance(value, dict):
                raise SettingsError(f"{name}: a JSON object is needed")
            return value

        def account(name: str) -> tuple[str, str] | None:
            text = get(name)
            if not text:
                return None
            namespace, slash, account_name = text.partition("/")
            if not slash or not namespace or not account_name:
                raise SettingsError(f"{name}={text!r} is not NAMESPACE/NAME")
            return namespace, account_name

        idle = get("SIESTA_DEFAULT_IDLE_TIMEOUT") or DEFAULT_IDLE_TIMEOUT
        duration("SIESTA_DEFAULT_IDLE_TIMEOUT", idle)
        peering = env.get("SIESTA_PEERING", DEFAULT_PEERING).strip()
        return cls(
            server_image=get("SIESTA_SERVER_IMAGE") or DEFAULT_SERVER_IMAGE,
            server_cuda_image=get("SIESTA_SERVER_CUDA_IMAGE") or DEFAULT_SERVER_CUDA_IMAGE,
            prometheus_url=get("SIESTA_PROMETHEUS_URL").rstrip("/") or None,
            default_idle_timeout=idle,
            metric_interval=duration("SIESTA_METRIC_INTERVAL", "30s"),
            namespaces=tuple(n.strip() for n in get("SIESTA_NAMESPACES").split(",") if n.strip()),
            clock_offset=timedelta(seconds=number("SIESTA_CLOCK_OFFSET_SECONDS", 0.0)),
            metrics_port=integer("SIESTA_METRICS_PORT", DEFAULT_METRICS_PORT),
            peering="" if peering in ("", "standalone") else peering,
            drain_timeout=duration("SIESTA_SERVER_DRAIN_TIMEOUT", "60s"),
            prometheus_timeout=number("SIESTA_PROMETHEUS_TIMEOUT", 5.0),
            model_network_policy=json_object("SIESTA_MODEL_NETWORK_POLICY"),
            gateway_lease_role=get("SIESTA_GATEWAY_LEASE_ROLE"),
            gateway_account=account("SIESTA_GATEWAY_SERVICE_ACCOUNT"),
        )


def settings_from(
    flags: Mapping[str, str | None], environ: Mapping[str, str] | None = None
) -> OperatorSettings:
    """Flags (keyed by the environment variable they override; None = not given) win over
    the environment."""
    env = dict(os.environ if environ is None else environ)
    env.update({name: value for name, value in flags.items() if value is not None})
    return OperatorSettings.from_env(env)
