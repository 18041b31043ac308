"""Benchmark: LoRA adapters in siesta-server (one base model serving three fine-tunes).

1. Throughput: aggregate generated tokens/s at concurrency 8 with the requests spread over
   three adapters, against the same load on the base model alone (same server, same model,
   same threads; goal >= 0.8x).
2. Memory: resident set size (VmRSS) of one server with three adapters loaded, against one
   server without adapters (goal <= 1.2x) and three servers (3x one).
3. How to batch across adapters, measured in-process on the same model: a step of 8
   sequences over 3 adapters as (a) one context that switches adapter per group, (b) one
   context per adapter over the same weights, against (c) 8 base sequences in one decode.

A script, not a test:

    .venv/bin/python tests/benchmarks/bench_adapters.py            # a few minutes
    .venv/bin/python tests/benchmarks/bench_adapters.py --quick    # smaller model
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_server import FULL_MODEL, QUICK_MODEL, ModelSpec, free_port, prompt_text
from server_native import cache_root

from localworld.tiny_gguf import write_tiny_llama, write_tiny_lora

ADAPTERS = ("support", "sales", "legal")
EOS_TOKEN = 2
CONCURRENCY = 8
LORA_RANK = 16


def files(spec: ModelSpec) -> tuple[Path, list[Path]]:
    directory = cache_root() / "bench"
    model = directory / spec.file_name
    if not model.exists():
        write_tiny_llama(
            model, n_layer=spec.n_layer, n_embd=spec.n_embd, n_ff=spec.n_ff,
            n_head=spec.n_head, n_ctx=4096, dtype="f32", name="bench",
        )  # fmt: skip
    loras = []
    for seed, name in enumerate(ADAPTERS, start=1):
        path = directory / f"{model.stem}-lora-{name}-r{LORA_RANK}.gguf"
        if not path.exists():
            write_tiny_lora(
                path, n_layer=spec.n_layer, n_embd=spec.n_embd, n_ff=spec.n_ff,
                n_head=spec.n_head, rank=LORA_RANK, seed=seed, strength=0.5,
            )  # fmt: skip
        loras.append(path)
    return model, loras


@contextlib.contextmanager
def server(model: Path, loras: list[Path], threads: int, logs: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    command = [
        sys.executable, "-m", "siesta_server", "--model", str(model), "--alias", "base",
        "--host", "127.0.0.1", "--port", str(port), "--threads", str(threads),
        "--parallel", str(CONCURRENCY), "--ctx-size", str(CONCURRENCY * 512),
    ]  # fmt: skip
    for name, path in zip(ADAPTERS, loras, strict=False):
        command += ["--lora", f"{name}={path}"]
    log = logs / f"adapters-{len(loras)}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited:\n{log.read_text(errors='replace')[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("server not ready")
            time.sleep(0.2)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def request(url: str, model: str, index: int, max_tokens: int) -> int:
    body = {
        "model": model,
        "prompt": prompt_text(index, 48),
        "max_tokens": max_tokens,
        "temperature": 0.8,
        "seed": index,
        "logit_bias": {str(EOS_TOKEN): -100.0},
    }
    response = httpx.post(f"{url}/v1/completions", json=body, timeout=600)
    response.raise_for_status()
    return int(response.json()["usage"]["completion_tokens"])


def throughput(url: str, models: list[str], requests: int, max_tokens: int, offset: int) -> float:
    """Aggregate generated tokens/s of `requests` requests, CONCURRENCY at a time."""
    counter = iter(range(requests))
    lock = threading.Lock()
    tokens = [0]

    def worker() -> None:
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            made = request(url, models[index % len(models)], offset + index, max_tokens)
            with lock:
                tokens[0] += made

    started = time.perf_counter()
    workers = [threading.Thread(target=worker) for _ in range(CONCURRENCY)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return tokens[0] / (time.perf_counter() - started)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def strategies(model_path: Path, loras: list[Path], threads: int, steps: int) -> dict[str, float]:
    """Seconds per decode step of 8 sequences (one token each) under three layouts."""
    from siesta_server.native import (
        Batch,
        create_context,
        init_backend,
        load_adapter,
        load_model,
    )

    init_backend(verbose=False)
    model = load_model(model_path, gpu_layers=0)
    adapters = [load_adapter(model, n, p, 1.0) for n, p in zip(ADAPTERS, loras, strict=True)]
    groups = [[0, 3, 6], [1, 4, 7], [2, 5]]  # 8 sequences over 3 adapters
    prompt = [300 + i for i in range(32)]

    def context(n_seq: int) -> object:
        return create_context(model, n_ctx=512 * n_seq, n_seq=n_seq, n_batch=512, threads=threads)

    def fill(ctx: object, seqs: list[int], batch: Batch) -> None:
        for seq in seqs:
            batch.clear()
            for pos, token in enumerate(prompt):
                batch.add(token, pos, seq, output=pos == len(prompt) - 1)
            assert ctx.decode(batch) == 0  # type: ignore[attr-defined]

    batch = Batch(512)

    # (c) base model, 8 sequences in one decode.
    plain = context(8)
    fill(plain, list(range(8)), batch)

    def base_step(step: int) -> None:
        batch.clear()
        for seq in range(8):
            batch.add(300 + step % 50, len(prompt) + step, seq, output=True)
        assert plain.decode(batch) == 0  # type: ignore[attr-defined]

    one = context(8)
    fill(one, list(range(8)), batch)

    # (a) one context, one decode per adapter group, switching the adapter in between.
    position = [len(prompt)]

    def switching_step(step: int) -> None:
        for group, adapter in zip(groups, adapters, strict=True):
            one.use_adapter(adapter)  # type: ignore[attr-defined]
            batch.clear()
            for seq in group:
                batch.add(300 + step % 50, position[0], seq, output=True)
            assert one.decode(batch) == 0  # type: ignore[attr-defined]
        position[0] += 1

    # (b) one context per adapter (its own KV cache), never switching.
    contexts = []
    for group, adapter in zip(groups, adapters, strict=True):
        ctx = context(len(group))
        ctx.use_adapter(adapter)  # type: ignore[attr-defined]
        fill(ctx, list(range(len(group))), batch)
        contexts.append((ctx, len(group)))
    position_b = [len(prompt)]

    def per_context_step(step: int) -> None:
        for ctx, size in contexts:
            batch.clear()
            for seq in range(size):
                batch.add(300 + step % 50, position_b[0], seq, output=True)
            assert ctx.decode(batch) == 0  # type: ignore[attr-defined]
        position_b[0] += 1

    # The three layouts take turns step by step, so background load hits them alike.
    layouts = {
        "base, one decode of 8": base_step,
        "one context, switch adapter per group": switching_step,
        "one context per adapter": per_context_step,
    }
    samples: dict[str, list[float]] = {name: [] for name in layouts}
    for step in range(steps):
        for name, run_step in layouts.items():
            started = time.perf_counter()
            run_step(step)
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values[2:]) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller model, fewer requests")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    spec = QUICK_MODEL if args.quick else FULL_MODEL
    model, loras = files(spec)
    logs = cache_root() / "bench" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    requests = 2 * CONCURRENCY
    print(
        f"model {model.name} ({model.stat().st_size / 2**20:.0f} MiB), 3 LoRA adapters of rank "
        f"{LORA_RANK} ({sum(p.stat().st_size for p in loras) / 2**20:.1f} MiB together), "
        f"threads {args.threads}, c={CONCURRENCY}, {requests} requests of {args.max_tokens} "
        f"tokens per measurement, {args.rounds} rounds",
        flush=True,
    )

    base_runs: list[float] = []
    adapter_runs: list[float] = []
    with (
        server(model, [], args.threads, logs) as (plain_url, plain_pid),
        server(model, loras, args.threads, logs) as (lora_url, lora_pid),
    ):
        request(plain_url, "base", 99_999, 8)  # warm-up
        for name in ADAPTERS:
            request(lora_url, name, 99_998, 8)
        for number in range(args.rounds):
            offset = number * 1000
            base_runs.append(throughput(plain_url, ["base"], requests, args.max_tokens, offset))
            adapter_runs.append(
                throughput(lora_url, list(ADAPTERS), requests, args.max_tokens, offset)
            )
            print(
                f"  round {number + 1}: base alone {base_runs[-1]:.1f} tok/s, "
                f"3 adapters {adapter_runs[-1]:.1f} tok/s",
                flush=True,
            )
        plain_rss, lora_rss = rss_bytes(plain_pid), rss_bytes(lora_pid)

    base_tps, lora_tps = statistics.median(base_runs), statistics.median(adapter_runs)
    # Each round measures both back to back: the ratio per round is less sensitive to the
    # machine's background load than the ratio of the medians.
    ratios = [a / b for a, b in zip(adapter_runs, base_runs, strict=True)]
    print()
    print(f"throughput at c={CONCURRENCY} (median of {args.rounds} rounds):")
    print(f"  base alone            {base_tps:8.1f} tok/s")
    print(f"  over 3 adapters       {lora_tps:8.1f} tok/s")
    print(
        f"  ratio per round {', '.join(f'{r:.2f}' for r in ratios)}; "
        f"median {statistics.median(ratios):.2f}x"
    )
    print("resident memory after the runs:")
    print(f"  one server, no adapter   {plain_rss / 2**20:8.1f} MiB")
    print(
        f"  one server, 3 adapters   {lora_rss / 2**20:8.1f} MiB   "
        f"ratio {lora_rss / plain_rss:.2f}x of one server, "
        f"{lora_rss / (3 * plain_rss):.2f}x of three servers"
    )
    print()
    print("decode step of 8 sequences (one token each), in-process, median:")
    steps = strategies(model, loras, args.threads, steps=20 if args.quick else 40)
    reference = steps["base, one decode of 8"]
    for name, seconds in steps.items():
        print(f"  {name:<40} {seconds * 1000:8.2f} ms   {seconds / reference:.2f}x")


if __name__ == "__main__":
    main()
