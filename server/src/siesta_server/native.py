"""Thin typed wrappers over llama-cpp-python's low-level (ctypes) API.

Only the pieces the server needs: load a model, create a multi-sequence context, fill a
`llama_batch`, tokenize and turn tokens back into bytes. Everything here except tokenizing
and the vocabulary lookups must be called from the decode thread only.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np

log = logging.getLogger(__name__)

_backend_ready = False
_verbose = False
# llama.cpp's last error lines: its loader says why it failed only in its log.
_recent_errors: deque[str] = deque(maxlen=8)
# Its "offloaded N/M layers to GPU" line (an info line): how much of the model is on the GPU.
_offload_lines: deque[str] = deque(maxlen=4)
# ggml's levels: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5 (continues the previous
# line). llama-cpp-python's own logger still maps the older numbering and hides errors.
_GGML_LOG_LEVEL_NONE, _GGML_LOG_LEVEL_ERROR, _GGML_LOG_LEVEL_CONT = 0, 4, 5
_last_level = _GGML_LOG_LEVEL_NONE
_MAX_LOG_LINE = 1000


class NativeError(RuntimeError):
    """llama.cpp refused an operation (bad model file, out of memory, decode failure)."""


@llama_cpp.llama_log_callback  # type: ignore[misc,untyped-decorator]
def _on_log(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
    global _last_level
    if level != _GGML_LOG_LEVEL_CONT:
        _last_level = level
    line = text[:_MAX_LOG_LINE].decode("utf-8", errors="replace")
    if len(text) > _MAX_LOG_LINE:  # a line may quote request data (a grammar, a prompt)
        line = f"{line}... ({len(text)} bytes)\n"
    is_error = _last_level in (_GGML_LOG_LEVEL_NONE, _GGML_LOG_LEVEL_ERROR)
    if is_error and line.strip():
        _recent_errors.append(line.strip())
    if "layers to GPU" in line:
        _offload_lines.append(line.strip())
    # llama.cpp's own log lines go to stderr; keep errors unless asked for more.
    if _verbose or is_error:
        print(line, end="", file=sys.stderr, flush=True)


def init_backend(verbose: bool) -> None:
    global _backend_ready, _verbose
    _verbose = verbose
    if not _backend_ready:
        llama_cpp.llama_log_set(_on_log, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        _backend_ready = True


def recent_errors() -> list[str]:
    """llama.cpp's and ggml's last error lines (e.g. why the CUDA backend found no device)."""
    return list(_recent_errors)


def offload_lines() -> list[str]:
    """llama.cpp's "offloaded N/M layers to GPU" lines of the last load."""
    return list(_offload_lines)


def load_error() -> str:
    """What llama.cpp's loader said (its "error loading model: ..." line, else its last)."""
    for line in _recent_errors:
        if "error loading model:" in line:
            return line.split("error loading model:", 1)[1].strip()
    return _recent_errors[-1] if _recent_errors else "no reason given"


