"""The gateway against a real API server and real siesta-server processes.

No operator here: the tests publish EndpointSlices themselves (as the EndpointSlice
controller would for ready pods) and start model servers on pod-like local addresses, so
every gateway behaviour is seen from the outside: the `openai` client, raw HTTP, the demand
Leases in the API server and the gateway's /metrics.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import time
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
from siesta.api.contract import PENDING_ANNOTATION

pytestmark = [pytest.mark.cluster, pytest.mark.llama]

NODE_INDEX = 250  # pod-like addresses 10.244.250.N for this module's servers
QUEUE_SIZE = 4


@pytest.fixture(scope="module")
def tiny_model(model_dir: Path) -> Path:
    return model_dir / "tiny.gguf"


@pytest.fixture(scope="module")
def gateway(
    cluster: Cluster, crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proc]:
    proc = start_gateway(
        cluster.kubeconfig,
        args=["--queue-size", str(QUEUE_SIZE), "--keepalive", "0.3", "--retry-after", "7"],
        log_dir=tmp_path_factory.mktemp("gateway"),
    )
    yield proc
    proc.stop()


ServerFactory = Callable[[str, int], Proc]


@pytest.fixture(scope="module")
def servers(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """start(alias, n): a real siesta-server on 10.244.250.n:8080."""
    started: list[tuple[Proc, str]] = []
    log_dir = tmp_path_factory.mktemp("servers")

    def start(alias: str, index: int) -> Proc:
        address = pod_address(NODE_INDEX, index)
        add_local_address(address)
        proc = start_server(
            tiny_model,
            alias=alias,
            host=address,
            port=8080,
            log_dir=log_dir,
            name=f"server-{index}",
            args=["--parallel", "4", "--ctx-size", "1024"],
        )
        started.append((proc, address))
        return proc

    yield start
    for proc, address in started:
        proc.stop()
        remove_local_address(address)


def add_model(cluster: Cluster, gateway: Proc, namespace: str, name: str, **kwargs: Any) -> str:
    manifest = model_manifest(name, namespace, **kwargs)
    cluster.apply(manifest)
    alias = str(manifest["spec"]["model"].get("alias") or name)
    wait_for(
        f"gateway lists {alias}",
        lambda: alias in {m["id"] for m in get_json(f"{gateway.url}/v1/models")["data"]},
        10,
    )
    return alias


def publish(
    cluster: Cluster, namespace: str, name: str, address: str, *, ready: bool = True
) -> None:
    cluster.apply(endpoint_slice(name, namespace, address, ready=ready))


def client(gateway: Proc, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, **kwargs)


def chat(gateway: Proc, alias: str, timeout: float = 60.0) -> str:
    completion = client(gateway, timeout=timeout).chat.completions.create(
        model=alias,
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=8,
        extra_body={"ignore_eos": True},  # random weights: never an empty answer
    )
    return completion.choices[0].message.content or ""


def test_models_lists_every_model_and_unknown_models_get_404(
    cluster: Cluster, gateway: Proc, namespace: str
) -> None:
    add_model(cluster, gateway, namespace, "alpha")
    add_model(cluster, gateway, namespace, "beta", alias="beta-chat")
    listed = {m.id: m for m in client(gateway).models.list().data}
    assert {"alpha", "beta-chat"} <= set(listed)
    entry = listed["beta-chat"].model_dump()
    assert entry["siesta"]["namespace"] == namespace
    assert entry["siesta"]["name"] == "beta"
    assert entry["siesta"]["readyEndpoints"] == 0

    with pytest.raises(openai.NotFoundError) as missing:
        chat(gateway, "no-such-model")
    error = missing.value.body
    assert isinstance(error, dict)
    assert error["code"] == "model_not_found"
    assert "alpha" in error["message"]
    assert "beta-chat" in error["message"]


def test_warm_requests_are_forwarded_and_streamed(
    cluster: Cluster, gateway: Proc, namespace: str, servers: ServerFactory
) -> None:
    alias = add_model(cluster, gateway, namespace, "warm")
    servers(alias, 1)
    publish(cluster, namespace, "warm", pod_address(NODE_INDEX, 1))
    wait_for(
        "endpoint seen",
        lambda: get_json(f"{gateway.url}/v1/models/{alias}")["siesta"]["readyEndpoints"] == 1,
        10,
    )
    assert chat(gateway, alias)

    stream = client(gateway).chat.completions.create(
        model=alias, messages=[{"role": "user", "content": "hi"}], max_tokens=8, stream=True
    )
    chunks = list(stream)
    assert chunks
    assert chunks[-1].choices[0].finish_reason is not None

    completion = client(gateway).completions.create(model=alias, prompt="the", max_tokens=4)
    assert completion.choices[0].text is not None

    embedding = client(gateway).embeddings.create(model=alias, input="hello world")
    assert len(embedding.data[0].embedding) > 0
    wait_for(
        "three requests counted",
        lambda: (
            metric(gateway.url, "siesta_gateway_requests_total", {"model": alias, "code": "200"})
            >= 3
        ),
        5,
    )


def test_cold_request_is_held_demand_recorded_then_served(
    cluster: Cluster, gateway: Proc, namespace: str, servers: ServerFactory
) -> None:
    alias = add_model(cluster, gateway, namespace, "cold", alias="cold-chat")
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(chat, gateway, alias) for _ in range(2)]
        woken = pool.submit(
            lambda: client(gateway, timeout=60).chat.completions.with_raw_response.create(
                model=alias, messages=[{"role": "user", "content": "hello"}], max_tokens=4
            )
        )

        def pending_lease() -> dict[str, Any] | None:
            for lease in demand_leases(cluster, namespace, "cold"):
                if lease["metadata"]["annotations"].get(PENDING_ANNOTATION) == "3":
                    return lease
            return None

        lease = wait_for("a demand Lease with 3 pending requests", pending_lease, 10)
        model_uid = cluster.get_json("md", "cold", "-n", namespace)["metadata"]["uid"]
        assert lease["metadata"]["ownerReferences"][0]["uid"] == model_uid
        assert lease["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "siesta-gateway"
        assert lease["spec"]["leaseDurationSeconds"] == 30
        assert lease["spec"]["holderIdentity"].startswith("gateway-")
        assert metric(gateway.url, "siesta_gateway_queued_requests", {"model": alias}) == 3
        assert not any(f.done() for f in [*futures, woken])

        servers(alias, 2)
        publish(cluster, namespace, "cold", pod_address(NODE_INDEX, 2))
        assert all(f.result(timeout=60) for f in futures)
        # A held request's answer says how long it waited for the wake.
        assert float(woken.result(timeout=60).headers["X-Siesta-Wake-Seconds"]) > 0

    wait_for(
        "pending back to 0 in the Lease",
        lambda: any(
            lease["metadata"]["annotations"][PENDING_ANNOTATION] == "0"
            for lease in demand_leases(cluster, namespace, "cold")
        ),
        10,
    )
    assert metric(gateway.url, "siesta_gateway_queued_requests", {"model": alias}) == 0
    held = metric(gateway.url, "siesta_gateway_hold_seconds_count", {"model": alias})
    assert held == 3


def test_an_adapter_name_wakes_and_reaches_its_base_model(
    cluster: Cluster,
    gateway: Proc,
    namespace: str,
    tiny_model: Path,
    tmp_path: Path,
) -> None:
    """A request for a LoRA adapter is held as demand for the base model, then served there."""
    from localworld.tiny_gguf import write_tiny_lora

    lora = write_tiny_lora(tmp_path / "localworld.gguf")
    adapters = [{"name": "support-chat", "uri": "file:///models/support.gguf"}]
    add_model(cluster, gateway, namespace, "tuned", alias="tuned-base",
              extra_spec={"adapters": adapters})  # fmt: skip
    wait_for(
        "gateway lists the adapter",
        lambda: "support-chat" in {m["id"] for m in get_json(f"{gateway.url}/v1/models")["data"]},
        10,
    )
    listed = get_json(f"{gateway.url}/v1/models/support-chat")
    assert listed["parent"] == "tuned-base"
    assert listed["siesta"]["name"] == "tuned"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(
            lambda: client(gateway, timeout=60).completions.create(
                model="support-chat", prompt="hello", max_tokens=4
            )
        )
        wait_for(
            "demand for the base model",
            lambda: any(
                lease["metadata"]["annotations"].get(PENDING_ANNOTATION) == "1"
                for lease in demand_leases(cluster, namespace, "tuned")
            ),
            10,
        )
        address = pod_address(NODE_INDEX, 9)
        add_local_address(address)
        server = start_server(
            tiny_model, alias="tuned-base", host=address, port=8080, log_dir=tmp_path,
            name="server-tuned", args=["--ctx-size", "1024", "--lora", f"support-chat={lora}"],
        )  # fmt: skip
        try:
            publish(cluster, namespace, "tuned", address)
            completion = future.result(timeout=60)
        finally:
            server.stop()
            remove_local_address(address)
    assert completion.model == "support-chat"


def test_streaming_client_gets_keepalives_while_the_model_wakes(
    cluster: Cluster, gateway: Proc, namespace: str, servers: ServerFactory
) -> None:
    alias = add_model(cluster, gateway, namespace, "sse")
    body = {
        "model": alias,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4,
        "stream": True,
    }
    received = b""
    published = False
    with httpx.stream(
        "POST", f"{gateway.url}/v1/chat/completions", json=body, timeout=60
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for chunk in response.iter_raw():
            received += chunk
            if not published and b": waiting for model" in received:
                published = True
                servers(alias, 3)
                publish(cluster, namespace, "sse", pod_address(NODE_INDEX, 3))
                received += b"|published|"
    head, _, tail = received.partition(b"|published|")
    assert head.startswith(b": waiting for model\n\n")
    assert b"data: [DONE]" in tail


def test_wake_timeout_answers_503_with_retry_after(
    cluster: Cluster, gateway: Proc, namespace: str
) -> None:
    alias = add_model(cluster, gateway, namespace, "sleepy", wake_timeout="1s")
    started = time.monotonic()
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": alias, "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert time.monotonic() - started >= 1.0
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    error = response.json()["error"]
    assert error["type"] == "unavailable_error"
    assert error["code"] == "model_not_ready"
    assert metric(gateway.url, "siesta_gateway_wake_timeouts_total", {"model": alias}) == 1
    assert metric(gateway.url, "siesta_gateway_queued_requests", {"model": alias}) == 0


def test_full_queue_answers_503_and_gone_clients_leave_the_queue(
    cluster: Cluster, gateway: Proc, namespace: str
) -> None:
    alias = add_model(cluster, gateway, namespace, "busy")
    body = {"model": alias, "prompt": "x"}
    with concurrent.futures.ThreadPoolExecutor(QUEUE_SIZE) as pool:
        # Clients that give up after 2 s: they fill the queue, then leave it.
        held = [
            pool.submit(httpx.post, f"{gateway.url}/v1/completions", json=body, timeout=2.0)
            for _ in range(QUEUE_SIZE)
        ]
        wait_for(
            "queue filled",
            lambda: (
                metric(gateway.url, "siesta_gateway_queued_requests", {"model": alias})
                == QUEUE_SIZE
            ),
            5,
        )
        rejected = httpx.post(f"{gateway.url}/v1/completions", json=body, timeout=10)
        assert rejected.status_code == 503
        assert rejected.headers["Retry-After"] == "7"
        assert rejected.json()["error"]["code"] == "model_busy"
        for future in held:
            with pytest.raises(httpx.ReadTimeout):
                future.result()
    wait_for(
        "clients that hung up left the queue",
        lambda: metric(gateway.url, "siesta_gateway_queued_requests", {"model": alias}) == 0,
        5,
    )


def test_refused_connection_is_retried_on_another_replica(
    cluster: Cluster, gateway: Proc, namespace: str, servers: ServerFactory
) -> None:
    alias = add_model(cluster, gateway, namespace, "flaky")
    dead = pod_address(NODE_INDEX, 200)  # a local address where nothing listens
    add_local_address(dead)
    try:
        servers(alias, 4)
        publish(cluster, namespace, "flaky", dead)
        publish(cluster, namespace, "flaky", pod_address(NODE_INDEX, 4))
        wait_for(
            "both endpoints seen",
            lambda: get_json(f"{gateway.url}/v1/models/{alias}")["siesta"]["readyEndpoints"] == 2,
            10,
        )
        for _ in range(4):
            assert chat(gateway, alias)
        refused = metric(
            gateway.url, "siesta_gateway_upstream_errors_total", {"model": alias, "kind": "connect"}
        )
        assert refused >= 1
    finally:
        remove_local_address(dead)


def test_api_keys_and_body_limit(
    cluster: Cluster, crd: None, namespace: str, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    keys.write_text("secret-one\nsecret-two\n")
    proc = start_gateway(
        cluster.kubeconfig,
        namespaces=[namespace],
        log_dir=tmp_path,
        args=["--api-keys-file", str(keys), "--max-body", "2048"],
        name="gateway-auth",
    )
    try:
        cluster.apply(model_manifest("locked", namespace))
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{proc.url}/v1", api_key="wrong", max_retries=0).models.list()
        allowed = openai.OpenAI(base_url=f"{proc.url}/v1", api_key="secret-two", max_retries=0)
        names = ["locked", f"{namespace}/locked"]
        wait_for("listed", lambda: [m.id for m in allowed.models.list().data] == names, 10)
        too_big = httpx.post(
            f"{proc.url}/v1/completions",
            headers={"Authorization": "Bearer secret-one"},
            json={"model": "locked", "prompt": "x" * 4096},
        )
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "request_too_large"
        assert httpx.get(f"{proc.url}/metrics").status_code == 200  # scrapes need no key
    finally:
        proc.stop()


def test_gateway_sends_the_key_of_servers_that_check_keys(
    cluster: Cluster, crd: None, namespace: str, tmp_path: Path, tiny_model: Path
) -> None:
    """A model server with --api-key-file refuses anyone without the key, the gateway included
    unless it has --upstream-key-file; clients keep using the gateway's own keys."""
    server_keys = tmp_path / "server-keys"
    server_keys.write_text("model-pods-only\n")
    address = pod_address(NODE_INDEX, 40)
    add_local_address(address)
    server = start_server(
        tiny_model,
        alias="guarded",
        host=address,
        port=8080,
        log_dir=tmp_path,
        name="server-guarded",
        args=["--parallel", "1", "--ctx-size", "256", "--api-key-file", str(server_keys)],
    )
    gateways = {
        name: start_gateway(
            cluster.kubeconfig,
            namespaces=[namespace],
            log_dir=tmp_path,
            args=args,
            name=name,
        )
        for name, args in {
            "gateway-keyless": [],
            "gateway-keyed": ["--upstream-key-file", str(server_keys)],
        }.items()
    }
    try:
        cluster.apply(model_manifest("guarded", namespace))
        publish(cluster, namespace, "guarded", address)
        direct = httpx.post(f"http://{address}:8080/v1/completions", json={"prompt": "x"})
        assert direct.status_code == 401
        for proc in gateways.values():
            wait_for(
                "listed",
                lambda proc=proc: (
                    "guarded" in {m["id"] for m in get_json(f"{proc.url}/v1/models")["data"]}
                ),
                10,
            )
        assert chat(gateways["gateway-keyed"], "guarded")
        with pytest.raises(openai.AuthenticationError):
            chat(gateways["gateway-keyless"], "guarded")
    finally:
        for proc in gateways.values():
            proc.stop()
        server.stop()
        remove_local_address(address)


