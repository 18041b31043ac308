"""Benchmark: what the gateway's limits and new steps cost a normal request.

Two gateways side by side on the local control plane, in front of one real siesta-server
(a tiny GGUF, so the gateway's own work is a large share): this working tree's (HTTP
limits, OpenAI-shaped errors, held-bytes budget, names per namespace, scoped keys with a
rate, CORS), and the gateway as it was before them (its sources extracted with `git
archive` from BASELINE_COMMIT into a scratch directory; nothing in the repository
changes). Rounds alternate; each sends warm completions (max_tokens 1) at concurrency 4
through one gateway and counts requests per second and per CPU-second of the gateway
process (less noisy on a busy machine).

    PYTHONPATH=kit:tests .venv/bin/python tests/benchmarks/bench_gateway_limits.py
    PYTHONPATH=kit:tests .venv/bin/python tests/benchmarks/bench_gateway_limits.py --quick
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from side_by_side import Round, closed_loop, print_ratios, sources_at

from localworld.cluster import Cluster, start_cluster, wait_for
from localworld.gateway_env import endpoint_slice, install_crd, model_manifest
from localworld.localnet import add_local_address, pod_address, remove_local_address
from localworld.procs import free_port, start_server
from localworld.tiny_gguf import write_tiny_llama

ROOT = Path(__file__).resolve().parents[2]
BASELINE_COMMIT = "f177fa2"  # the last commit before issues 21 and 24 reached the gateway
NAMESPACE = "bench-gateway-limits"
NODE_INDEX = 254
CONCURRENCY = 4
BODY = {"model": "tiny", "prompt": "once upon a time", "max_tokens": 1}


@dataclass
class Gateway:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    headers: dict[str, str]


@contextlib.contextmanager
def started(
    name: str, source: Path, cluster: Cluster, logs: Path, args: list[str], key: str
) -> Iterator[Gateway]:
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SIESTA_")}
    environment["PYTHONPATH"] = str(source)
    command = [sys.executable, "-c", "from siesta.cli import main; main()", "gateway"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--namespaces", NAMESPACE]
    command += ["--kubeconfig", str(cluster.kubeconfig), "--pod-name", f"bench-{name}", *args]
    with (logs / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
    gateway = Gateway(name, f"http://127.0.0.1:{port}", process, {"Authorization": f"Bearer {key}"})
    try:
        wait_for(
            f"{name} serves the model",
            lambda: _ready(gateway) or (process.poll() is not None and _exited(name, logs)),
            60,
        )
        yield gateway
    finally:
        process.terminate()
        process.wait(15)


def _ready(gateway: Gateway) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        response = httpx.get(f"{gateway.url}/v1/models/tiny", headers=gateway.headers)
        return response.status_code == 200 and response.json()["siesta"]["readyEndpoints"] == 1
    return False


def _exited(name: str, logs: Path) -> bool:
    raise SystemExit(f"{name} exited: {(logs / f'{name}.log').read_text()[-3000:]}")


def one_round(gateway: Gateway, seconds: float) -> Round:
    return closed_loop(
        gateway.url,
        gateway.process.pid,
        [("/v1/completions", BODY)],
        seconds,
        concurrency=CONCURRENCY,
        headers=gateway.headers,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 4 s")
    args = parser.parse_args()
    rounds, seconds = (3, 4.0) if args.quick else (5, 8.0)
    cluster = start_cluster()
    install_crd(cluster)
    cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    address = pod_address(NODE_INDEX, 1)
    add_local_address(address)
    with tempfile.TemporaryDirectory(prefix="bench-gateway-limits-") as scratch:
        work = Path(scratch)
        keys = work / "keys"
        # The new gateway checks a scoped key with a rate far above what is sent: the
        # whole path of a normal request, limits included.
        keys.write_text(f"bench-key namespaces={NAMESPACE} rate=100000/s\n")
        server = start_server(
            write_tiny_llama(work / "tiny.gguf"), alias="tiny", host=address, port=8080,
            log_dir=work, name="server", args=["--parallel", "4", "--threads", "1"],
        )  # fmt: skip
        try:
            cluster.apply(model_manifest("tiny", NAMESPACE))
            cluster.apply(endpoint_slice("tiny", NAMESPACE, address))
            old_args = ["--api-keys-file", str(work / "flat-keys")]
            (work / "flat-keys").write_text("bench-key\n")
            new_args = ["--api-keys-file", str(keys), "--cors-origins", "https://app.example"]
            with (
                started("before", sources_at(BASELINE_COMMIT, "operator/src", work / "base"),
                        cluster, work, old_args,
                        "bench-key") as before,
                started("limits", ROOT / "operator" / "src", cluster, work, new_args,
                        "bench-key") as now,
            ):  # fmt: skip
                for gateway in (before, now):
                    one_round(gateway, 1.0)  # warm-up: connections, first-use allocations
                results: dict[str, list[Round]] = {"before": [], "limits": []}
                for index in range(rounds):
                    order = (before, now) if index % 2 == 0 else (now, before)
                    for gateway in order:
                        results[gateway.name].append(one_round(gateway, seconds))
                    old, new = results["before"][-1], results["limits"][-1]
                    print(
                        f"round {index + 1}: before {old.per_second:.1f} req/s "
                        f"({old.per_cpu_second:.1f} per gateway CPU-s), limits "
                        f"{new.per_second:.1f} req/s ({new.per_cpu_second:.1f} per CPU-s)",
                        flush=True,
                    )
        finally:
            server.stop()
            remove_local_address(address)
            cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
    print()
    print_ratios(results, footer=f"concurrency {CONCURRENCY}, {rounds} rounds of {seconds:g} s")


if __name__ == "__main__":
    main()
