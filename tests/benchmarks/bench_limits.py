"""Benchmark: what issue 21's request limits cost a normal request (nothing measurable, we hope).

Two siesta-servers on the same tiny GGUF, side by side: this working tree's, and the server
as it was before the limits (its sources extracted with `git archive` from BASELINE_COMMIT
into a scratch directory; nothing in the repository changes). The tiny model makes a
request's HTTP, validation and tokenizing work a large share of its time, which is where
the limits live. Rounds alternate between the two servers; each round sends the same mix
of normal requests at concurrency 4 (chat, chat with `response_format: json_object`, text
completion with `logit_bias`, embeddings of 4 inputs) and counts requests per second.

    .venv/bin/python tests/benchmarks/bench_limits.py             # 5 rounds of 8 s each
    .venv/bin/python tests/benchmarks/bench_limits.py --quick     # 3 rounds of 4 s
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "kit"))
from side_by_side import Round, closed_loop, print_ratios, sources_at

from localworld.procs import free_port
from localworld.tiny_gguf import write_tiny_llama

ROOT = Path(__file__).resolve().parents[2]
# The last commit before the request limits (issue 21).
BASELINE_COMMIT = "f177fa2"
CONCURRENCY = 4
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name three colours, one word each."},
]
REQUESTS: list[tuple[str, dict[str, object]]] = [
    ("/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 8, "seed": 1}),
    (
        "/v1/chat/completions",
        {
            "messages": MESSAGES,
            "max_tokens": 8,
            "seed": 1,
            "response_format": {"type": "json_object"},
        },
    ),
    (
        "/v1/completions",
        {"prompt": "once upon a time", "max_tokens": 8, "logit_bias": {"2": -100}, "seed": 1},
    ),
    ("/v1/embeddings", {"input": ["a b c", "d e f", "g h i", "j k l"]}),
]


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def started(name: str, source: Path, model: Path, logs: Path) -> Iterator[Server]:
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SIESTA_")}
    environment["PYTHONPATH"] = str(source)
    command = [sys.executable, "-m", "siesta_server", "--model", str(model), "--alias", "tiny"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--threads", "1", "--parallel", "4"]
    with (logs / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=logs
        )
    server = Server(name, f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.url}/health").status_code == 200:
                    break
            if process.poll() is not None:
                raise SystemExit(f"{name} exited: {(logs / f'{name}.log').read_text()}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        process.wait(15)


def one_round(server: Server, seconds: float) -> Round:
    """CONCURRENCY clients cycling through REQUESTS for `seconds`."""
    return closed_loop(server.url, server.process.pid, REQUESTS, seconds, concurrency=CONCURRENCY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 4 s")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 5)
    seconds = args.seconds or (4.0 if args.quick else 8.0)
    with tempfile.TemporaryDirectory(prefix="bench-limits-") as scratch:
        work = Path(scratch)
        model = write_tiny_llama(work / "tiny.gguf")
        old = sources_at(BASELINE_COMMIT, "server/src", work / "baseline")
        new = ROOT / "server" / "src"
        with (
            started("before", old, model, work) as before,
            started("limits", new, model, work) as now,
        ):
            # The baseline really is the old code: it still accepted `dimensions: 0`.
            probe = {"input": "a", "dimensions": 0}
            assert httpx.post(f"{before.url}/v1/embeddings", json=probe).status_code == 200
            assert httpx.post(f"{now.url}/v1/embeddings", json=probe).status_code == 400
            for server in (before, now):  # warm-up: first-use allocations, template cache
                one_round(server, 1.0)
            results: dict[str, list[Round]] = {"before": [], "limits": []}
            for round_index in range(rounds):
                order = (before, now) if round_index % 2 == 0 else (now, before)
                for server in order:
                    results[server.name].append(one_round(server, seconds))
                old_round, new_round = results["before"][-1], results["limits"][-1]
                print(
                    f"round {round_index + 1}: before {old_round.per_second:.1f} req/s "
                    f"({old_round.per_cpu_second:.1f} per CPU-s), limits "
                    f"{new_round.per_second:.1f} req/s ({new_round.per_cpu_second:.1f} per CPU-s)",
                    flush=True,
                )
    print()
    print("| server | requests/s, median | requests per CPU-second, median (each round) |")
    print("|---|---|---|")
    for name, values in results.items():
        each = ", ".join(f"{v.per_cpu_second:.1f}" for v in values)
        wall = statistics.median(v.per_second for v in values)
        cpu = statistics.median(v.per_cpu_second for v in values)
        print(f"| {name} | {wall:.1f} | {cpu:.1f} ({each}) |")
    print()
    print_ratios(results, footer=f"concurrency {CONCURRENCY}, {rounds} rounds of {seconds:g} s")


if __name__ == "__main__":
    main()
