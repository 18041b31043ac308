"""Write small random-weight LLaMA models in GGUF format, for tests, demos and benchmarks.

The file is a real, loadable llama.cpp model: architecture ``llama``, an SPM ("llama")
tokenizer with ``<unk>``, ``<s>``, ``</s>``, the 256 byte-fallback tokens and a few word
pieces, and a ``tokenizer.chat_template``. The weights are random, so the text it generates
means nothing, but every token of it comes from real inference.

    from localworld.tiny_gguf import write_tiny_llama
    path = write_tiny_llama(tmp_path / "tiny.gguf")                     # ~0.5 MB, loads in ms
    big = write_tiny_llama(tmp_path / "bench.gguf", n_layer=8, n_embd=1024, n_ff=2816,
                           dtype="f16")                                 # compute-bound
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Literal

import numpy as np
from gguf import GGUFWriter, LlamaFileType, TokenType

# A ChatML-like template; rendered by Jinja2 in siesta-server and by llama.cpp's own
# template detection in llama-server (both recognise `<|im_start|>`).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

SPACE = "\u2581"  # SentencePiece's word-boundary marker

WORDS = [
    "the",
    "hello",
    "world",
    "model",
    "siesta",
    "sleep",
    "wake",
    "token",
    "say",
    "one",
    "two",
    "three",
    "yes",
    "no",
]


def tiny_vocab() -> tuple[list[str], list[float], list[int]]:
    """Return (pieces, scores, token types) of the tiny SPM vocabulary."""
    pieces: list[str] = ["<unk>", "<s>", "</s>"]
    types: list[int] = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    for byte in range(256):
        pieces.append(f"<0x{byte:02X}>")
        types.append(TokenType.BYTE)
    words: list[str] = [SPACE]
    for letter in string.ascii_lowercase:
        words += [letter, SPACE + letter]
    for word in WORDS:
        # SPM merges pairs whose concatenation is in the vocabulary: add every prefix.
        for end in range(2, len(word) + 1):
            words.append(SPACE + word[:end])
    seen = set(pieces)
    for word in words:
        if word not in seen:
            seen.add(word)
            pieces.append(word)
            types.append(TokenType.NORMAL)
    # Longer pieces score higher, so merges prefer whole words.
    scores = [
        -100.0 + len(piece) if kind == TokenType.NORMAL else 0.0
        for piece, kind in zip(pieces, types, strict=True)
    ]
    return pieces, scores, types


def write_tiny_llama(
    path: Path | str,
    *,
    n_layer: int = 2,
    n_embd: int = 64,
    n_ctx: int = 512,
    n_head: int = 4,
    n_head_kv: int | None = None,
    n_ff: int | None = None,
    dtype: Literal["f32", "f16"] = "f32",
    seed: int = 0,
    name: str = "tiny-llama",
) -> Path:
    """Write a random-weight LLaMA GGUF to ``path`` and return the path.

    ``n_ff`` defaults to ``2 * n_embd``; ``n_head_kv`` to ``n_head`` (no GQA). ``dtype`` sets
    the matrices' type (norms stay f32, as llama.cpp expects). The same arguments always
    produce the same bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_head_kv = n_head if n_head_kv is None else n_head_kv
    n_ff = 2 * n_embd if n_ff is None else n_ff
    if n_embd % n_head or n_head % n_head_kv:
        raise ValueError("n_embd must divide by n_head, and n_head by n_head_kv")
    head_dim = n_embd // n_head
    pieces, scores, types = tiny_vocab()
    n_vocab = len(pieces)
    rng = np.random.default_rng(seed)
    matrix_type = np.float16 if dtype == "f16" else np.float32

    def matrix(rows: int, cols: int) -> np.ndarray:
        # numpy (rows, cols) is ggml's ne = [cols, rows]: a cols -> rows projection.
        scale = 1.0 / np.sqrt(cols)
        return (rng.standard_normal((rows, cols), dtype=np.float32) * scale).astype(matrix_type)

    def norm() -> np.ndarray:
        return np.ones(n_embd, dtype=np.float32)

    writer = GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_file_type(LlamaFileType.MOSTLY_F16 if dtype == "f16" else LlamaFileType.ALL_F32)
    writer.add_vocab_size(n_vocab)
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(pieces)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_chat_template(CHAT_TEMPLATE)

    writer.add_tensor("token_embd.weight", matrix(n_vocab, n_embd))
    for layer in range(n_layer):
        prefix = f"blk.{layer}"
        writer.add_tensor(f"{prefix}.attn_norm.weight", norm())
        writer.add_tensor(f"{prefix}.attn_q.weight", matrix(n_embd, n_embd))
        writer.add_tensor(f"{prefix}.attn_k.weight", matrix(n_head_kv * head_dim, n_embd))
        writer.add_tensor(f"{prefix}.attn_v.weight", matrix(n_head_kv * head_dim, n_embd))
        writer.add_tensor(f"{prefix}.attn_output.weight", matrix(n_embd, n_embd))
        writer.add_tensor(f"{prefix}.ffn_norm.weight", norm())
        writer.add_tensor(f"{prefix}.ffn_gate.weight", matrix(n_ff, n_embd))
        writer.add_tensor(f"{prefix}.ffn_up.weight", matrix(n_ff, n_embd))
        writer.add_tensor(f"{prefix}.ffn_down.weight", matrix(n_embd, n_ff))
    writer.add_tensor("output_norm.weight", norm())
    writer.add_tensor("output.weight", matrix(n_vocab, n_embd))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


LORA_TARGETS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def write_tiny_lora(
    path: Path | str,
    *,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_head_kv: int | None = None,
    n_ff: int | None = None,
    rank: int = 4,
    alpha: float = 8.0,
    strength: float = 1.0,
    seed: int = 1,
    targets: tuple[str, ...] = LORA_TARGETS,
) -> Path:
    """Write a random LoRA adapter GGUF for a `write_tiny_llama` base of the same shape.

    The layout llama.cpp's `llama_adapter_lora_init` reads: `general.type = adapter`,
    `adapter.type = lora`, `adapter.lora.alpha`, and per adapted matrix W (n_out x n_in) the
    tensors `<W>.lora_a` (rank x n_in) and `<W>.lora_b` (n_out x rank). `strength` scales B,
    so how much the adapter changes the base output. K and V are adapted by default, so the
    KV cache of a sequence depends on its adapter.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_head_kv = n_head if n_head_kv is None else n_head_kv
    n_ff = 2 * n_embd if n_ff is None else n_ff
    kv_dim = n_head_kv * (n_embd // n_head)
    shapes = {  # (n_out, n_in) of each adaptable matrix
        "attn_q": (n_embd, n_embd),
        "attn_k": (kv_dim, n_embd),
        "attn_v": (kv_dim, n_embd),
        "attn_output": (n_embd, n_embd),
        "ffn_gate": (n_ff, n_embd),
        "ffn_up": (n_ff, n_embd),
        "ffn_down": (n_embd, n_ff),
    }
    rng = np.random.default_rng(seed)
    writer = GGUFWriter(str(path), "llama")
    writer.add_type("adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", alpha)
    for layer in range(n_layer):
        for target in targets:
            n_out, n_in = shapes[target]
            a = rng.standard_normal((rank, n_in), dtype=np.float32) / np.sqrt(n_in)
            b = rng.standard_normal((n_out, rank), dtype=np.float32) * strength / np.sqrt(rank)
            writer.add_tensor(f"blk.{layer}.{target}.weight.lora_a", a.astype(np.float32))
            writer.add_tensor(f"blk.{layer}.{target}.weight.lora_b", b.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