def test_requests_are_spread_over_ready_replicas(
    cluster: Cluster, gateway: Proc, namespace: str, servers: ServerFactory
) -> None:
    alias = add_model(cluster, gateway, namespace, "pair")
    replicas = [servers(alias, 5), servers(alias, 6)]
    for index in (5, 6):
        publish(cluster, namespace, "pair", pod_address(NODE_INDEX, index))
    wait_for(
        "both endpoints seen",
        lambda: get_json(f"{gateway.url}/v1/models/{alias}")["siesta"]["readyEndpoints"] == 2,
        10,
    )
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert all(pool.map(lambda _: chat(gateway, alias), range(8)))
    served = [metric(r.url, "siesta_server_requests_total") for r in replicas]
    assert sum(served) == 8
    assert min(served) >= 2, f"one replica took almost everything: {served}"


def test_a_request_that_reached_a_replica_is_never_retried(
    cluster: Cluster, gateway: Proc, namespace: str, servers: ServerFactory
) -> None:
    """A replica that takes the request and then drops the connection: 502, not a retry."""
    alias = add_model(cluster, gateway, namespace, "once")
    broken_address = pod_address(NODE_INDEX, 210)

    def swallow(connection: socket.socket) -> None:  # reads the request, hangs up unanswered
        connection.recv(65536)

    with replica_in_pod_network(broken_address, 8080, swallow):
        real = servers(alias, 7)
        publish(cluster, namespace, "once", broken_address)
        publish(cluster, namespace, "once", pod_address(NODE_INDEX, 7))
        wait_for(
            "both endpoints seen",
            lambda: get_json(f"{gateway.url}/v1/models/{alias}")["siesta"]["readyEndpoints"] == 2,
            10,
        )
        body = {"model": alias, "prompt": "the", "max_tokens": 2}
        codes = [
            httpx.post(f"{gateway.url}/v1/completions", json=body, timeout=30).status_code
            for _ in range(6)
        ]
        assert sorted(set(codes)) == [200, 502]
        # Every 502 went to the broken replica only: the real one saw just the 200s.
        assert metric(real.url, "siesta_server_requests_total") == codes.count(200)
        broken = metric(
            gateway.url, "siesta_gateway_upstream_errors_total", {"model": alias, "kind": "broken"}
        )
        assert broken == codes.count(502)


