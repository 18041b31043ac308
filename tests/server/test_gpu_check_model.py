"""scripts/gpu_check.py writes a real, loadable Llama GGUF with Q4_K weights: here in a small
shape (the GPU check writes Llama-2-7B's), loaded by llama.cpp, read by the server's memory
check, generating."""

from __future__ import annotations

import sys
from pathlib import Path

import llama_cpp
import pytest

from siesta_server.fit import estimate
from siesta_server.gguf_header import read_header

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import gpu_check

pytestmark = pytest.mark.llama


def test_the_check_model_loads_and_generates(tmp_path: Path) -> None:
    shape = gpu_check.Shape(n_layer=2, n_embd=256, n_ff=512, n_head=4)
    path = gpu_check.write_model(tmp_path / "small.gguf", shape)
    header = read_header(path)
    assert header.architecture == "llama"
    assert header.arch_value("block_count") == 2
    # 0.5 MiB a token for 7B; here 2 layers x 256 wide x (K + V) x 2 bytes.
    assert estimate(header, 1024).kv_cache == 2 * 256 * 2 * 2 * 1024
    llm = llama_cpp.Llama(str(path), n_ctx=256, verbose=False)
    assert llm.n_vocab() == gpu_check.N_VOCAB
    out = llm.create_completion("w1 w2 w3", max_tokens=8, logit_bias={gpu_check.EOS_TOKEN: -100.0})
    assert out["usage"]["completion_tokens"] == 8


def test_the_7b_shape_is_llama_2_7b() -> None:
    tensors = gpu_check._tensors(gpu_check.LLAMA_2_7B)
    weights = sum(
        n for _, ne, kind in tensors if kind == gpu_check.GGML_Q4_K for n in [ne[0] * ne[1]]
    )
    assert 6.5e9 < weights < 6.8e9  # Llama-2-7B has 6.74 B parameters
