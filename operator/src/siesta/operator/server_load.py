"""Load as the model servers report it themselves: the fallback when Prometheus cannot answer
(see `load.with_fallback`).

Each ready pod's `/metrics` has `llamacpp:requests_processing` and
`llamacpp:requests_deferred`; their sum over the ready pods is exactly what the default
load query asks Prometheus for. A model with no ready pod has no load by that definition.
If any ready pod does not answer, the reading is unavailable: a partial sum could scale a
serving model down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from siesta.operator.load import LoadReading

LOAD_SERIES = ("llamacpp:requests_processing", "llamacpp:requests_deferred")
SOURCE = "servers"


def load_from_exposition(text: str) -> float:
    """requests_processing + requests_deferred from one server's /metrics text."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in LOAD_SERIES:
                found[sample.name] = found.get(sample.name, 0.0) + float(sample.value)
    missing = [name for name in LOAD_SERIES if name not in found]
    if missing:
        raise ValueError(f"no {', '.join(missing)} in /metrics")
    return sum(found.values())


async def _one(session: aiohttp.ClientSession, url: str) -> float:
    async with session.get(url) as response:
        if response.status != 200:
            raise ValueError(f"{url}: HTTP {response.status}")
        return load_from_exposition(await response.text())


async def read_servers(urls: Sequence[str], seconds: float = 2.0) -> LoadReading:
    """The summed load of the ready servers at `urls` (their /metrics), or why there is none."""
    if not urls:
        return LoadReading(0.0, source=SOURCE)
    client_timeout = aiohttp.ClientTimeout(total=seconds)
    try:
        async with aiohttp.ClientSession(timeout=client_timeout) as session:
            values = await asyncio.gather(*(_one(session, url) for url in urls))
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        text = str(error) or type(error).__name__
        return LoadReading(None, f"model servers' /metrics: {text[:200]}", source=SOURCE)
    return LoadReading(sum(values), source=SOURCE)
