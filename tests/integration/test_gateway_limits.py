"""Hostile and careless input at the gateway, a real process against a real API server.

Every answer is a 4xx/503 in OpenAI's error shape, the gateway stays healthy, and its memory
is bounded by the bytes it holds: the HTTP limits (header size, idle and body timeouts,
connection cap), bad bodies, the held-bytes budget, and a replica's "busy" 503.
"""

from __future__ import annotations

import concurrent.futures
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from localworld.cluster import Cluster, wait_for
from localworld.gateway_env import endpoint_slice, get_json, install_crd, metric, model_manifest
from localworld.localnet import (
    pod_address,
    replica_in_pod_network,
)
from localworld.procs import Proc, start_gateway

pytestmark = [pytest.mark.cluster]

NODE_INDEX = 251  # pod-like addresses 10.244.251.N for this module's servers
MIB = 1024 * 1024
MAX_CONNECTIONS = 24
HELD_BYTES = 24 * MIB


def rss_bytes(proc: Proc) -> int:
    for line in Path(f"/proc/{proc.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if code is not None:
        assert error["code"] == code, error


def parse_raw(data: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, json.loads(body) if body else None


def read_all(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.fixture(scope="module")
def gateway(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    install_crd(cluster)
    proc = start_gateway(
        cluster.kubeconfig,
        args=[
            "--idle-timeout", "1", "--body-timeout", "5",
            "--max-connections", str(MAX_CONNECTIONS), "--max-held-bytes", str(HELD_BYTES),
            "--retry-after", "9",
        ],
        log_dir=tmp_path_factory.mktemp("gateway"),
        name="gateway-limits",
    )  # fmt: skip
    yield proc
    proc.stop()


def add_model(cluster: Cluster, gateway: Proc, namespace: str, name: str, **kwargs: Any) -> str:
    cluster.apply(model_manifest(name, namespace, **kwargs))
    wait_for(
        f"gateway lists {name}",
        lambda: name in {m["id"] for m in get_json(f"{gateway.url}/v1/models")["data"]},
        10,
    )
    return name


def test_bad_bodies_and_routes_get_openai_errors(gateway: Proc) -> None:
    url = f"{gateway.url}/v1/chat/completions"
    deep = b'{"model": "m", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    cases: list[tuple[bytes, int, str]] = [
        (deep, 400, "invalid_request"),
        (b"[" * 1000 + b"]" * 1000, 400, "invalid_request"),
        (b'{"model": "\\ud800"}', 404, "model_not_found"),  # a lone surrogate
        (b'{"model": "a\\udfff\\ud800b", "messages": []}', 404, "model_not_found"),
        (b"\xff\xfe not utf-8", 400, "invalid_request"),
        (b"[]", 400, "invalid_request"),
        (b"null", 400, "invalid_request"),
        (b'{"model": 5}', 400, "invalid_request"),
        (b"", 400, "invalid_request"),
    ]
    for body, status, code in cases:
        response = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
        assert_openai_error(response, status, code)
    assert_openai_error(httpx.get(f"{gateway.url}/no/such/path"), 404, "not_found")
    not_allowed = httpx.delete(f"{gateway.url}/v1/chat/completions")
    assert_openai_error(not_allowed, 405, "method_not_allowed")
    assert "POST" in not_allowed.headers["Allow"]
    assert_openai_error(httpx.get(f"{gateway.url}/v1/models/%ED%A0%80"), 404, "model_not_found")
    assert httpx.get(f"{gateway.url}/healthz").status_code == 200


def test_oversized_request_heads_get_431(gateway: Proc) -> None:
    big = httpx.get(f"{gateway.url}/v1/models", headers={"X-Big": "a" * 64 * 1024})
    assert_openai_error(big, 431, "request_header_too_large")
    many = httpx.get(f"{gateway.url}/v1/models", headers={f"X-H{i}": "1" for i in range(500)})
    assert_openai_error(many, 431, "request_header_too_large")
    assert httpx.get(f"{gateway.url}/healthz").status_code == 200


def test_idle_and_dribbling_connections_are_closed(gateway: Proc) -> None:
    host, port = gateway.url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port))) as idle:
        assert read_all(idle, 10) == b""  # closed by the gateway, no answer
    assert time.monotonic() - started < 5
    started = time.monotonic()
    with socket.create_connection((host, int(port))) as dribbling:
        dribbling.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n")
        for _ in range(10):  # one header line at a time, never the blank line
            time.sleep(0.2)
            try:
                dribbling.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
        assert read_all(dribbling, 10) == b""
    assert time.monotonic() - started < 5


def test_a_body_that_does_not_arrive_gets_408(gateway: Proc) -> None:
    host, port = gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"model": '
        )
        status, headers, body = parse_raw(read_all(sock, 10))
    assert status == 408
    assert headers["content-type"].startswith("application/json")
    assert body["error"]["code"] == "request_timeout"


