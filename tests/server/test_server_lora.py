"""LoRA adapters: one base model, several fine-tunes, served side by side by one server.

Real inference: the tests write a random-weight base GGUF and random LoRA adapter GGUFs
(adapting Q, K, V, the output projection and the FFN, so even the KV cache of a sequence
depends on its adapter) and drive the server with the `openai` client.

Robustness of "concurrent output == single-request output": the weights are f32 and every
request is greedy, so the only thing that changes between the two runs is how sequences are
batched. llama.cpp's CPU matrix kernels compute each output row with the same accumulation
order whatever the batch size, and each sequence has its own KV buffer, so the logits of a
sequence do not depend on its neighbours; the comparison is exact, token for token.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import openai
import pytest

from localworld.file_servers import ModelFileServer
from localworld.tiny_gguf import write_tiny_llama, write_tiny_lora

if TYPE_CHECKING:
    from conftest import Launcher, ServerProcess

pytestmark = pytest.mark.llama

ADAPTERS = ("alpha", "beta", "gamma")
NAMES = ("tiny", *ADAPTERS)
PROMPTS = ("wake the model", "say one two three", "hello world")


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("loras")
    for seed, name in enumerate(ADAPTERS, start=1):
        write_tiny_lora(directory / f"{name}.gguf", seed=seed)
    return directory


@pytest.fixture(scope="module")
def gamma_over_http(lora_dir: Path) -> Iterator[ModelFileServer]:
    server = ModelFileServer((lora_dir / "gamma.gguf").read_bytes())
    yield server
    server.close()


@pytest.fixture(scope="module")
def server(
    launch_server: Launcher, tiny_model: Path, lora_dir: Path, gamma_over_http: ModelFileServer
) -> ServerProcess:
    return launch_server(
        "--model", str(tiny_model), "--alias", "tiny", "--parallel", "4", "--ctx-size", "2048",
        "--lora", f"alpha={lora_dir / 'alpha.gguf'}",
        "--lora", f"beta=file://{lora_dir / 'beta.gguf'}@1.0",
        "--lora", f"gamma={gamma_over_http.url}",
    )  # fmt: skip


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api_url, api_key="unused", max_retries=0)


def complete(client: openai.OpenAI, model: str, prompt: str, max_tokens: int = 24) -> str:
    response = client.completions.create(
        model=model,
        prompt=prompt,
        max_tokens=max_tokens,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert response.model == model
    return response.choices[0].text


def test_the_openai_client_sees_the_base_and_every_adapter(client: openai.OpenAI) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == list(NAMES)
    assert all(getattr(m, "parent", None) == "tiny" for m in models[1:])


def test_greedy_output_differs_per_adapter(client: openai.OpenAI) -> None:
    outputs = {name: complete(client, name, PROMPTS[0]) for name in NAMES}
    assert len(set(outputs.values())) == len(NAMES), outputs


def test_concurrent_requests_over_adapters_equal_single_requests(
    client: openai.OpenAI, server: ServerProcess
) -> None:
    cases = [(name, prompt) for prompt in PROMPTS for name in NAMES]  # 12 requests, 4 slots
    # One at a time first: nothing shares a batch, and slots are reused across adapters.
    alone = {case: complete(client, *case) for case in cases}
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        together = dict(
            zip(cases, pool.map(lambda case: complete(client, *case), cases), strict=False)
        )
    assert together == alone


def test_sequences_of_one_adapter_share_a_decode_while_others_run(
    client: openai.OpenAI, server: ServerProcess
) -> None:
    """8 requests over 2 adapters in 4 slots: one llama_decode per adapter and step."""
    cases = [name for name in ("alpha", "beta") for _ in range(4)]
    decodes_before = server.metric("llamacpp:n_decode_total")
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        list(pool.map(lambda name: complete(client, name, "hello", max_tokens=32), cases))
    decodes = server.metric("llamacpp:n_decode_total") - decodes_before
    # One decode per sequence and token would be 8 * 32; grouping by adapter halves that.
    assert decodes < 0.75 * len(cases) * 32


def test_streams_carry_the_adapter_name(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="beta",
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=4,
        temperature=0,
        stream=True,
    )
    assert {chunk.model for chunk in stream} == {"beta"}


def test_embeddings_use_the_adapter(server: ServerProcess) -> None:
    def embed(model: str) -> np.ndarray:
        response = httpx.post(
            f"{server.api_url}/embeddings",
            json={"model": model, "input": "hello world", "encoding_format": "float"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert response.json()["model"] == model
        return np.array(response.json()["data"][0]["embedding"])

    base, alpha = embed("tiny"), embed("alpha")
    assert float(np.dot(base, alpha)) < 0.999
    assert float(np.dot(alpha, embed("alpha"))) > 0.99999


def test_unknown_model_names_are_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.completions.create(model="delta", prompt="x", max_tokens=1)
    assert raised.value.code == "model_not_found"
    assert "'alpha'" in raised.value.message


def test_metrics_count_requests_and_tokens_per_adapter(
    client: openai.OpenAI, server: ServerProcess
) -> None:
    def value(name: str, **labels: str) -> float:
        text = httpx.get(f"{server.url}/metrics", timeout=5).text
        selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        match = re.search(rf"^{name}\{{{selector}\}} (\S+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    before = value("siesta_server_adapter_requests_total", adapter="gamma")
    tokens_before = value("siesta_server_adapter_tokens_total", adapter="gamma", kind="predicted")
    complete(client, "gamma", "hello", max_tokens=5)
    assert value("siesta_server_adapter_requests_total", adapter="gamma") == before + 1
    tokens = value("siesta_server_adapter_tokens_total", adapter="gamma", kind="predicted")
    assert tokens == tokens_before + 5
    assert value("siesta_server_adapter_requests_total", adapter="tiny") > 0


@pytest.mark.parametrize("kind", ["not-a-lora", "wrong-base-shape"])
def test_a_bad_adapter_file_is_a_clear_fatal_error(
    launch_server: Launcher, tiny_model: Path, tmp_path: Path, kind: str
) -> None:
    if kind == "not-a-lora":
        bad = write_tiny_llama(tmp_path / "model-not-adapter.gguf")
    else:
        bad = write_tiny_lora(tmp_path / "for-another-base.gguf", n_embd=32)
    termination_log = tmp_path / "termination-log"
    server = launch_server(
        "--model", str(tiny_model), "--lora", f"broken={bad}", wait=False,
        env={"SIESTA_TERMINATION_LOG": str(termination_log)},
    )  # fmt: skip
    try:
        code = server.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server kept running with a bad adapter:\n{server.log()}")
    assert code == 1
    message = "LoRA adapter 'broken': llama.cpp cannot apply"
    assert message in server.log()
    assert message in termination_log.read_text()  # what `kubectl get md` shows