def test_held_requests_get_404_when_their_model_is_deleted(
    cluster: Cluster, gateway: Proc, namespace: str
) -> None:
    alias = add_model(cluster, gateway, namespace, "doomed")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(
            httpx.post,
            f"{gateway.url}/v1/completions",
            json={"model": alias, "prompt": "x"},
            timeout=30,
        )
        wait_for(
            "request held",
            lambda: metric(gateway.url, "siesta_gateway_queued_requests", {"model": alias}) == 1,
            5,
        )
        cluster.kubectl("delete", "md", "doomed", "-n", namespace)
        response = future.result(timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


def test_each_gateway_replica_reports_demand_in_its_own_lease(
    cluster: Cluster, gateway: Proc, namespace: str, tmp_path: Path
) -> None:
    alias = add_model(cluster, gateway, namespace, "shared")
    second = start_gateway(cluster.kubeconfig, log_dir=tmp_path, name="gateway-b")
    try:
        wait_for(
            "second gateway lists the model",
            lambda: alias in {m["id"] for m in get_json(f"{second.url}/v1/models")["data"]},
            10,
        )
        # By NAMESPACE/ALIAS: another test's model may hold the bare name (the oldest wins).
        body = {"model": f"{namespace}/{alias}", "prompt": "x"}
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            for replica in (gateway, second):
                # Held while the test looks: a client that gave up takes its demand back.
                pool.submit(httpx.post, f"{replica.url}/v1/completions", json=body, timeout=30)

            def two_pending_leases() -> bool:
                leases = demand_leases(cluster, namespace, "shared")
                pending = [lease["metadata"]["annotations"][PENDING_ANNOTATION] for lease in leases]
                return len(leases) == 2 and pending == ["1", "1"]

            try:
                wait_for("one Lease per gateway replica, 1 pending each", two_pending_leases, 25)
            except BaseException:
                leases = demand_leases(cluster, namespace, "shared")
                print([(lease["spec"], lease["metadata"]["annotations"]) for lease in leases])
                raise
        holders = {
            lease["spec"]["holderIdentity"] for lease in demand_leases(cluster, namespace, "shared")
        }
        assert len(holders) == 2
    finally:
        second.stop()


def test_sigterm_lets_a_forwarded_stream_finish_then_exits_0(
    cluster: Cluster,
    gateway: Proc,
    namespace: str,
    servers: ServerFactory,
    tmp_path: Path,
) -> None:
    """Drain: a request already at a replica is streamed to its end, then the gateway exits."""
    alias = add_model(cluster, gateway, namespace, "drained")
    servers(alias, 8)
    publish(cluster, namespace, "drained", pod_address(NODE_INDEX, 8))
    own = start_gateway(cluster.kubeconfig, args=["--drain-timeout", "60s"], log_dir=tmp_path)
    try:
        wait_for(
            "endpoint seen",
            lambda: get_json(f"{own.url}/v1/models/{alias}")["siesta"]["readyEndpoints"] == 1,
            10,
        )
        stream = client(own, timeout=60).chat.completions.create(
            model=alias,
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=64,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        chunks = iter(stream)
        first = next(chunks)  # the answer is under way at the replica
        own.signal(signal.SIGTERM)
        rest = list(chunks)
        finish = [c.choices[0].finish_reason for c in [first, *rest] if c.choices]
        assert finish[-1] == "length", f"the stream ended early: {finish[-5:]}\n{own.log_tail()}"
        assert own.process.wait(timeout=30) == 0
    finally:
        own.stop()


def test_a_model_in_its_wake_backoff_is_refused_at_once_and_not_woken(
    cluster: Cluster, gateway: Proc, namespace: str
) -> None:
    """The operator's status.wakeBackoff (written here as it would): until nextWakeAllowed a
    request gets 503 model_failing with the remaining time, and no demand is recorded."""
    alias = add_model(cluster, gateway, namespace, "crashy")

    def set_status(next_wake: float) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(next_wake))
        failing = {
            "type": "ModelServing", "status": "False", "reason": "CrashLoopBackOff",
            "message": "crashy-0: CrashLoopBackOff: model file not found",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }  # fmt: skip
        status = {
            "replicas": 0,
            "conditions": [failing],
            "wakeBackoff": {"failures": 3, "nextWakeAllowed": stamp},
        }
        cluster.kubectl(
            "patch", "md", "crashy", "-n", namespace, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}),
        )  # fmt: skip

    set_status(time.time() + 240)
    body = {"model": alias, "prompt": "x"}

    def refused() -> httpx.Response | None:
        response = httpx.post(f"{gateway.url}/v1/completions", json=body, timeout=2)
        return response if response.status_code == 503 else None

    answer = wait_for("the backoff seen", refused, 10)
    error = answer.json()["error"]
    assert error["code"] == "model_failing"
    assert "model file not found" in error["message"]
    assert 230 <= int(answer.headers["Retry-After"]) <= 240
    assert demand_leases(cluster, namespace, "crashy") == []  # nothing woke it

    set_status(time.time() - 1)  # the backoff is over: the next request wakes it
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(httpx.post, f"{gateway.url}/v1/completions", json=body, timeout=3)
        wait_for(
            "held and recorded as demand",
            lambda: any(
                lease["metadata"]["annotations"].get(PENDING_ANNOTATION) == "1"
                for lease in demand_leases(cluster, namespace, "crashy")
            ),
            10,
        )


