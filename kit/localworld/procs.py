"""Real Siesta processes for tests, the demo and benchmarks: gateway, model server, operator.

Each runs as a subprocess of the current Python environment (the `siesta` and
`siesta-server` entry points next to ``sys.executable``), logs to a file, and is stopped
with SIGTERM (then SIGKILL) by :meth:`Proc.stop`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from localworld.localnet import POD_NETWORK_PREFIX, in_pod_network

BIN = Path(sys.executable).parent


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """Status of GET url, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (OSError, ValueError):
        return None


@dataclass
class Proc:
    """A started subprocess with its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_http(self, path: str, timeout: float = 60.0, status: int = 200) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(
                    f"{self.name} exited {self.process.returncode}:\n{self.log_tail()}"
                )
            if http_status(self.url + path, timeout=1.0) == status:
                return
            time.sleep(0.05)
        raise TimeoutError(
            f"{self.name}: {self.url}{path} not {status} in {timeout}s:\n{self.log_tail()}"
        )

    def signal(self, sig: int) -> None:
        if self.alive():
            self.process.send_signal(sig)

    def stop(self, grace: float = 10.0) -> int | None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


def start(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
    url: str = "",
) -> Proc:
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="siesta-procs-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            list(argv),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    return Proc(name, process, log_path, url)


def start_gateway(
    kubeconfig: str | os.PathLike[str],
    *,
    port: int | None = None,
    namespaces: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    log_dir: Path | None = None,
    name: str = "gateway",
    wait: bool = True,
) -> Proc:
    """`siesta gateway` on 127.0.0.1; waits for /readyz (informers synced)."""
    port = port or free_port()
    argv = [
        str(BIN / "siesta"), "gateway", "--host", "127.0.0.1", "--port", str(port),
        "--kubeconfig", os.fspath(kubeconfig), "--pod-name", f"{name}-{port}", *args,
    ]  # fmt: skip
    if namespaces:
        argv += ["--namespaces", ",".join(namespaces)]
    proc = start(name, argv, env=env, log_dir=log_dir, url=f"http://127.0.0.1:{port}")
    if wait:
        _wait_or_stop(proc, "/readyz", 60)
    return proc


def start_server(
    model: str | os.PathLike[str],
    *,
    alias: str,
    host: str = "127.0.0.1",
    port: int | None = None,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
    name: str | None = None,
    wait: bool = True,
) -> Proc:
    """The real `siesta-server` on host:port; waits for /health 200."""
    port = port or free_port(host)
    argv = [
        str(BIN / "siesta-server"), "--model", os.fspath(model), "--alias", alias,
        "--host", host, "--port", str(port), *args,
    ]  # fmt: skip
    if host.startswith(POD_NETWORK_PREFIX + "."):
        argv = in_pod_network(argv)  # a pod address lives in the test pod network
    proc = start(
        name or f"server-{port}", argv, env=env, log_dir=log_dir, url=f"http://{host}:{port}"
    )
    proc.extra["port"] = str(port)
    if wait:
        _wait_or_stop(proc, "/health", 120)
    return proc


def _wait_or_stop(proc: Proc, path: str, timeout: float) -> None:
    """Wait for `path` to answer 200; a process that never gets there is not left behind."""
    try:
        proc.wait_http(path, timeout=timeout)
    except BaseException:
        proc.stop(grace=5)
        raise
