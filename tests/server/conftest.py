"""Fixtures for siesta-server tests: a tiny GGUF and real server processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from localworld.file_servers import ModelFileServer
from localworld.tiny_gguf import write_tiny_llama

if TYPE_CHECKING:
    from siesta_server.native import Model

STARTUP_TIMEOUT_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def health(self) -> httpx.Response:
        return httpx.get(f"{self.url}/health", timeout=5)

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if self.health().status_code == 200:
                    return
            time.sleep(0.05)
        raise AssertionError(f"server not ready after {timeout}s:\n{self.log()}")

    def wait_listening(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> httpx.Response:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                return self.health()
            time.sleep(0.02)
        raise AssertionError(f"server not listening after {timeout}s:\n{self.log()}")

    def metric(self, name: str) -> float:
        """The value of an unlabelled metric from /metrics."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"metric {name} not found in:\n{text}")

    def stop(self, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


Launcher = Callable[..., ServerProcess]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("models") / "tiny.gguf")


@pytest.fixture(scope="session")
def model(tiny_model: Path) -> Iterator[Model]:
    """The tiny model loaded in this process by llama-cpp-python (the server's own loader),
    for tests of the modules that tokenize and check grammars against it."""
    from siesta_server.native import init_backend, load_model

    init_backend(verbose=False)
    loaded = load_model(tiny_model, gpu_layers=0)
    yield loaded
    loaded.close()


@pytest.fixture(scope="session")
def slow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bigger than tiny, so a few hundred tokens take long enough to act mid-stream."""
    return write_tiny_llama(
        tmp_path_factory.mktemp("models") / "slow.gguf", n_layer=4, n_embd=256, n_ctx=8192
    )


@pytest.fixture(scope="session")
def launch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    """Start `siesta-server` processes; all are stopped at the end of the session."""
    started: list[ServerProcess] = []
    logs = tmp_path_factory.mktemp("server-logs")

    def launch(*args: str, env: dict[str, str] | None = None, wait: bool = True) -> ServerProcess:
        port = free_port()
        log_path = logs / f"server-{port}.log"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("SIESTA_")}
        environment.update(env or {})
        environment.setdefault("SIESTA_CACHE_DIR", str(logs / "cache"))
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "siesta_server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--threads",
                    "1",
                    *args,
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=environment,
            )
        server = ServerProcess(process, port, log_path)
        started.append(server)
        if wait:
            server.wait_ready()
        return server

    yield launch
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def shared_server(launch_server: Launcher, tiny_model: Path) -> ServerProcess:
    """One server for the tests that do not care about its configuration."""
    return launch_server(
        "--model", str(tiny_model), "--alias", "tiny", "--parallel", "4", "--ctx-size", "2048"
    )


@pytest.fixture
def file_server() -> Iterator[Callable[..., ModelFileServer]]:
    servers: list[ModelFileServer] = []

    def start(payload: bytes, **faults: object) -> ModelFileServer:
        server = ModelFileServer(payload, **faults)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
