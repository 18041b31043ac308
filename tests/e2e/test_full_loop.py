"""A request wakes a model from zero, nothing is dropped, the model goes back to sleep.

Real control plane, real operator and gateway (as their ServiceAccounts), real
siesta-server processes as pods (process kubelet), the `openai` client.
"""

from __future__ import annotations

import signal
import threading
import time

import httpx
import openai
import pytest

from localworld.cluster import wait_for
from localworld.full_loop import NOWHERE, Loop, run_concurrently
from localworld.gateway_env import demand_leases, metric

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.llama]

SLEEPY = {"idle_timeout": "8s", "scale_down_delay": "1s"}


def test_a_request_wakes_the_model_and_it_sleeps_again(loop: Loop) -> None:
    loop.start_operator()
    loop.start_gateway()
    alias = loop.add_model("chat", alias="chat-tiny", **SLEEPY)
    assert loop.pods("chat") == []

    text = loop.chat(alias)

    assert text
    assert loop.replicas("chat") == 1
    assert metric(loop.gateway.url, "siesta_gateway_hold_seconds_count", {"model": alias}) == 1
    # Idle for idleTimeout: back to zero, and the pod is gone.
    wait_for("scaled back to zero", lambda: loop.replicas("chat") == 0, 90)
    wait_for("pod gone", lambda: loop.pods("chat") == [], 60)


def test_fifty_concurrent_requests_during_a_cold_start_are_all_served(loop: Loop) -> None:
    loop.start_operator()
    loop.start_gateway()
    alias = loop.add_model("burst")

    results = run_concurrently(50, loop.chat, alias)

    failures = [r for r in results if isinstance(r, Exception)]
    assert failures == [], f"{len(failures)} failed, first: {failures[:1]}\n{loop.logs()}"
    assert len(results) == 50
    wait_for(
        "50 answers counted by the gateway",
        lambda: (
            metric(
                loop.gateway.url, "siesta_gateway_requests_total", {"model": alias, "code": "200"}
            )
            == 50
        ),
        5,
    )


def test_a_request_during_scale_down_is_not_lost(loop: Loop) -> None:
    loop.start_operator()
    loop.start_gateway()
    alias = loop.add_model("fading", **SLEEPY)
    assert loop.chat(alias)
    # Wait for the scale-down to start: replicas 0, pod terminating (draining).
    wait_for("scale-down started", lambda: loop.replicas("fading") == 0, 90)

    assert loop.chat(alias)  # held, the model woken again, then served

    assert loop.replicas("fading") == 1


def test_wake_timeout_answers_503_with_retry_after(loop: Loop) -> None:
    loop.start_operator()
    loop.start_gateway("--retry-after", "11")
    alias = loop.add_model("stuck", wake_timeout="3s", node_selector=NOWHERE)

    response = httpx.post(
        f"{loop.gateway.url}/v1/chat/completions",
        json={"model": alias, "messages": [{"role": "user", "content": "hi"}]},
        timeout=60,
    )

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "11"
    assert response.json()["error"]["code"] == "model_not_ready"
    assert loop.replicas("stuck") == 1  # the operator did try: the GPU never came


def test_gateway_restart_while_requests_are_held(loop: Loop) -> None:
    loop.start_operator()
    first = loop.start_gateway()
    alias = loop.add_model("waiting", node_selector=NOWHERE)
    outcomes: dict[str, object] = {}

    def plain() -> None:
        try:
            loop.chat(alias)
        except openai.APIStatusError as error:
            outcomes["plain"] = error

    def streaming() -> None:
        try:
            stream = loop.client().chat.completions.create(
                model=alias, messages=[{"role": "user", "content": "hi"}], stream=True
            )
            list(stream)
        except openai.APIError as error:
            outcomes["stream"] = error

    threads = [threading.Thread(target=plain), threading.Thread(target=streaming)]
    for thread in threads:
        thread.start()
    wait_for("both requests held", lambda: metric(first.url, "siesta_gateway_queued_requests", {"model": alias}) == 2, 10)  # fmt: skip
    time.sleep(1.5)  # the streaming client has had a keep-alive: its response has started
    started = time.monotonic()
    first.signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=20)
    assert not any(t.is_alive() for t in threads), "a client hung after the gateway stopped"
    assert time.monotonic() - started < 10
    plain_error = outcomes["plain"]
    assert isinstance(plain_error, openai.APIStatusError)
    assert plain_error.status_code == 503
    assert plain_error.response.headers["Retry-After"]
    assert "stream" in outcomes  # an SSE error event: the openai client raises it
    assert first.process.wait(timeout=30) == 0

    # A new gateway replica takes over; the model is still waiting for its GPU.
    second = loop.start_gateway()
    assert second.url != first.url


def test_operator_restart_during_a_cold_start(loop: Loop) -> None:
    operator = loop.start_operator()
    loop.start_gateway()
    alias = loop.add_model("restarted", **SLEEPY)
    operator.kill()  # the operator is down when the request arrives

    results: list[object] = []
    thread = threading.Thread(target=lambda: results.append(loop.chat(alias)))
    thread.start()
    wait_for("demand Lease", lambda: demand_leases(loop.cluster, loop.namespace, "restarted"), 10)
    assert loop.replicas("restarted") == 0
    loop.start_operator()  # a new operator finds the demand and wakes the model
    thread.join(timeout=120)

    assert results
    assert isinstance(results[0], str)
    wait_for("back to zero after the restart", lambda: loop.replicas("restarted") == 0, 90)
