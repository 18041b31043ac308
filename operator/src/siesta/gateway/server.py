"""Running the gateway: informers, the demand writer and the HTTP server, until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiohttp import web

from siesta.gateway.app import Gateway
from siesta.gateway.kube import DemandWriter, KubeClient, load_config, start_informers
from siesta.gateway.listener import HttpLimits, listen
from siesta.gateway.settings import GatewaySettings

log = logging.getLogger("siesta.gateway")


def http_limits(settings: GatewaySettings) -> HttpLimits:
    return HttpLimits(
        max_header_size=settings.max_header_size,
        idle_timeout=settings.idle_timeout,
        max_connections=settings.max_connections,
    )


async def run_gateway(settings: GatewaySettings, stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set (or SIGTERM/SIGINT), then drain and exit."""
    gateway = Gateway(settings)
    client = KubeClient(load_config(settings.kubeconfig))
    forwarder = gateway.forwarder
    writer = DemandWriter(
        client, gateway.catalog, forwarder.demand, settings.pod_name, gateway.metrics
    )
    forwarder.kick_demand = writer.kick
    for namespace in settings.namespaces or ("all",):
        gateway.expected_syncs |= {
            f"models/{namespace}",
            f"slices/{namespace}",
            f"bridges/{namespace}",
        }
    tasks = start_informers(client, gateway.catalog, settings.namespaces, gateway.mark_synced)
    tasks.append(asyncio.create_task(writer.run(), name="demand-writer"))

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(gateway.app, handler_cancellation=True, access_log=None)
    await runner.setup()
    listener = await listen(runner, settings.host, settings.port, http_limits(settings))
    log.info("gateway %s listening on %s:%s", settings.pod_name, settings.host, settings.port)
    try:
        await stop.wait()
        log.info("stopping: answering held requests, waiting for forwarded ones")
        await gateway.drain()
        # Last demand counts go out before the process ends (pending 0).
        await asyncio.sleep(0)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        listener.close()
        await runner.cleanup()
        await client.close()
