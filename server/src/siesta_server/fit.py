"""Will the model fit? Estimate its memory from the GGUF header and compare with what is free.

llama.cpp, asked to allocate more than there is, fails deep inside its loader with messages
like "not a valid GGUF model?"; this check runs first and says it in numbers. The estimate
is the weights (the file's size: GGUF is almost all tensor data) plus the KV cache for
`--ctx-size` tokens (split over `--parallel` slots, the total is the same) in f16. It
leaves out llama.cpp's compute buffers on purpose: a model refused here surely cannot load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from siesta_server.gguf_header import GGUFHeader, Value

KV_BYTES_PER_VALUE = 2  # llama.cpp's default KV cache type is f16
GIB = 1024**3


@dataclass(frozen=True)
class Need:
    weights: int
    kv_cache: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache


@dataclass(frozen=True)
class Free:
    """Free memory where the model goes: `where` is e.g. "GPU 0 (NVIDIA A10G)" or "host"."""

    where: str
    free: int
    total: int | None = None


class DoesNotFitError(RuntimeError):
    """The model and its KV cache need more memory than is free."""


def _per_layer(value: Value | None, layers: int, default: int) -> list[int]:
    if isinstance(value, list):
        numbers = [int(v) for v in value if isinstance(v, int | float)]
        return (numbers + [default] * layers)[:layers]
    if isinstance(value, int | float):
        return [int(value)] * layers
    return [default] * layers


def _int(value: Value | None) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def estimate(header: GGUFHeader, ctx_size: int) -> Need:
    """Bytes for the weights and for a KV cache of `ctx_size` tokens (all slots together)."""
    layers = _int(header.arch_value("block_count")) or 0
    embedding = _int(header.arch_value("embedding_length")) or 0
    heads_value = header.arch_value("attention.head_count")
    heads = _per_layer(heads_value, layers, 1)
    kv_heads = _per_layer(header.arch_value("attention.head_count_kv"), layers, 0)
    kv_bytes = 0
    for layer in range(layers):
        head_count = max(heads[layer], 1)
        kv_head_count = kv_heads[layer] or head_count
        key_length = _int(header.arch_value("attention.key_length")) or embedding // head_count
        value_length = _int(header.arch_value("attention.value_length")) or embedding // head_count
        kv_bytes += kv_head_count * (key_length + value_length) * ctx_size * KV_BYTES_PER_VALUE
    return Need(weights=header.file_size, kv_cache=kv_bytes)


def split(need: Need, layers: int, gpu_layers: int, has_gpu: bool) -> tuple[Need, Need]:
    """(on the GPU, on the host) for `--gpu-layers` (-1: all) offloaded layers."""
    if not has_gpu or gpu_layers == 0 or layers == 0:
        return Need(0, 0), need
    offloaded = layers if gpu_layers < 0 else min(gpu_layers, layers)
    share = offloaded / layers
    gpu = Need(math.ceil(need.weights * share), math.ceil(need.kv_cache * share))
    return gpu, Need(need.weights - gpu.weights, need.kv_cache - gpu.kv_cache)


def gib(count: int) -> str:
    return f"{count / GIB:.2f} GiB"


def check(need: Need, free: Free, ctx_size: int, parallel: int) -> None:
    """Raise DoesNotFitError, with the numbers, when `need` exceeds what is free."""
    if need.total <= free.free:
        return
    total = f" of {gib(free.total)}" if free.total is not None else ""
    raise DoesNotFitError(
        f"model does not fit: needs {gib(need.total)} (weights {gib(need.weights)} + "
        f"KV cache {gib(need.kv_cache)} for --ctx-size {ctx_size} over --parallel {parallel}) "
        f"but {free.where} has {gib(free.free)} free{total}; lower server.contextSize or "
        "server.parallel, use a smaller quantization, or a GPU with more memory"
    )


def trained_context_warning(slot_tokens: int, trained_tokens: int, parallel: int) -> str | None:
    """What to say when each slot holds more tokens than the model was trained on.

    llama.cpp runs such a context, but past the trained length answers degrade (most models
    have no position scaling for it), so the server says so once at start.
    """
    if trained_tokens <= 0 or slot_tokens <= trained_tokens:
        return None
    return (
        f"each of the {parallel} slots holds {slot_tokens} tokens but the model was trained "
        f"on {trained_tokens}: answers degrade past {trained_tokens} tokens; lower "
        "server.contextSize or raise server.parallel"
    )
