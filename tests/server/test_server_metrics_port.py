"""`--metrics-port`: /metrics alone on a second port, so a NetworkPolicy can open it to the
scraper without opening the API; the main port keeps /metrics, and SIGTERM still drains."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from conftest import free_port
from siesta_server.config import ConfigError, parse_config

if TYPE_CHECKING:
    from conftest import ServerProcess

pytestmark = pytest.mark.llama

Launcher = Callable[..., "ServerProcess"]


def test_metrics_alone_on_the_metrics_port(launch_server: Launcher, tiny_model: Path) -> None:
    metrics_port = free_port()
    server = launch_server("--model", str(tiny_model), "--metrics-port", str(metrics_port))
    scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
    assert scraped.status_code == 200
    assert "llamacpp:requests_processing" in scraped.text
    # Nothing of the API is served there.
    for path in ("/health", "/v1/models"):
        assert httpx.get(f"http://127.0.0.1:{metrics_port}{path}", timeout=5).status_code == 404
    refused = httpx.post(
        f"http://127.0.0.1:{metrics_port}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}]},
        timeout=5,
    )
    assert refused.status_code == 404
    # The main port still has it (the operator reads the servers' own load there).
    assert httpx.get(f"{server.url}/metrics", timeout=5).status_code == 200
    # SIGTERM goes to the main server's drain: the process ends, both ports close.
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(30) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2)


def test_the_metrics_port_must_differ_from_the_api_port() -> None:
    with pytest.raises(ConfigError, match="--metrics-port 8080"):
        parse_config(["--model", "m.gguf", "--port", "8080", "--metrics-port", "8080"], {})
    assert parse_config(["--model", "m.gguf"], {"SIESTA_METRICS_PORT": "9090"}).metrics_port == 9090
    assert parse_config(["--model", "m.gguf"], {}).metrics_port == 0
