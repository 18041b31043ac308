"""Benchmark: siesta-server vs llama-cpp-python's bundled server vs llama.cpp's llama-server.

Aggregate generated tokens/s and time to first token at concurrency 1, 4 and 8, all three
servers on the same synthetic GGUF (written here, big enough that compute dominates), with
the same thread count, one after the other in one run. A script, not a test:

    .venv/bin/python tests/benchmarks/bench_server.py            # about 5-10 minutes
    .venv/bin/python tests/benchmarks/bench_server.py --quick    # smaller model, fewer requests

Setup it does itself (cached under ${SIESTA_CACHE:-~/.cache/siesta}):
- a venv with `llama-cpp-python[server]==0.3.36` for the bundled server (pip reuses the
  wheel compiled for the main venv; its FastAPI pins stay out of our dependencies);
- `llama-server` built from the llama.cpp sources vendored in the same sdist
  (see server_native.py; about 10 minutes on 2 cores the first time).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from server_native import LLAMA_CPP_PYTHON_VERSION, cache_root, native_server

from localworld.tiny_gguf import WORDS, write_tiny_llama

EOS_TOKEN = 2  # tiny_gguf's </s>; banned so every request generates exactly max_tokens


@dataclass(frozen=True)
class ModelSpec:
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int

    @property
    def file_name(self) -> str:
        return f"bench-l{self.n_layer}-e{self.n_embd}-f{self.n_ff}-h{self.n_head}-f32.gguf"


# f32 weights: one token's forward pass reads every weight once, so a single sequence is
# memory-bound and batching pays off, as on a GPU (with f16, 2 CPU cores are compute-bound
# already at one sequence and no server can gain from batching).
FULL_MODEL = ModelSpec(n_layer=12, n_embd=1024, n_ff=2816, n_head=16)  # ~150M params
QUICK_MODEL = ModelSpec(n_layer=4, n_embd=512, n_ff=1408, n_head=8)


@dataclass
class RequestResult:
    ttft: float
    tokens: int
    finish: str | None


@dataclass
class LevelResult:
    concurrency: int
    wall_seconds: float
    cpu_seconds: float  # used by the server process (all threads) during the level
    requests: list[RequestResult] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return sum(r.tokens for r in self.requests) / self.wall_seconds

    @property
    def tokens_per_cpu_second(self) -> float:
        """Less sensitive to other work on the machine than wall-clock throughput."""
        return sum(r.tokens for r in self.requests) / max(self.cpu_seconds, 1e-9)

    @property
    def ttft_median(self) -> float:
        return statistics.median(r.ttft for r in self.requests)

    @property
    def ttft_mean(self) -> float:
        return statistics.fmean(r.ttft for r in self.requests)


@dataclass
class Server:
    key: str  # for --skip
    name: str
    command: list[str]
    ready_path: str
    port: int
    env: dict[str, str] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bundled_server_python() -> Path:
    """A venv with llama-cpp-python's own server extras, outside the project's venv."""
    venv = cache_root() / "bench" / f"llama-cpp-python-server-{LLAMA_CPP_PYTHON_VERSION}"
    python = venv / "bin" / "python"
    if not (venv / ".ready").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                f"llama-cpp-python[server]=={LLAMA_CPP_PYTHON_VERSION}",
            ],
            check=True,
        )
        (venv / ".ready").touch()
    return python


def prompt_text(index: int, words: int) -> str:
    # Distinct first words, so no server can reuse another request's cached prompt.
    body = " ".join(WORDS[(index + i) % len(WORDS)] for i in range(words))
    return f"{index} {body}"


def one_request(url: str, index: int, max_tokens: int, prompt_words: int) -> RequestResult:
    body = {
        "prompt": prompt_text(index, prompt_words),
        "max_tokens": max_tokens,
        "stream": True,
        "temperature": 0.8,
        "seed": index,
        "logit_bias": {str(EOS_TOKEN): -100.0},
    }
    started = time.perf_counter()
    ttft: float | None = None
    events = 0
    finish: str | None = None
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices", []):
                if choice.get("text") and ttft is None:
                    ttft = time.perf_counter() - started
                if choice.get("text"):
                    events += 1
                finish = choice.get("finish_reason") or finish
    tokens = max_tokens if finish == "length" else events
    return RequestResult(
        ttft if ttft is not None else time.perf_counter() - started, tokens, finish
    )


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def run_level(
    url: str,
    pid: int,
    concurrency: int,
    requests: int,
    max_tokens: int,
    prompt_words: int,
    offset: int,
) -> LevelResult:
    results: list[RequestResult] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker() -> None:
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            result = one_request(url, offset + index, max_tokens, prompt_words)
            with lock:
                results.append(result)

    cpu_before = process_cpu_seconds(pid)
    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return LevelResult(concurrency, wall, process_cpu_seconds(pid) - cpu_before, results)


def wait_ready(server: Server, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{server.name} exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{server.port}{server.ready_path}").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{server.name} not ready")


@contextlib.contextmanager
def running(server: Server, logs: Path, prompt_words: int) -> Iterator[tuple[str, int]]:
    log = logs / f"{server.name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            server.command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **server.env}
        )
    try:
        wait_ready(server, process, log)
        url = f"http://127.0.0.1:{server.port}"
        one_request(url, 10_000, 8, prompt_words)  # warm-up: first-call allocations
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller model, fewer requests")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--prompt-words", type=int, default=48)
    parser.add_argument(
        "--requests-per-client", type=int, default=2, help="requests per concurrent client"
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions")
    parser.add_argument(
        "--skip", action="append", default=[], choices=["siesta", "bundled", "native"]
    )
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the servers started below are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    spec = QUICK_MODEL if args.quick else FULL_MODEL
    levels = [1, 4, 8]
    model = cache_root() / "bench" / spec.file_name
    if not model.exists():
        write_tiny_llama(
            model,
            n_layer=spec.n_layer,
            n_embd=spec.n_embd,
            n_ff=spec.n_ff,
            n_head=spec.n_head,
            n_ctx=4096,
            dtype="f32",
            name="bench",
        )
    logs = cache_root() / "bench" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    print(
        f"model {model.name} ({model.stat().st_size / 2**20:.0f} MiB), threads {args.threads}, "
        f"{args.max_tokens} tokens per request, {args.rounds} rounds, "
        f"load before: {os.getloadavg()}",
        flush=True,
    )
    servers = [s for s in make_servers(model, max(levels), args) if s.key not in args.skip]

    # All servers stay up (idle ones use no CPU) and take turns level by level, round after
    # round, so changes in background load hit every server alike. Per server and level the
    # report keeps the best round (the least disturbed) and the median of the rounds.
    runs: dict[tuple[str, int], list[LevelResult]] = {}
    with contextlib.ExitStack() as stack:
        endpoints = {
            s.name: stack.enter_context(running(s, logs, args.prompt_words)) for s in servers
        }
        for round_number in range(args.rounds):
            for level in levels:
                for name, (url, pid) in endpoints.items():
                    result = run_level(
                        url,
                        pid,
                        level,
                        level * args.requests_per_client,
                        args.max_tokens,
                        args.prompt_words,
                        offset=round_number * 100_000 + level * 1000,
                    )
                    print(
                        f"  round {round_number + 1} {name:<16} c={level}: "
                        f"{result.tokens_per_second:7.1f} tok/s, "
                        f"{result.tokens_per_cpu_second:6.1f} tok/CPU-s, "
                        f"TTFT median {result.ttft_median * 1000:7.0f} ms "
                        f"(finish {sorted({str(r.finish) for r in result.requests})}, "
                        f"load {os.getloadavg()[0]:.1f})",
                        flush=True,
                    )
                    runs.setdefault((name, level), []).append(result)
    report(runs, [s.name for s in servers], levels, args.rounds)
    print(f"load after: {os.getloadavg()}")


def make_servers(model: Path, parallel: int, args: argparse.Namespace) -> list[Server]:
    slot_ctx = 512
    threads = str(args.threads)
    servers = []
    port = free_port()
    servers.append(
        Server(
            "siesta",
            "siesta-server",
            [
                sys.executable,
                "-m",
                "siesta_server",
                "--model",
                str(model),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--parallel",
                str(parallel),
                "--ctx-size",
                str(parallel * slot_ctx),
                "--threads",
                threads,
                "--log-level",
                "warning",
            ],
            "/health",
            port,
        )
    )
    if "bundled" not in args.skip:
        port = free_port()
        servers.append(
            Server(
                "bundled",
                "llama_cpp.server",
                [
                    str(bundled_server_python()),
                    "-m",
                    "llama_cpp.server",
                    "--model",
                    str(model),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--n_ctx",
                    str(slot_ctx),
                    "--n_threads",
                    threads,
                    "--n_threads_batch",
                    threads,
                    # Default True: a new request aborts the running stream. False: it queues.
                    "--interrupt_requests",
                    "False",
                ],
                "/v1/models",
                port,
            )
        )
    if "native" not in args.skip:
        port = free_port()
        servers.append(
            Server(
                "native",
                "llama-server",
                [
                    str(native_server()),
                    "--model",
                    str(model),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--parallel",
                    str(parallel),
                    "--ctx-size",
                    str(parallel * slot_ctx),
                    "--threads",
                    threads,
                    "--threads-batch",
                    threads,
                ],
                "/health",
                port,
            )
        )
    return servers


def report(
    runs: dict[tuple[str, int], list[LevelResult]], names: list[str], levels: list[int], rounds: int
) -> None:
    best = {key: max(results, key=lambda r: r.tokens_per_second) for key, results in runs.items()}
    median = {
        key: statistics.median(r.tokens_per_second for r in results)
        for key, results in runs.items()
    }
    per_cpu = {key: max(r.tokens_per_cpu_second for r in results) for key, results in runs.items()}
    print(
        f"\n| server | concurrency | tokens/s, best of {rounds} | tokens/s, median "
        "| TTFT median (ms), best round | tokens per CPU-second, best |"
    )
    print("|---|---|---|---|---|---|")
    for name in names:
        for level in levels:
            top = best[name, level]
            print(
                f"| {name} | {level} | {top.tokens_per_second:.1f} | "
                f"{median[name, level]:.1f} | {top.ttft_median * 1000:.0f} | "
                f"{per_cpu[name, level]:.1f} |"
            )
    if "siesta-server" not in names:
        return
    print()
    for other in names:
        if other == "siesta-server":
            continue
        for label, values in (
            ("best", {k: v.tokens_per_second for k, v in best.items()}),
            ("median", median),
            ("per CPU-second", per_cpu),
        ):
            ratios = ", ".join(
                f"c={level}: {values['siesta-server', level] / values[other, level]:.2f}x"
                for level in levels
            )
            print(f"siesta-server / {other} throughput ({label}): {ratios}")


if __name__ == "__main__":
    main()
