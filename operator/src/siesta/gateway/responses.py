"""aiohttp responses in OpenAI's error shape, shared by the routes and the forwarding path."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from siesta.gateway.catalog import Catalog
from siesta.gateway.errors import JSON, error_json
from siesta.gateway.metrics import GatewayMetrics


def error_response(
    status: int,
    message: str,
    error_type: str,
    code: str,
    *,
    retry_after: int | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """`headers`: kept from an aiohttp exception (Allow on a 405), less its body's."""
    kept = {
        k: v
        for k, v in (headers or {}).items()
        if k.lower() not in ("content-type", "content-length")
    }
    headers = kept | {"Content-Type": JSON}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    body = error_json(message, error_type, code, param)
    return web.Response(status=status, body=body, headers=headers)


MAX_NAMES_SHOWN = 50  # a 404 must stay small with thousands of models


def unknown_model(catalog: Catalog, metrics: GatewayMetrics, alias: str) -> web.Response:
    """404 that names the models clients can use instead."""
    metrics.rejected.labels("unknown_model").inc()
    names = catalog.names()
    shown = ", ".join(names[:MAX_NAMES_SHOWN]) or "none"
    known = shown + (
        f" and {len(names) - MAX_NAMES_SHOWN} more" if len(names) > MAX_NAMES_SHOWN else ""
    )
    return error_response(
        404,
        f"The model {alias!r} does not exist. Known models: {known}.",
        "invalid_request_error",
        "model_not_found",
        param="model",
    )