def test_connections_over_the_cap_get_503(gateway: Proc) -> None:
    host, port = gateway.url.removeprefix("http://").split(":")
    opened = [socket.create_connection((host, int(port))) for _ in range(MAX_CONNECTIONS)]
    try:
        with socket.create_connection((host, int(port))) as extra:
            status, headers, body = parse_raw(read_all(extra, 5))
        assert status == 503
        assert headers["retry-after"] == "1"
        assert body["error"]["code"] == "too_many_connections"
    finally:
        for sock in opened:
            sock.close()
    wait_for("room again", lambda: httpx.get(f"{gateway.url}/healthz").status_code == 200, 5)


def test_held_requests_keep_their_bytes_once_within_a_budget(
    cluster: Cluster, gateway: Proc, namespace: str
) -> None:
    """4 MiB of empty objects parse to ~100 MB in Python; held, only the bytes stay."""
    name = add_model(cluster, gateway, namespace, "heavy", wake_timeout="20s")
    body = b'{"model": "heavy", "prompt": "x", "pad": [' + b"{}," * (4 * MIB // 3 - 20) + b"{}]}"
    assert len(body) <= 4 * MIB
    fits = HELD_BYTES // len(body)  # 6
    before = rss_bytes(gateway)
    url = f"{gateway.url}/v1/completions"
    with concurrent.futures.ThreadPoolExecutor(fits) as pool:
        held = [pool.submit(httpx.post, url, content=body, timeout=60) for _ in range(fits)]
        wait_for(
            f"{fits} held",
            lambda: metric(gateway.url, "siesta_gateway_queued_requests", {"model": name}) == fits,
            30,
        )
        grown = rss_bytes(gateway) - before
        refused = httpx.post(url, content=body, timeout=10)
        # The model never wakes here: after its wakeTimeout every held request gets its 503.
        answers = [future.result() for future in held]
    assert {a.json()["error"]["code"] for a in answers} == {"model_not_ready"}
    print(f"held {fits} x {len(body) / MIB:.1f} MiB: RSS +{grown / MIB:.0f} MiB")
    assert grown < fits * 3 * len(body), f"RSS grew {grown / MIB:.0f} MiB for {fits} bodies"
    assert_openai_error(refused, 503, "gateway_busy")
    assert refused.headers["Retry-After"] == "9"
    reason = {"reason": "held_bytes"}
    assert metric(gateway.url, "siesta_gateway_rejected_requests_total", reason) >= 1


def test_a_busy_replica_is_passed_on_at_once_not_held(
    cluster: Cluster, gateway: Proc, namespace: str
) -> None:
    """A replica whose queue is full answers 503 busy: the client gets it with the
    replica's Retry-After at once, instead of being held until wakeTimeout.

    The replica answers exactly what siesta-server answers when all its slots and its queue
    are taken (`errors.unavailable("server busy: ...")`); a real server could not be kept
    busy reliably here (the tiny model answers too fast, a bigger one did not refuse)."""
    from siesta_server.errors import unavailable

    busy_error = unavailable("server busy: all 1 slots are busy and 0 requests wait")
    answer = json.dumps(busy_error.body()).encode()
    name = add_model(cluster, gateway, namespace, "crowded", wake_timeout="60s")
    address = pod_address(NODE_INDEX, 1)
    served: list[bytes] = []

    def busy_replica(connection: socket.socket) -> None:
        served.append(connection.recv(65536))
        head = (
            f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Retry-After: {(busy_error.headers or {})['Retry-After']}\r\n"
            f"Content-Length: {len(answer)}\r\nConnection: close\r\n\r\n"
        )
        connection.sendall(head.encode() + answer)

    with replica_in_pod_network(address, 8080, busy_replica):
        cluster.apply(endpoint_slice(name, namespace, address))
        wait_for(
            "endpoint seen",
            lambda: get_json(f"{gateway.url}/v1/models/{name}")["siesta"]["readyEndpoints"] == 1,
            10,
        )
        started = time.monotonic()
        busy = httpx.post(
            f"{gateway.url}/v1/completions", json={"model": name, "prompt": "x"}, timeout=60
        )
        waited = time.monotonic() - started
    assert busy.status_code == 503, busy.text
    assert busy.json() == busy_error.body()  # the replica's own words
    assert busy.headers["Retry-After"] == "1"  # the replica's, not the gateway's 9
    assert waited < 5, f"held {waited:.1f}s"
    assert len(served) == 1  # tried once: no other replica, and not held to try again
    assert metric(gateway.url, "siesta_gateway_upstream_errors_total", {"kind": "busy"}) >= 1
