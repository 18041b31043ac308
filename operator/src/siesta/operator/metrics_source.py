"""Load from Prometheus (PromQL through prometheus-api-client); `load` reads the answer."""

from __future__ import annotations

import asyncio

from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from siesta.operator.load import LoadReading, interpret


class PrometheusSource:
    """One Prometheus endpoint; queries run in a thread so the event loop never blocks."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout
        # No retries: a failed query is reported at once and retried on the next cycle.
        self._client = PrometheusConnect(url=url, retry=Retry(total=0), timeout=timeout)

    async def read(self, query: str, ready: int) -> LoadReading:
        try:
            result = await asyncio.to_thread(self._client.custom_query, query)
        except Exception as error:
            return LoadReading(None, f"Prometheus query failed: {_short(error)}")
        return interpret(result, ready)


def _short(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if "Connection refused" in text or "NewConnectionError" in text or "Max retries" in text:
        return f"cannot connect to Prometheus ({type(error).__name__})"
    return text[:200]
