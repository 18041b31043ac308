"""Start-up and shut-down: /health while downloading and loading, failures, SIGTERM drain."""

from __future__ import annotations

import hashlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest

if TYPE_CHECKING:
    from conftest import ServerProcess

pytestmark = pytest.mark.llama

LOADING = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}

Launcher = Callable[..., "ServerProcess"]


def test_health_is_503_while_downloading_then_ready(
    launch_server: Launcher, tiny_model: Path, file_server: Callable[..., Any]
) -> None:
    payload = tiny_model.read_bytes()
    source = file_server(payload, seconds_per_chunk=0.03)  # a slow network: ~1 s in all
    server = launch_server(
        "--model", source.url, "--sha256", hashlib.sha256(payload).hexdigest(), wait=False
    )
    health = server.wait_listening()
    assert (health.status_code, health.json()) == (503, LOADING)
    early = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}]},
    )
    assert early.status_code == 503
    assert early.json()["error"]["type"] == "unavailable_error"
    server.wait_ready()
    assert server.metric("siesta_server_download_bytes_total") == len(payload)
    assert server.metric("siesta_server_download_bytes_per_second") > 0
    assert server.metric("siesta_server_ready") == 1


def test_sigterm_while_downloading_exits_at_once(
    launch_server: Launcher, tiny_model: Path, file_server: Callable[..., Any]
) -> None:
    source = file_server(tiny_model.read_bytes(), seconds_per_chunk=0.5)  # ~16 s in all
    server = launch_server("--model", source.url, wait=False)
    assert server.wait_listening().status_code == 503
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(10) == 0


def test_sigterm_as_soon_as_it_listens_exits_at_once(
    launch_server: Launcher, tiny_model: Path, file_server: Callable[..., Any]
) -> None:
    """The signal before the download has reported anything: the drain must not depend on
    what loading sets up (it once failed on a metric created only after the fetch)."""
    source = file_server(tiny_model.read_bytes(), seconds_per_chunk=0.5)
    server = launch_server("--model", source.url, wait=False)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.002)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(10) == 0, server.log()


def test_bad_checksum_exits_non_zero_without_serving(
    launch_server: Launcher, tiny_model: Path, file_server: Callable[..., Any]
) -> None:
    source = file_server(tiny_model.read_bytes())
    server = launch_server("--model", source.url, "--sha256", "0" * 64, wait=False)
    assert server.process.wait(60) == 1
    assert "sha256 mismatch" in server.log()


def test_missing_model_file_exits_before_listening(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "siesta_server", "--model", str(tmp_path / "absent.gguf")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "model file not found" in result.stderr


def test_file_that_is_not_a_gguf_exits_non_zero(launch_server: Launcher, tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"definitely not a model" * 100)
    server = launch_server("--model", str(junk), wait=False)
    assert server.process.wait(60) == 1
    assert "is not a GGUF model" in server.log()


def test_usage_error_exits_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "siesta_server"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "SIESTA_MODEL" in result.stderr


def test_sigterm_drains_in_flight_requests_then_exits_0(
    launch_server: Launcher, slow_model: Path
) -> None:
    server = launch_server(
        "--model",
        str(slow_model),
        "--alias",
        "slow",
        "--parallel",
        "2",
        "--ctx-size",
        "8192",
        "--drain-timeout",
        "120",
    )
    client = openai.OpenAI(base_url=server.api_url, api_key="unused", max_retries=0)
    max_tokens = 300
    results: dict[int, tuple[str | None, int]] = {}
    first_chunk = [threading.Event(), threading.Event()]

    def stream(index: int) -> None:
        tokens, finish = 0, None
        for chunk in client.completions.create(
            model="slow",
            prompt="sleep",
            max_tokens=max_tokens,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        ):
            first_chunk[index].set()
            if chunk.choices and chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
        results[index] = (finish, tokens)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for event in first_chunk:
        assert event.wait(30)
    server.process.send_signal(signal.SIGTERM)

    health = server.health()
    assert health.status_code == 503
    assert health.json()["error"]["message"] == "Server is shutting down"
    refused = httpx.post(f"{server.url}/v1/completions", json={"prompt": "x"})
    assert refused.status_code == 503

    for thread in threads:
        thread.join(120)
    assert results == {0: ("length", max_tokens), 1: ("length", max_tokens)}
    assert server.process.wait(30) == 0
    assert "drained" in server.log()


def test_drain_timeout_cancels_what_is_left_and_exits_0(
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
        "--drain-timeout",
        "0.5",
    )
    client = openai.OpenAI(base_url=server.api_url, api_key="unused", max_retries=0)
    stream = client.completions.create(
        model="slow",
        prompt="sleep",
        max_tokens=8000,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    next(iter(stream))
    server.process.send_signal(signal.SIGTERM)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
    assert server.process.wait(30) == 0
    assert "drain timeout" in server.log()