def test_cors_lets_an_allowed_origin_call_and_stream(
    cluster: Cluster, crd: None, namespace: str, servers: ServerFactory, tmp_path: Path
) -> None:
    """Preflight, credentials and a streamed answer for an allowed origin; nothing for others."""
    app_origin = "http://app.example.test:5173"
    keys = tmp_path / "keys"
    keys.write_text("browser-key\n")
    proc = start_gateway(
        cluster.kubeconfig,
        namespaces=[namespace],
        log_dir=tmp_path,
        args=["--cors-origins", f"{app_origin},http://other.test", "--api-keys-file", str(keys)],
        name="gateway-cors",
    )
    try:
        cluster.apply(model_manifest("web", namespace))
        servers("web", 11)
        publish(cluster, namespace, "web", pod_address(NODE_INDEX, 11))
        wait_for(
            "endpoint seen",
            lambda: (
                httpx.get(
                    f"{proc.url}/v1/models/web", headers={"Authorization": "Bearer browser-key"}
                ).json()["siesta"]["readyEndpoints"]
                == 1
            ),
            10,
        )
        preflight = httpx.options(
            f"{proc.url}/v1/chat/completions",
            headers={
                "Origin": app_origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )  # no API key: browsers send none on a preflight
        assert preflight.status_code == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == app_origin
        assert preflight.headers["Access-Control-Allow-Credentials"] == "true"
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        assert preflight.headers["Access-Control-Allow-Headers"] == "authorization, content-type"

        body = {"model": "web", "messages": [{"role": "user", "content": "hi"}], "stream": True,
                "max_tokens": 4}  # fmt: skip
        headers = {"Origin": app_origin, "Authorization": "Bearer browser-key"}
        with httpx.stream(
            "POST", f"{proc.url}/v1/chat/completions", json=body, headers=headers, timeout=60
        ) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert stream.headers["Access-Control-Allow-Origin"] == app_origin
            assert stream.headers["Access-Control-Allow-Credentials"] == "true"
            assert "Origin" in stream.headers["Vary"]
            assert b"data: [DONE]" in b"".join(stream.iter_raw())

        # An error the browser must be able to read (Retry-After exposed), and other origins.
        missing = httpx.post(f"{proc.url}/v1/completions", json={"model": "nope"}, headers=headers)
        assert missing.status_code == 404
        assert "Retry-After" in missing.headers["Access-Control-Expose-Headers"]
        stranger = {"Origin": "http://evil.test", "Authorization": "Bearer browser-key"}
        listed = httpx.get(f"{proc.url}/v1/models", headers=stranger)
        assert listed.status_code == 200
        assert "Access-Control-Allow-Origin" not in listed.headers
        refused = httpx.options(
            f"{proc.url}/v1/models",
            headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "GET"},
        )
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "cors_origin_not_allowed"
    finally:
        proc.stop()


