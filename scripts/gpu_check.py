"""The Python half of scripts/gpu-check.sh: a 7B-shaped model, the benchmark, the refusal.

Standard library only (it runs in the check's fresh venv on a GPU machine without network):

    gpu_check.py write-model PATH         Llama-2-7B shapes, Q4_K weights (random), 32000-token
                                          vocabulary: a real, loadable GGUF of ~3.8 GiB
    gpu_check.py bench --model PATH --siesta-server BIN --llama-server BIN
                                          tokens/s at concurrency 1 and 8 of both servers, one
                                          after the other, their load times and siesta-server's
                                          memory check; prints a table and the ratios
    gpu_check.py refusal --model PATH --siesta-server BIN
                                          siesta-server --require-gpu with CUDA_VISIBLE_DEVICES=
                                          (no device visible): its exit code and one line
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# --- a 7B-shaped GGUF ---------------------------------------------------------------------------
N_VOCAB, N_CTX = 32000, 4096
GGML_F32, GGML_Q4_K = 0, 12
Q4_K_BLOCK_BYTES, Q4_K_BLOCK_WEIGHTS = 144, 256
FILE_TYPE_Q4_K_M = 15
ALIGNMENT = 32
EOS_TOKEN = 2
_UINT32, _FLOAT32, _BOOL, _STRING, _ARRAY = 4, 6, 7, 8, 9


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _kv(key: str, kind: int, value: object) -> bytes:
    head = _string(key) + struct.pack("<I", kind)
    if kind == _UINT32:
        return head + struct.pack("<I", value)
    if kind == _FLOAT32:
        return head + struct.pack("<f", value)
    if kind == _BOOL:
        return head + struct.pack("<?", value)
    if kind == _STRING:
        return head + _string(str(value))
    raise ValueError(kind)


def _array(key: str, kind: int, values: list[object]) -> bytes:
    head = _string(key) + struct.pack("<IIQ", _ARRAY, kind, len(values))
    if kind == _STRING:
        return head + b"".join(_string(str(v)) for v in values)
    if kind == _FLOAT32:
        return head + struct.pack(f"<{len(values)}f", *values)
    return head + struct.pack(f"<{len(values)}i", *values)  # token types: INT32 (5)


@dataclass(frozen=True)
class Shape:
    """Llama-2-7B by default: 32 layers, 4096 wide, 11008 feed-forward, 32 heads (no GQA)."""

    n_layer: int = 32
    n_embd: int = 4096
    n_ff: int = 11008
    n_head: int = 32


LLAMA_2_7B = Shape()


def _vocabulary() -> tuple[list[object], list[object], list[object]]:
    """SentencePiece-style: <unk> <s> </s>, 256 byte tokens, then word pieces."""
    pieces: list[object] = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types: list[object] = [2, 3, 3] + [6] * 256  # UNKNOWN, CONTROL, CONTROL, BYTE...
    words = N_VOCAB - len(pieces)
    pieces += [f"\u2581w{i}" for i in range(words)]
    types += [1] * words
    scores: list[object] = [0.0] * 259 + [-float(i) for i in range(words)]
    return pieces, scores, types


def _tensors(shape: Shape) -> list[tuple[str, list[int], int]]:
    """(name, ggml ne (fastest first), type) in file order."""
    q4, f32 = GGML_Q4_K, GGML_F32
    N_LAYER, N_EMBD, N_FF = shape.n_layer, shape.n_embd, shape.n_ff
    out = [("token_embd.weight", [N_EMBD, N_VOCAB], q4)]
    for layer in range(N_LAYER):
        blk = f"blk.{layer}"
        out += [
            (f"{blk}.attn_norm.weight", [N_EMBD], f32),
            (f"{blk}.attn_q.weight", [N_EMBD, N_EMBD], q4),
            (f"{blk}.attn_k.weight", [N_EMBD, N_EMBD], q4),
            (f"{blk}.attn_v.weight", [N_EMBD, N_EMBD], q4),
            (f"{blk}.attn_output.weight", [N_EMBD, N_EMBD], q4),
            (f"{blk}.ffn_norm.weight", [N_EMBD], f32),
            (f"{blk}.ffn_gate.weight", [N_EMBD, N_FF], q4),
            (f"{blk}.ffn_up.weight", [N_EMBD, N_FF], q4),
            (f"{blk}.ffn_down.weight", [N_FF, N_EMBD], q4),
        ]
    out += [("output_norm.weight", [N_EMBD], f32), ("output.weight", [N_EMBD, N_VOCAB], q4)]
    return out


def _nbytes(ne: list[int], kind: int) -> int:
    count = 1
    for n in ne:
        count *= n
    if kind == GGML_F32:
        return 4 * count
    return count // Q4_K_BLOCK_WEIGHTS * Q4_K_BLOCK_BYTES


def _q4_k_pool(blocks: int, seed: int) -> bytes:
    """Valid Q4_K blocks with random scales and quants and small f16 super-scales."""
    rng = random.Random(seed)
    d, dmin = struct.pack("<e", 0.002), struct.pack("<e", 0.001)
    return b"".join(d + dmin + rng.randbytes(12 + 128) for _ in range(blocks))


def _write_repeating(out: BinaryIO, pool: bytes, size: int) -> None:
    while size > 0:
        chunk = pool[: min(size, len(pool))]
        out.write(chunk)
        size -= len(chunk)


def write_model(path: Path, shape: Shape = LLAMA_2_7B) -> Path:
    """A Llama-2-7B-shaped Q4_K GGUF with random weights (the same bytes every time)."""
    pieces, scores, types = _vocabulary()
    N_LAYER, N_EMBD, N_FF, N_HEAD = shape.n_layer, shape.n_embd, shape.n_ff, shape.n_head
    kvs = [
        _kv("general.architecture", _STRING, "llama"),
        _kv("general.name", _STRING, "llama-2-7b-shaped-random"),
        _kv("general.file_type", _UINT32, FILE_TYPE_Q4_K_M),
        _kv("llama.context_length", _UINT32, N_CTX),
        _kv("llama.embedding_length", _UINT32, N_EMBD),
        _kv("llama.block_count", _UINT32, N_LAYER),
        _kv("llama.feed_forward_length", _UINT32, N_FF),
        _kv("llama.rope.dimension_count", _UINT32, N_EMBD // N_HEAD),
        _kv("llama.attention.head_count", _UINT32, N_HEAD),
        _kv("llama.attention.head_count_kv", _UINT32, N_HEAD),
        _kv("llama.attention.layer_norm_rms_epsilon", _FLOAT32, 1e-5),
        _kv("tokenizer.ggml.model", _STRING, "llama"),
        _array("tokenizer.ggml.tokens", _STRING, pieces),
        _array("tokenizer.ggml.scores", _FLOAT32, scores),
        _array("tokenizer.ggml.token_type", 5, types),
        _kv("tokenizer.ggml.unknown_token_id", _UINT32, 0),
        _kv("tokenizer.ggml.bos_token_id", _UINT32, 1),
        _kv("tokenizer.ggml.eos_token_id", _UINT32, EOS_TOKEN),
        _kv("tokenizer.ggml.add_bos_token", _BOOL, True),
    ]
    tensors = _tensors(shape)
    infos, offset = [], 0
    for name, ne, kind in tensors:
        infos.append(
            _string(name)
            + struct.pack("<I", len(ne))
            + struct.pack(f"<{len(ne)}Q", *ne)
            + struct.pack("<IQ", kind, offset)
        )
        offset += -(-_nbytes(ne, kind) // ALIGNMENT) * ALIGNMENT
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs + infos)
    pool = _q4_k_pool(8192, seed=7)
    norm = struct.pack("<f", 1.0) * shape.n_embd
    partial = path.with_suffix(".part")
    with partial.open("wb") as out:
        out.write(head + b"\0" * (-len(head) % ALIGNMENT))
        for _, ne, kind in tensors:
            size = _nbytes(ne, kind)
            if kind == GGML_F32:
                out.write(norm)
            else:
                _write_repeating(out, pool, size)
            out.write(b"\0" * (-size % ALIGNMENT))
    partial.replace(path)
    return path


# --- the benchmark -------------------------------------------------------------------------------
@dataclass
class Level:
    concurrency: int
    seconds: float
    tokens: int

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return int(reply.status)
    except OSError:
        return 0


def _complete(url: str, index: int, max_tokens: int) -> int:
    """One non-streamed completion of exactly max_tokens (EOS banned); its token count."""
    body = {
        "prompt": f"{index} " + " ".join(f"w{(index * 7 + i) % 900}" for i in range(48)),
        "max_tokens": max_tokens,
        "temperature": 0.8,
        "seed": index,
        "logit_bias": {str(EOS_TOKEN): -100.0},
    }
    request = urllib.request.Request(
        f"{url}/v1/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=600) as reply:
            usage = json.loads(reply.read()).get("usage") or {}
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"{url}: HTTP {error.code}: {error.read()[:500]!r}") from None
    return int(usage.get("completion_tokens") or max_tokens)


def _level(url: str, concurrency: int, requests: int, max_tokens: int, offset: int) -> Level:
    counter, lock, tokens = iter(range(requests)), threading.Lock(), [0]

    def worker() -> None:
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            got = _complete(url, offset + index, max_tokens)
            with lock:
                tokens[0] += got

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Level(concurrency, time.perf_counter() - started, tokens[0])


@contextlib.contextmanager
def _serving(
    name: str, command: list[str], port: int, ready: str, logs: Path
) -> Iterator[tuple[str, float]]:
    """The server running; yields its URL and how long it took to become ready."""
    log = logs / f"{name}.log"
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        while _get(f"http://127.0.0.1:{port}{ready}") != 200:
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited {process.returncode}:\n{tail}")
            if time.perf_counter() - started > 600:
                raise RuntimeError(f"{name} not ready after 600 s")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", time.perf_counter() - started
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def bench(args: argparse.Namespace) -> int:
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    ctx, parallel = args.ctx_size, 8
    servers = {
        "siesta-server": lambda port: [
            args.siesta_server,
            *("--model", args.model, "--host", "127.0.0.1", "--port", str(port)),
            *("--ctx-size", str(ctx), "--parallel", str(parallel), "--gpu-layers", "-1"),
            *([] if args.allow_cpu else ["--require-gpu"]),
        ],
        "llama-server": lambda port: [
            args.llama_server,
            *("-m", args.model, "--host", "127.0.0.1", "--port", str(port)),
            *("-c", str(ctx), "-np", str(parallel), "-ngl", "999"),
        ],
    }
    ready = {"siesta-server": "/health", "llama-server": "/health"}
    results: dict[str, dict[int, Level]] = {}
    loads: dict[str, float] = {}
    for name, command in servers.items():
        port = _free_port()
        with _serving(name, command(port), port, ready[name], logs) as (url, load):
            loads[name] = load
            _complete(url, 99_999, 8)  # warm-up: first-call allocations, kernel loading
            results[name] = {
                c: _level(url, c, args.requests_per_level * c // 4 or c, args.max_tokens, 1000 * c)
                for c in (1, 8)
            }
    print(f"\n7B-shaped Q4_K model, {args.max_tokens} tokens a request, ctx {ctx} over {parallel}")
    print("| server | load (s, to /health 200) | c=1 tokens/s | c=8 tokens/s |")
    print("|---|---|---|---|")
    for name, levels in results.items():
        print(
            f"| {name} | {loads[name]:.1f} | {levels[1].tokens_per_second:.1f} "
            f"| {levels[8].tokens_per_second:.1f} |"
        )
    for c in (1, 8):
        ratio = (
            results["siesta-server"][c].tokens_per_second
            / results["llama-server"][c].tokens_per_second
        )
        print(f"siesta-server / llama-server at c={c}: {ratio:.2f}")
    log = (logs / "siesta-server.log").read_text(errors="replace")
    for line in log.splitlines():
        if "memory check:" in line or "GPU required and found" in line or "loaded in" in line:
            print("siesta-server:", line.split(": ", 1)[-1] if "siesta_server" in line else line)
    return 0


def refusal(args: argparse.Namespace) -> int:
    message = Path(args.logs) / "refusal-termination-log"
    message.parent.mkdir(parents=True, exist_ok=True)
    message.write_text("")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    command = [
        args.siesta_server,
        *("--model", args.model, "--host", "127.0.0.1", "--port", str(_free_port())),
        *("--require-gpu", "--termination-log", str(message)),
    ]
    code = subprocess.run(command, env=env, capture_output=True, timeout=300, check=False)
    print(f"siesta-server --require-gpu with CUDA_VISIBLE_DEVICES= : exit {code.returncode}")
    print(f"termination message: {message.read_text().strip()}")
    return 0 if code.returncode == 1 and message.read_text().strip() else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("write-model")
    write.add_argument("path", type=Path)
    for name in ("bench", "refusal"):
        sub = commands.add_parser(name)
        sub.add_argument("--model", required=True)
        sub.add_argument("--siesta-server", required=True)
        sub.add_argument("--logs", default="gpu-check-logs")
        if name == "bench":
            sub.add_argument("--llama-server", required=True)
            sub.add_argument("--ctx-size", type=int, default=32768)
            sub.add_argument("--max-tokens", type=int, default=128)
            sub.add_argument("--requests-per-level", type=int, default=8)
            # Checking this script on a machine without a GPU: no --require-gpu.
            sub.add_argument("--allow-cpu", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.command == "write-model":
        started = time.perf_counter()
        path = write_model(args.path)
        size = path.stat().st_size
        print(f"wrote {path}: {size / 2**30:.2f} GiB in {time.perf_counter() - started:.1f} s")
        return 0
    return bench(args) if args.command == "bench" else refusal(args)


if __name__ == "__main__":
    sys.exit(main())
