"""The TypeScript client and Discovery Island, run by Deno and Node against real servers.

`deno test` (clients/typescript/tests, examples/discovery-island) and `node --test`
(clients/typescript/node) get the URLs of a real siesta-server or of the real gateway of
the full loop (operator, process kubelet, models asleep at zero) in their environment.
Deno comes from the npm registry through scripts/deno.sh (pinned, cached).
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localworld.cluster import wait_for
from localworld.full_loop import NOWHERE, Loop
from localworld.gateway_env import model_manifest
from localworld.procs import Proc, start_server
from localworld.tiny_gguf import write_tiny_llama

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "typescript"
ISLAND = ROOT / "examples" / "discovery-island"
DENO = ROOT / "scripts" / "deno.sh"
API_KEY = "island-key"


def run(argv: list[str], cwd: Path, env: dict[str, str], logs: list[Proc]) -> None:
    """Run a TypeScript test command; on failure show its output and the servers' logs."""
    result = subprocess.run(
        argv,
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1", **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    print(result.stdout, result.stderr)  # pytest shows it on failure, or with -rP
    if result.returncode != 0:
        tails = "\n".join(f"--- {proc.name}\n{proc.log_tail(40)}" for proc in logs)
        pytest.fail(
            f"{' '.join(argv)} exited {result.returncode}\n{result.stdout}\n{result.stderr}\n{tails}"
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """One real siesta-server; the model is big enough that a long answer takes seconds."""
    model = write_tiny_llama(
        tmp_path_factory.mktemp("models") / "slow.gguf", n_layer=4, n_embd=256, n_ctx=8192
    )
    proc = start_server(
        model,
        alias="tiny-chat",
        args=["--parallel", "2", "--ctx-size", "16384", "--threads", "1"],
        log_dir=tmp_path_factory.mktemp("server-logs"),
    )
    yield proc
    proc.stop()


def server_env(server: Proc) -> dict[str, str]:
    return {"SIESTA_SERVER_URL": f"{server.url}/v1", "SIESTA_SERVER_MODEL": "tiny-chat"}


@pytest.mark.llama
def test_client_against_a_real_server(server: Proc) -> None:
    deno_test = [str(DENO), "test", "--allow-net", "--allow-env"]
    run(
        [*deno_test, "tests/sse_test.ts", "tests/served_test.ts", "tests/server_test.ts"],
        CLIENT,
        server_env(server),
        [server],
    )


@pytest.mark.llama
def test_client_on_node(server: Proc) -> None:
    run([str(DENO), "task", "build"], CLIENT, {}, [server])
    run(["node", "--test", "node/client.test.mjs"], CLIENT, server_env(server), [server])


@pytest.mark.llama
def test_discovery_island(server: Proc) -> None:
    permissions = ["--allow-net", "--allow-env", "--allow-read", "--allow-write", "--allow-run"]
    run([str(DENO), "test", *permissions, "island_test.ts"], ISLAND, server_env(server), [server])


def gateway_models(url: str) -> list[dict[str, Any]]:
    request = urllib.request.Request(
        f"{url}/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return list(json.loads(response.read())["data"])


@pytest.mark.e2e
@pytest.mark.cluster
@pytest.mark.llama
def test_client_through_the_gateway_wakes_models_from_zero(
    loop: Loop, node_label: dict[str, str], tmp_path: Path
) -> None:
    keys = tmp_path / "api-keys"
    keys.write_text(f"# the tests' key\n{API_KEY}\n")
    loop.start_operator()
    gateway = loop.start_gateway(
        "--keepalive", "0.2", "--queue-size", "1", "--retry-after", "1", "--api-keys-file", str(keys)
    )  # fmt: skip
    models = {
        "wake": model_manifest("wake", loop.namespace, node_selector=node_label),
        "burst": model_manifest("burst", loop.namespace, node_selector=node_label),
        "stuck": model_manifest("stuck", loop.namespace, wake_timeout="6s", node_selector=NOWHERE),
    }
    for manifest in models.values():
        loop.cluster.apply(manifest)
    for name in models:
        wait_for(f"StatefulSet {name} at 0 replicas", lambda n=name: loop.replicas(n) == 0, 30)
    wait_for(
        "the gateway lists all models",
        lambda: {m["id"] for m in gateway_models(gateway.url)} >= set(models),
        10,
    )

    env = {
        "SIESTA_GATEWAY_URL": f"{gateway.url}/v1",
        "SIESTA_API_KEY": API_KEY,
        "SIESTA_SLEEPING_MODEL": "wake",
        "SIESTA_BURST_MODEL": "burst",
        "SIESTA_STUCK_MODEL": "stuck",
    }
    run(
        [str(DENO), "test", "--allow-net", "--allow-env", "tests/gateway_test.ts"],
        CLIENT,
        env,
        loop.gateways,
    )
