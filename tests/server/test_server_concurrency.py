"""Continuous batching, the bounded queue, and slots freed when a client goes away."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import openai
import pytest

from localworld.cluster import wait_for

if TYPE_CHECKING:
    from conftest import ServerProcess

pytestmark = pytest.mark.llama

Launcher = Callable[..., "ServerProcess"]


def test_parallel_requests_share_decode_batches_and_reuse_slots(
    launch_server: Launcher, tiny_model: Path
) -> None:
    server = launch_server(
        "--model", str(tiny_model), "--alias", "tiny", "--parallel", "4", "--ctx-size", "2048"
    )
    client = openai.OpenAI(base_url=server.api_url, api_key="unused", max_retries=0)

    def complete(index: int) -> tuple[str | None, int]:
        response = client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": f"count to {index}"}],
            max_tokens=48,
            extra_body={"ignore_eos": True},
        )
        assert response.usage is not None
        return response.choices[0].finish_reason, response.usage.completion_tokens

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(complete, range(12)))  # 12 requests, 4 slots: reuse

    assert results == [("length", 48)] * 12
    assert server.metric("llamacpp:tokens_predicted_total") == 12 * 48
    # More than one sequence per llama_decode() call on average: real batching.
    assert server.metric("llamacpp:n_busy_slots_per_decode") > 1.0
    assert server.metric("llamacpp:requests_processing") == 0
    assert server.metric("llamacpp:requests_deferred") == 0


@contextlib.contextmanager
def streaming(client: openai.OpenAI, max_tokens: int) -> Iterator[Iterator[object]]:
    stream = client.completions.create(
        model="slow",
        prompt="wake",
        max_tokens=max_tokens,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    try:
        yield iter(stream)
    finally:
        stream.close()  # closes the connection: the server sees the client go away


def test_queue_is_bounded_and_a_disconnect_frees_the_slot_at_once(
    launch_server: Launcher, slow_model: Path
) -> None:
    server = launch_server(
        "--model",
        str(slow_model),
        "--alias",
        "slow",
        "--parallel",
        "1",
        "--ctx-size",
        "8192",
        "--max-queue",
        "1",
    )
    client = openai.OpenAI(base_url=server.api_url, api_key="unused", max_retries=0)
    queued_started = threading.Event()
    queued_first_token = threading.Event()

    def queued_request() -> None:
        with streaming(client, 8000) as chunks:
            queued_started.set()
            next(chunks)
            queued_first_token.set()

    with streaming(client, 8000) as first:
        next(first)  # the only slot is busy
        waiter = threading.Thread(target=queued_request)
        waiter.start()
        wait_for(
            "one request deferred",
            lambda: server.metric("llamacpp:requests_deferred") == 1,
            30,
            interval=0.02,
        )
        assert server.metric("llamacpp:requests_processing") == 1
        with pytest.raises(openai.APIStatusError) as raised:
            client.completions.create(model="slow", prompt="third", max_tokens=1)
        assert raised.value.status_code == 503
        assert not queued_first_token.is_set()
    # The first client hung up mid-stream: its slot goes to the queued request.
    assert queued_first_token.wait(30)
    waiter.join(30)
    wait_for(
        "no request processing",
        lambda: server.metric("llamacpp:requests_processing") == 0,
        30,
        interval=0.02,
    )
    assert server.metric("llamacpp:requests_deferred") == 0
    # The slot is free again for new work.
    done = client.completions.create(model="slow", prompt="again", max_tokens=2)
    assert done.choices[0].finish_reason in {"stop", "length"}


def test_non_streaming_client_that_gives_up_frees_its_slot(
    launch_server: Launcher, slow_model: Path
) -> None:
    server = launch_server(
        "--model", str(slow_model), "--alias", "slow", "--parallel", "1", "--ctx-size", "8192"
    )
    body = {"prompt": "wake", "max_tokens": 8000, "ignore_eos": True}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/v1/completions", json=body, timeout=httpx.Timeout(5, read=0.5))
    wait_for(
        "no request processing",
        lambda: server.metric("llamacpp:requests_processing") == 0,
        10,
        interval=0.02,
    )
    assert 0 < server.metric("llamacpp:tokens_predicted_total") < 8000
    done = httpx.post(
        f"{server.url}/v1/completions", json={"prompt": "again", "max_tokens": 2}, timeout=30
    )
    assert done.status_code == 200
