"""The TypeScript client in a real headless browser (Debian's chromium), from another origin.

A page served on one local origin loads the client's browser bundle (`deno task build`) and
calls the real gateway on another port with an API key: the browser sends the CORS
preflight itself, then lists models and streams a chat answer from a real siesta-server.
A page on an origin the gateway does not list is refused by the browser. The browser can
reach nothing but 127.0.0.1 (every host name resolves to nothing).
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from localworld.cluster import Cluster, wait_for
from localworld.gateway_env import endpoint_slice, install_crd, model_manifest
from localworld.localnet import add_local_address, pod_address, remove_local_address
from localworld.procs import Proc, free_port, start_gateway, start_server

pytestmark = [pytest.mark.cluster, pytest.mark.llama]

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "typescript"
DENO = ROOT / "scripts" / "deno.sh"
NODE_INDEX = 253  # pod-like addresses 10.244.253.N
KEY = "browser-key"
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-domain-reliability", "--no-pings",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # sealed: loopback only
]  # fmt: skip

PAGE = """<!doctype html>
<pre id="out">pending</pre>
<script type="module">
import { Client, text } from "./siesta.js";
const out = document.getElementById("out");
try {
  const siesta = new Client({ baseURL: "GATEWAY/v1", apiKey: "KEY" });
  const models = (await siesta.models()).map((m) => m.id);
  let served = null;
  const stream = await siesta.chat(
    { model: "MODEL", messages: [{ role: "user", content: "hi" }], max_tokens: 4 },
    { onServed: (by) => served = by },
  );
  const answer = await text(stream);
  out.textContent = "OK " + JSON.stringify({ models, answer, served });
} catch (error) {
  out.textContent = "ERROR " + error;
}
await fetch("/result", { method: "POST", body: out.textContent }); // same origin: the test
</script>
"""


class PageHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the page and its bundle; a POST to /result is what the page found."""

    results: list[str]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.results.append(self.rfile.read(length).decode())
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def bundle() -> Path:
    subprocess.run([str(DENO), "task", "build"], cwd=CLIENT, check=True, timeout=600)
    return CLIENT / "dist" / "siesta.js"


def serve_page(directory: Path, results: list[str]) -> tuple[http.server.ThreadingHTTPServer, str]:
    port = free_port()
    handler_class = type("Handler", (PageHandler,), {"results": results})
    handler = functools.partial(handler_class, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{port}"


def browse(url: str, profile: Path, results: list[str]) -> str:
    """Open `url` in headless chromium until the page posts what it found."""
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: scripts/setup.sh installs it"
    browser = subprocess.Popen(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"the page at {url} to report", lambda: results, 90)
    finally:
        browser.terminate()
        browser.wait(timeout=30)
    return results.pop()


@dataclass
class Browsing:
    gateway: Proc
    origin: str  # where the page is served: the one origin the gateway allows
    site: Path  # the page's folder
    results: list[str]  # what the page posted


@pytest.fixture
def gateway_and_model(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[Browsing]:
    """A gateway allowing one page origin, and a warm model behind it."""
    from localworld.tiny_gguf import write_tiny_llama

    install_crd(cluster)
    site = tmp_path / "site"
    site.mkdir()
    results: list[str] = []
    page_server, origin = serve_page(site, results)
    keys = tmp_path / "keys"
    keys.write_text(f"{KEY}\n")
    gateway = start_gateway(
        cluster.kubeconfig,
        namespaces=[namespace],
        log_dir=tmp_path,
        args=["--cors-origins", origin, "--api-keys-file", str(keys)],
        name="gateway-browser",
    )
    address = pod_address(NODE_INDEX, 1)
    add_local_address(address)
    server = start_server(
        write_tiny_llama(tmp_path / "tiny.gguf"), alias="web", host=address, port=8080,
        log_dir=tmp_path, name="server-web", args=["--ctx-size", "1024"],
    )  # fmt: skip
    try:
        cluster.apply(model_manifest("web", namespace))
        cluster.apply(endpoint_slice("web", namespace, address))
        wait_for("endpoint seen", lambda: ready_endpoints(f"{gateway.url}/v1/models/web") == 1, 30)
        yield Browsing(gateway, origin, site, results)
    finally:
        server.stop()
        remove_local_address(address)
        gateway.stop()
        page_server.shutdown()


def ready_endpoints(url: str) -> int:
    """The model's ready replicas as the gateway sees them; 0 while it does not list it yet."""
    try:
        return int(get_json_with_key(url)["siesta"]["readyEndpoints"])
    except urllib.error.HTTPError:  # 404 until the gateway's catalog has the model
        return 0


def get_json_with_key(url: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def test_the_client_calls_the_gateway_from_another_origin(
    gateway_and_model: Browsing, bundle: Path, tmp_path: Path, namespace: str
) -> None:
    setup = gateway_and_model
    shutil.copy(bundle, setup.site / "siesta.js")
    page = PAGE.replace("GATEWAY", setup.gateway.url).replace("KEY", KEY).replace("MODEL", "web")
    (setup.site / "page.html").write_text(page)
    out = browse(f"{setup.origin}/page.html", tmp_path / "profile", setup.results)
    assert out.startswith("OK "), out
    result = json.loads(out.removeprefix("OK "))
    assert f"{namespace}/web" in result["models"]  # /v1/models, read by the page
    # Streamed through the gateway to its end (a random-weight model may stop at once: no text).
    assert isinstance(result["answer"], str)
    # Who answered, read by the page from a header or a comment (the headers are exposed).
    assert result["served"]["by"] == "gpu", result

    # The same page from an origin the gateway does not list: the browser refuses it.
    refusals: list[str] = []
    other, other_origin = serve_page(setup.site, refusals)
    try:
        refused = browse(f"{other_origin}/page.html", tmp_path / "profile-2", refusals)
    finally:
        other.shutdown()
    assert refused.startswith("ERROR TypeError"), refused  # "Failed to fetch": CORS