def test_scoped_keys_limit_namespaces_models_and_rate(
    cluster: Cluster, crd: None, tmp_path: Path
) -> None:
    """A key for one namespace and a rate: 403 elsewhere, 429 with Retry-After over the rate;
    the file is re-read when it changes (a Secret update), the flat keys keep working."""
    namespaces = [f"keys-a-{time.monotonic_ns() % 10**8}", f"keys-b-{time.monotonic_ns() % 10**8}"]
    for ns in namespaces:
        cluster.kubectl("create", "namespace", ns)
    team_a, team_b = namespaces
    keys = tmp_path / "keys"
    keys.write_text(f"flat-admin\nsk-team-a namespaces={team_a} rate=3/m name=team-a\n")
    proc = start_gateway(
        cluster.kubeconfig,
        namespaces=namespaces,
        log_dir=tmp_path,
        args=["--api-keys-file", str(keys)],
        name="gateway-scoped",
    )
    try:
        for ns in namespaces:
            cluster.apply(model_manifest("chat", ns, wake_timeout="1s"))
        admin = {"Authorization": "Bearer flat-admin"}
        team = {"Authorization": "Bearer sk-team-a"}

        def listed(headers: dict[str, str]) -> set[str]:
            return {
                m["id"] for m in httpx.get(f"{proc.url}/v1/models", headers=headers).json()["data"]
            }

        wait_for("both listed", lambda: {f"{team_a}/chat", f"{team_b}/chat"} <= listed(admin), 10)
        # team-a's model is older (or ties and sorts first): it holds the bare name too.
        assert listed(team) == {"chat", f"{team_a}/chat"}

        def ask(model: str, headers: dict[str, str]) -> httpx.Response:
            body = {"model": model, "prompt": "x"}
            return httpx.post(f"{proc.url}/v1/completions", json=body, headers=headers, timeout=10)

        forbidden = ask(f"{team_b}/chat", team)
        assert forbidden.status_code == 403
        assert forbidden.json()["error"]["code"] == "model_not_allowed"
        in_scope = ask(f"{team_a}/chat", team)  # held for 1 s: the model never wakes here
        assert in_scope.json()["error"]["code"] == "model_not_ready"
        ask(f"{team_a}/chat", team)
        over = ask(f"{team_a}/chat", team)  # the 3 of this minute are spent (the 403 too)
        assert over.status_code == 429
        assert over.json()["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(over.headers["Retry-After"]) <= 20
        assert ask(f"{team_b}/chat", admin).json()["error"]["code"] == "model_not_ready"

        # A Secret update: the team key now reaches team-b only, without a rate.
        keys.write_text(f"flat-admin\nsk-team-a namespaces={team_b}\n")
        os.utime(keys, (time.time() + 5, time.time() + 5))
        assert ask(f"{team_a}/chat", team).status_code == 403
        assert ask(f"{team_b}/chat", team).json()["error"]["code"] == "model_not_ready"
        assert ask(f"{team_b}/chat", {"Authorization": "Bearer nope"}).status_code == 401
    finally:
        proc.stop()
        for ns in namespaces:
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
