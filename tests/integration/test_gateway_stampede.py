"""A bounded stampede: 1,000 concurrent requests for a sleeping model.

The model's spec.scaling.maxHeldRequests (N) bounds what one gateway holds: the first N are
held and answered once a real model server is ready, the rest get 503 `model_busy` with
Retry-After at once, the gateway's memory stays bounded and nothing hangs. Run with `-s` to
see the numbers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from localworld.cluster import Cluster, wait_for
from localworld.gateway_env import endpoint_slice, get_json, install_crd, metric, model_manifest
from localworld.localnet import add_local_address, pod_address, remove_local_address
from localworld.procs import Proc, start_gateway, start_server

pytestmark = [pytest.mark.cluster, pytest.mark.llama]

NODE_INDEX = 252  # pod-like addresses 10.244.252.N
CLIENTS = 1000
HELD = 50
MIB = 1024 * 1024


def rss_bytes(proc: Proc) -> int:
    for line in Path(f"/proc/{proc.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def gateway(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[Proc]:
    install_crd(cluster)
    proc = start_gateway(
        cluster.kubeconfig,
        namespaces=[namespace],
        args=["--retry-after", "3"],
        log_dir=tmp_path,
        name="gateway-stampede",
    )
    yield proc
    proc.stop()


async def one_request(
    session: aiohttp.ClientSession, url: str, body: dict[str, object]
) -> tuple[int, str, float, str | None]:
    """(status, error code or "", seconds, Retry-After)."""
    started = time.monotonic()
    async with session.post(url, json=body) as response:
        payload = await response.json()
        code = str(payload["error"]["code"]) if "error" in payload else ""
        return (
            response.status,
            code,
            time.monotonic() - started,
            response.headers.get("Retry-After"),
        )


def test_a_thousand_requests_for_a_sleeping_model(
    cluster: Cluster, gateway: Proc, namespace: str, tmp_path: Path
) -> None:
    from localworld.tiny_gguf import write_tiny_llama

    extra = {"scaling": {"wakeTimeout": "120s", "maxHeldRequests": HELD}}
    cluster.apply(model_manifest("herd", namespace, extra_spec=extra))
    wait_for(
        "listed",
        lambda: "herd" in {m["id"] for m in get_json(f"{gateway.url}/v1/models")["data"]},
        10,
    )
    address = pod_address(NODE_INDEX, 1)
    add_local_address(address)
    model = write_tiny_llama(tmp_path / "tiny.gguf")
    before = rss_bytes(gateway)
    peak = before
    server: Proc | None = None

    async def stampede() -> list[tuple[int, str, float, str | None]]:
        nonlocal peak, server
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=180)
        body = {"model": "herd", "prompt": "hello", "max_tokens": 2}
        url = f"{gateway.url}/v1/completions"
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            tasks = [asyncio.create_task(one_request(session, url, body)) for _ in range(CLIENTS)]
            refused_deadline = time.monotonic() + 60
            while sum(t.done() for t in tasks) < CLIENTS - HELD:
                assert time.monotonic() < refused_deadline, "refusals did not come at once"
                peak = max(peak, rss_bytes(gateway))
                await asyncio.sleep(0.2)
            peak = max(peak, rss_bytes(gateway))
            assert not any(t.done() and t.result()[0] == 200 for t in tasks)
            # The model wakes: a real server becomes ready, the held requests go out.
            server = await asyncio.to_thread(
                start_server, model, alias="herd", host=address, port=8080, log_dir=tmp_path,
                name="server-herd", args=["--parallel", "4", "--ctx-size", "1024"],
            )  # fmt: skip
            await asyncio.to_thread(cluster.apply, endpoint_slice("herd", namespace, address))
            return await asyncio.gather(*tasks)

    try:
        results = asyncio.run(stampede())
    finally:
        if server is not None:
            server.stop()
        remove_local_address(address)
    answered = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] == 503]
    print(
        f"\n{CLIENTS} requests, maxHeldRequests {HELD}: {len(answered)} answered after the "
        f"wake, {len(refused)} refused (slowest refusal {max(r[2] for r in refused):.2f}s); "
        f"gateway RSS {before / MIB:.0f} MiB before, peak {peak / MIB:.0f} MiB "
        f"(+{(peak - before) / MIB:.0f} MiB)"
    )
    assert len(answered) == HELD
    assert len(refused) == CLIENTS - HELD
    assert {(code, retry) for _, code, _, retry in refused} == {("model_busy", "3")}
    assert peak - before < 64 * MIB
    busy = metric(gateway.url, "siesta_gateway_busy_rejections_total", {"model": "herd"})
    assert busy == CLIENTS - HELD
    assert metric(gateway.url, "siesta_gateway_queued_requests", {"model": "herd"}) == 0