@dataclass
class Model:
    """A loaded GGUF model and its vocabulary."""

    path: Path
    handle: Any
    vocab: Any
    n_vocab: int
    n_embd: int
    n_ctx_train: int
    bos_token: int
    eos_token: int
    add_bos: bool
    chat_template: str | None
    description: str
    size_bytes: int
    n_params: int
    _pieces: dict[int, bytes] = field(default_factory=dict, repr=False)
    # Per-model tables other modules derive from the vocabulary once (e.g. UTF-8 classes).
    caches: dict[str, object] = field(default_factory=dict, repr=False)

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        while True:
            buffer = (llama_cpp.llama_token * capacity)()
            count = llama_cpp.llama_tokenize(
                self.vocab, data, len(data), buffer, capacity, add_special, parse_special
            )
            if count >= 0:
                return list(buffer[:count])
            capacity = -count

    def piece(self, token: int) -> bytes:
        """The bytes one token stands for (cached: pieces never change)."""
        cached = self._pieces.get(token)
        if cached is None:
            buffer = ctypes.create_string_buffer(64)
            length = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, 64, 0, False)
            if length < 0:
                buffer = ctypes.create_string_buffer(-length)
                length = llama_cpp.llama_token_to_piece(
                    self.vocab, token, buffer, -length, 0, False
                )
            cached = buffer.raw[:length]
            self._pieces[token] = cached
        return cached

    def token_text(self, token: int) -> str:
        if token < 0 or token >= self.n_vocab:
            return ""
        raw: bytes = llama_cpp.llama_vocab_get_text(self.vocab, token)
        return raw.decode("utf-8", errors="replace")

    def is_end_of_generation(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    def close(self) -> None:
        if self.handle is not None:
            llama_cpp.llama_model_free(self.handle)
            self.handle = None


def load_model(path: Path, *, gpu_layers: int) -> Model:
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = gpu_layers
    _recent_errors.clear()
    _offload_lines.clear()
    handle = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if not handle:
        raise NativeError(f"llama.cpp could not load {path}: {load_error()}")
    vocab = llama_cpp.llama_model_get_vocab(handle)
    description = ctypes.create_string_buffer(256)
    llama_cpp.llama_model_desc(handle, description, 256)
    template = llama_cpp.llama_model_chat_template(handle, None)
    return Model(
        path=path,
        handle=handle,
        vocab=vocab,
        n_vocab=llama_cpp.llama_vocab_n_tokens(vocab),
        n_embd=llama_cpp.llama_model_n_embd(handle),
        n_ctx_train=llama_cpp.llama_model_n_ctx_train(handle),
        bos_token=llama_cpp.llama_vocab_bos(vocab),
        eos_token=llama_cpp.llama_vocab_eos(vocab),
        add_bos=bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
        chat_template=template.decode("utf-8") if template else None,
        description=description.value.decode("utf-8", errors="replace"),
        size_bytes=llama_cpp.llama_model_size(handle),
        n_params=llama_cpp.llama_model_n_params(handle),
    )


@dataclass(frozen=True, eq=False)
class Adapter:
    """A LoRA adapter loaded for a model, served under its own model name.

    Compared by identity: two adapters are the same only if they are the same object.
    """

    name: str
    scale: float
    path: Path
    handle: Any


def load_adapter(model: Model, name: str, path: Path, scale: float) -> Adapter:
    _recent_errors.clear()
    handle = llama_cpp.llama_adapter_lora_init(model.handle, str(path).encode())
    if not handle:
        reason = _recent_errors[-1] if _recent_errors else "no reason given"
        raise NativeError(
            f"LoRA adapter {name!r}: llama.cpp cannot apply {path} to {model.path.name} "
            f"({model.description}): {reason}. It must be a GGUF with general.type=adapter "
            "and adapter.type=lora whose tensors match this base model (convert it with "
            "llama.cpp's convert_lora_to_gguf.py against the same base)"
        )
    return Adapter(name=name, scale=scale, path=path, handle=handle)


@dataclass
class Context:
    """A llama.cpp context whose KV cache holds `n_seq` independent sequences."""

    handle: Any
    memory: Any
    n_ctx: int
    n_ctx_seq: int
    n_batch: int
    n_seq: int
    adapter: Adapter | None = None  # the LoRA adapter the next decode applies

    def use_adapter(self, adapter: Adapter | None) -> None:
        """Apply `adapter` (or none) to the following decodes of this context."""
        if adapter is self.adapter:
            return
        if adapter is None:
            llama_cpp.llama_set_adapters_lora(self.handle, None, 0, None)
        else:
            handles = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter.handle)
            scales = (ctypes.c_float * 1)(adapter.scale)
            llama_cpp.llama_set_adapters_lora(self.handle, handles, 1, scales)
        self.adapter = adapter

    def decode(self, batch: Batch) -> int:
        """Run one forward pass; 0 on success, 1 if no KV space, negative on error."""
        return int(llama_cpp.llama_decode(self.handle, batch.native))

    def forget(self, seq_id: int, from_pos: int = 0) -> bool:
        """Drop a sequence's cached tokens at positions >= from_pos (0: all of them)."""
        return bool(llama_cpp.llama_memory_seq_rm(self.memory, seq_id, from_pos, -1))

    def output_embeddings(self, n_outputs: int, n_embd: int) -> np.ndarray:
        """The last hidden state of each output token of the last decode (a copy)."""
        pointer = llama_cpp.llama_get_embeddings(self.handle)
        if not pointer:
            raise NativeError("the model produced no embeddings")
        floats = ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float))
        return np.ctypeslib.as_array(floats, shape=(n_outputs, n_embd)).copy()

    def close(self) -> None:
        if self.handle is not None:
            llama_cpp.llama_free(self.handle)
            self.handle = None


def create_context(
    model: Model,
    *,
    n_ctx: int,
    n_seq: int,
    n_batch: int,
    threads: int,
    embeddings: bool = False,
) -> Context:
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = n_ctx
    params.n_batch = n_batch
    params.n_ubatch = min(n_batch, 512) if not embeddings else n_batch
    params.n_seq_max = n_seq
    params.n_threads = params.n_threads_batch = threads or default_threads()
    # Separate per-sequence KV buffers: each slot owns n_ctx / n_seq tokens, so a slot can
    # never run out of room because of its neighbours (llama-server's default too).
    params.kv_unified = False
    params.no_perf = True
    if embeddings:
        # Per-token hidden states; the caller pools them, so an input can be decoded in
        # several chunks (llama.cpp pools only within one decode call).
        params.embeddings = True
        params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_NONE
    handle = llama_cpp.llama_init_from_model(model.handle, params)
    if not handle:
        raise NativeError(f"llama.cpp could not create a context of {n_ctx} tokens")
    return Context(
        handle=handle,
        memory=llama_cpp.llama_get_memory(handle),
        n_ctx=llama_cpp.llama_n_ctx(handle),
        # The real per-sequence limit (n_ctx may be rounded up, then split over sequences).
        n_ctx_seq=llama_cpp.llama_n_ctx_seq(handle),
        n_batch=llama_cpp.llama_n_batch(handle),
        n_seq=n_seq,
    )


def default_threads() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores or 1)


class Batch:
    """A reusable `llama_batch` of up to `capacity` tokens, one sequence id per token."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.native = llama_cpp.llama_batch_init(capacity, 0, 1)
        self.size = 0

    def clear(self) -> None:
        self.size = 0
        self.native.n_tokens = 0

    def add(self, token: int, pos: int, seq_id: int, *, output: bool) -> int:
        """Append one token; returns its index (the `idx` for sampling its logits)."""
        index = self.size
        native = self.native
        native.token[index] = token
        native.pos[index] = pos
        native.n_seq_id[index] = 1
        native.seq_id[index][0] = seq_id
        native.logits[index] = 1 if output else 0
        self.size = native.n_tokens = index + 1
        return index

    @property
    def free(self) -> int:
        return self.capacity - self.size

    def close(self) -> None:
        if self.native is not None:
            llama_cpp.llama_batch_free(self.native)
            self.native = None


def l2_normalize(vector: np.ndarray) -> list[float]:
    norm = float(np.linalg.norm(vector))
    return [float(x) for x in (vector / norm if norm > 0 else vector)]
