"""The CPU bridge's hand-over at the gateway: a real API server, real siesta-server processes
as the model's GPU replica and as its bridge, the real `openai` client.

No operator here: the test publishes the EndpointSlices the EndpointSlice controller would
publish for the operator's two Services (the model's own, labelled with the model; the
bridge's, `bridge_name(model)`, labelled BRIDGE_LABEL), so what the gateway does is seen
from outside: the response headers, the demand Lease and /metrics.

The bridge's answer passes through a gate in the pod network that holds it after its
first event until the test opens it, so the hand-over happens mid-stream on any machine,
however fast the tiny model writes.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from localworld.cluster import Cluster, wait_for
from localworld.gateway_env import (
    demand_leases,
    endpoint_slice,
    get_json,
    metric,
    model_manifest,
)
from localworld.localnet import (
    add_local_address,
    pod_address,
    remove_local_address,
    replica_in_pod_network,
)
from localworld.procs import Proc, start_gateway, start_server
from siesta.api.contract import (
    BRIDGE_IN_FLIGHT_ANNOTATION,
    BRIDGE_LABEL,
    IN_FLIGHT_ANNOTATION,
    MODEL_LABEL,
    SERVED_BY_HEADER,
    bridge_name,
)

pytestmark = [pytest.mark.cluster, pytest.mark.llama]

NODE_INDEX = 249  # pod-like addresses 10.244.249.N for this module's servers
PORT = 8080
BRIDGE_SPEC = {"bridge": {"threads": 2}}


@pytest.fixture(scope="module")
def tiny_model(model_dir: Path) -> Path:
    return model_dir / "tiny.gguf"


@pytest.fixture(scope="module")
def gateway(
    cluster: Cluster, crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proc]:
    proc = start_gateway(
        cluster.kubeconfig, args=["--keepalive", "0.3"], log_dir=tmp_path_factory.mktemp("gateway")
    )
    yield proc
    proc.stop()


ServerFactory = Callable[[str, int], str]


@pytest.fixture
def servers(tiny_model: Path, tmp_path: Path) -> Iterator[ServerFactory]:
    """start(alias, n): a real siesta-server on 10.244.249.n:8080; returns its address."""
    started: list[tuple[Proc, str]] = []

    def start(alias: str, index: int) -> str:
        address = str(pod_address(NODE_INDEX, index))
        add_local_address(address)
        proc = start_server(
            tiny_model, alias=alias, host=address, port=PORT, log_dir=tmp_path,
            name=f"server-{index}", args=["--parallel", "2", "--ctx-size", "512"],
        )  # fmt: skip
        started.append((proc, address))
        return address

    yield start
    for proc, address in started:
        proc.stop()
        remove_local_address(address)


def add_model(cluster: Cluster, gateway: Proc, namespace: str, name: str) -> str:
    cluster.apply(model_manifest(name, namespace, extra_spec=BRIDGE_SPEC))
    wait_for("gateway lists the model", lambda: entry(gateway, namespace, name), 10)
    return f"{namespace}/{name}"  # by NAMESPACE/NAME: other tests' models never take it


def entry(gateway: Proc, namespace: str, name: str) -> dict[str, Any] | None:
    listed = {m["id"]: m for m in get_json(f"{gateway.url}/v1/models")["data"]}
    return listed.get(f"{namespace}/{name}")


def publish_gpu(cluster: Cluster, namespace: str, model: str, address: str) -> None:
    cluster.apply(endpoint_slice(model, namespace, address, port=PORT))


def publish_bridge(cluster: Cluster, namespace: str, model: str, address: str) -> None:
    """The bridge Service's slice: BRIDGE_LABEL, never MODEL_LABEL (docs/contracts.md)."""
    manifest = endpoint_slice(bridge_name(model), namespace, address, port=PORT)
    labels = manifest["metadata"]["labels"]
    del labels[MODEL_LABEL]
    labels[BRIDGE_LABEL] = model
    cluster.apply(manifest)


def client(gateway: Proc) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=60)


def lease_counts(cluster: Cluster, namespace: str, model: str) -> tuple[str, str] | None:
    """(GPU in flight, bridge in flight) from the model's demand Lease."""
    for lease in demand_leases(cluster, namespace, model):
        annotations = lease["metadata"].get("annotations") or {}
        gpu = annotations.get(IN_FLIGHT_ANNOTATION, "")
        return str(gpu), str(annotations.get(BRIDGE_IN_FLIGHT_ANNOTATION, ""))
    return None


