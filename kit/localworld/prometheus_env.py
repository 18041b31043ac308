"""The real Prometheus (Debian's /usr/bin/prometheus) scraping a small test exporter.

The exporter serves ``llamacpp:requests_processing`` and ``llamacpp:requests_deferred``
with static ``namespace``/``modeldeployment`` labels (what the scrape config adds in a real
cluster, docs/contracts.md), with values a test sets. Prometheus scrapes it every 0.5 s.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from localworld.procs import Proc, free_port, start

PROMETHEUS = Path("/usr/bin/prometheus")


@dataclass
class Exporter:
    """Load per (namespace, modeldeployment), served as llama.cpp metrics."""

    values: dict[tuple[str, str], float] = field(default_factory=dict)
    port: int = 0
    server: ThreadingHTTPServer | None = None

    def set(self, namespace: str, name: str, processing: float) -> None:
        self.values[(namespace, name)] = processing

    def render(self) -> str:
        lines = [
            "# TYPE llamacpp:requests_processing gauge",
            "# TYPE llamacpp:requests_deferred gauge",
        ]
        for (namespace, name), value in sorted(self.values.items()):
            labels = f'namespace="{namespace}",modeldeployment="{name}"'
            lines.append(f"llamacpp:requests_processing{{{labels}}} {value}")
            lines.append(f"llamacpp:requests_deferred{{{labels}}} 0")
        return "\n".join(lines) + "\n"

    def serve(self) -> None:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@dataclass
class Prometheus:
    directory: Path
    exporter: Exporter
    port: int = 0
    proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start (or restart on the same port and data) and wait until it has scraped once."""
        config = {
            "global": {"scrape_interval": "500ms", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "siesta-test-exporter",
                    "scrape_interval": "500ms",
                    "scrape_timeout": "400ms",
                    "static_configs": [{"targets": [f"127.0.0.1:{self.exporter.port}"]}],
                }
            ],
        }
        config_path = self.directory / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        self.port = self.port or free_port()
        argv = [
            str(PROMETHEUS), f"--config.file={config_path}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
        ]  # fmt: skip
        self.proc = start("prometheus", argv, log_dir=self.directory, url=self.url)
        self.proc.wait_http("/-/ready", timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            query = f"{self.url}/api/v1/query?query=up"
            with urllib.request.urlopen(query, timeout=5) as response:
                if b'"value"' in response.read():
                    return
            time.sleep(0.2)
        raise TimeoutError("Prometheus never scraped the exporter")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(grace=10)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    if not PROMETHEUS.exists():
        pytest.fail(f"{PROMETHEUS} missing: run `make setup` (it installs Debian's prometheus)")
    exporter = Exporter()
    exporter.serve()
    server = Prometheus(tmp_path / "prometheus", exporter)
    server.directory.mkdir()
    server.start()
    yield server
    server.stop()
    exporter.close()