class Gate:
    """A pass-through to `upstream` that holds each answer after its first SSE event until
    `opened` is set."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.opened = threading.Event()

    def relay(self, downstream: socket.socket) -> None:
        downstream.settimeout(120)
        with socket.create_connection((self.upstream, PORT), timeout=120) as upstream:
            threading.Thread(target=_pump, args=(downstream, upstream), daemon=True).start()
            held = b""
            while chunk := upstream.recv(65536):
                if self.opened.is_set():
                    downstream.sendall(chunk)
                    continue
                held += chunk
                first = held.find(b"data: ")
                end = held.find(b"\n\n", first)
                if first >= 0 and end >= 0:
                    downstream.sendall(held[: end + 2])  # the headers and the first event
                    self.opened.wait(120)
                    downstream.sendall(held[end + 2 :])
                    held = b""


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """The request side, as is; its end is passed on (the relay may have closed by then)."""
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            sink.sendall(chunk)
        sink.shutdown(socket.SHUT_WR)


def stream_bytes(gateway: Proc, alias: str, keepalives: threading.Event) -> bytes:
    """A streamed chat's raw bytes; `keepalives` is set once the first keep-alive came."""
    body = {"model": alias, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    received = b""
    with httpx.stream(
        "POST", f"{gateway.url}/v1/chat/completions", json=body | {"stream": True}, timeout=60
    ) as response:
        for chunk in response.iter_raw():
            received += chunk
            if b": waiting for model" in received:
                keepalives.set()
    return received


def test_a_stream_started_on_the_bridge_ends_there_while_new_requests_go_to_the_gpu(
    cluster: Cluster, gateway: Proc, namespace: str, servers: ServerFactory
) -> None:
    model = "night"
    alias = add_model(cluster, gateway, namespace, model)
    assert (entry(gateway, namespace, model) or {})["siesta"]["bridge"] is True
    gate = Gate(servers(model, 1))  # the bridge's server behind its gate
    gated = pod_address(NODE_INDEX, 11)
    with replica_in_pod_network(gated, PORT, gate.relay):
        publish_bridge(cluster, namespace, model, gated)
        wait_for(
            "the bridge endpoint seen",
            lambda: (entry(gateway, namespace, model) or {})["siesta"]["readyBridgeEndpoints"],
            10,
        )
        # No GPU replica is ready: the bridge answers, and says so.
        with client(gateway).chat.completions.with_streaming_response.create(
            model=alias,
            messages=[{"role": "user", "content": "hello"}],
            max_tokens=16,
            stream=True,
            extra_body={"ignore_eos": True},
        ) as on_bridge:
            assert on_bridge.headers[SERVED_BY_HEADER] == "bridge"
            chunks = iter(on_bridge.parse())
            first = next(chunks)  # under way at the bridge, held at the gate
            wait_for(
                "the Lease counts 1 in flight on the bridge, none on the GPU",
                lambda: lease_counts(cluster, namespace, model) == ("0", "1"),
                10,
            )
            served_by = {"model": model, "served_by": "bridge"}
            assert metric(gateway.url, "siesta_gateway_in_flight_requests", served_by) == 1

            # The GPU replica becomes ready: the next request goes there.
            publish_gpu(cluster, namespace, model, servers(model, 2))
            wait_for(
                "the GPU endpoint seen",
                lambda: (entry(gateway, namespace, model) or {})["siesta"]["readyEndpoints"],
                10,
            )
            on_gpu = client(gateway).chat.completions.with_raw_response.create(
                model=alias, messages=[{"role": "user", "content": "hi"}], max_tokens=4
            )
            assert on_gpu.headers[SERVED_BY_HEADER] == "gpu"
            assert on_gpu.parse().choices

            # The bridge's stream was never moved: it ends where it started.
            gate.opened.set()
            rest = list(chunks)
        finish = [c.choices[0].finish_reason for c in [first, *rest] if c.choices]
        assert finish[-1] == "length"
        wait_for(
            "the Lease counts none in flight on the bridge",
            lambda: lease_counts(cluster, namespace, model) == ("0", "0"),
            10,
        )
    assert metric(gateway.url, "siesta_gateway_in_flight_requests", {"model": model}) == 0
    answered = "siesta_gateway_requests_total"
    assert metric(gateway.url, answered, {"model": model, "served_by": "bridge"}) == 1
    assert metric(gateway.url, answered, {"model": model, "served_by": "gpu"}) == 1


def test_a_bridge_that_refuses_connections_leaves_the_request_waiting_for_the_gpu(
    cluster: Cluster, gateway: Proc, namespace: str, servers: ServerFactory
) -> None:
    model = "refusing"
    alias = add_model(cluster, gateway, namespace, model)
    dead = pod_address(NODE_INDEX, 200)  # a local address where nothing listens
    add_local_address(dead)
    try:
        publish_bridge(cluster, namespace, model, dead)
        keepalives = threading.Event()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            pending = pool.submit(
                lambda: client(gateway).chat.completions.with_raw_response.create(
                    model=alias, messages=[{"role": "user", "content": "hi"}], max_tokens=4
                )
            )
            streamed = pool.submit(stream_bytes, gateway, alias, keepalives)
            wait_for(
                "the bridge refused the requests",
                lambda: metric(
                    gateway.url,
                    "siesta_gateway_upstream_errors_total",
                    {"model": model, "kind": "connect"},
                ),
                15,
            )
            assert keepalives.wait(15), "the held stream got no keep-alive"
            assert not pending.done()  # held for the GPU, not answered 502
            publish_gpu(cluster, namespace, model, servers(model, 3))
            answer = pending.result(timeout=60)
            stream = streamed.result(timeout=60)
        assert answer.headers[SERVED_BY_HEADER] == "gpu"
        assert float(answer.headers["X-Siesta-Wake-Seconds"]) > 0
        # The held stream's headers went out with its first keep-alive: comments say it.
        assert f": {SERVED_BY_HEADER}: gpu\n".encode() in stream
        assert b"data: [DONE]" in stream
    finally:
        remove_local_address(dead)
