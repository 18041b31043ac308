"""The OpenAI-compatible API through the official `openai` client, against a real server."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

import httpx
import openai
import pytest

if TYPE_CHECKING:
    from conftest import ServerProcess

pytestmark = pytest.mark.llama

MESSAGES = [{"role": "user", "content": "say hello to the world"}]


@pytest.fixture(scope="module")
def client(shared_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=shared_server.api_url, api_key="unused", max_retries=0)


def test_health_and_models(shared_server: ServerProcess, client: openai.OpenAI) -> None:
    health = shared_server.health()
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny"]


def test_chat_completion(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="tiny",
        messages=MESSAGES,
        max_tokens=8,
        seed=1,  # type: ignore[arg-type]
    )
    choice = response.choices[0]
    assert response.object == "chat.completion"
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert choice.finish_reason in {"stop", "length"}
    assert response.usage is not None
    assert response.usage.prompt_tokens > 5
    assert 1 <= response.usage.completion_tokens <= 8
    assert response.usage.total_tokens == (
        response.usage.prompt_tokens + response.usage.completion_tokens
    )


def test_chat_completion_stream(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="tiny",
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length"
    assert all(f is None for f in finishes[:-1])
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens == 12
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text  # twelve random tokens decode to some text


def test_text_completion_and_stream(client: openai.OpenAI) -> None:
    response = client.completions.create(
        model="tiny", prompt="the model", max_tokens=6, extra_body={"ignore_eos": True}
    )
    assert response.object == "text_completion"
    assert response.choices[0].finish_reason == "length"
    assert response.usage is not None
    assert response.usage.completion_tokens == 6
    streamed = list(
        client.completions.create(
            model="tiny",
            prompt="the model",
            max_tokens=6,
            stream=True,
            extra_body={"ignore_eos": True},
        )
    )
    assert streamed[-1].choices[0].finish_reason == "length"


def test_token_prompt_and_several_choices(client: openai.OpenAI) -> None:
    response = client.completions.create(
        model="tiny", prompt=[1, 300, 301, 302], max_tokens=4, n=3, seed=7
    )
    assert sorted(c.index for c in response.choices) == [0, 1, 2]
    assert response.usage is not None
    assert response.usage.prompt_tokens == 4


def test_gbnf_grammar_constrains_output(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="tiny",
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=20,
        extra_body={"grammar": 'root ::= "yes" | "no"'},
    )
    assert response.choices[0].message.content in {"yes", "no"}


def test_json_schema_response_format(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "n": {"enum": [1, 2, 3]}},
        "required": ["ok", "n"],
        "additionalProperties": False,
    }
    response = client.chat.completions.create(
        model="tiny",
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=200,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema},
        },
    )
    content = response.choices[0].message.content
    assert content is not None
    value = json.loads(content)
    assert isinstance(value["ok"], bool)
    assert value["n"] in {1, 2, 3}


def test_sampling_parameters_are_accepted(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="tiny",
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=5,
        temperature=1.3,
        top_p=0.9,
        presence_penalty=0.5,
        frequency_penalty=0.5,
        seed=3,
        stop=["\n", "zzz"],
        logit_bias={"300": 5.0},
        extra_body={"top_k": 20, "min_p": 0.1, "repeat_penalty": 1.1},
    )
    assert response.choices[0].finish_reason in {"stop", "length"}


def test_temperature_zero_is_greedy_and_repeatable(client: openai.OpenAI) -> None:
    def greedy() -> str:
        response = client.completions.create(
            model="tiny", prompt="one two three", max_tokens=8, temperature=0
        )
        return response.choices[0].text

    assert greedy() == greedy()


def test_stop_string_ends_generation(client: openai.OpenAI) -> None:
    full = (
        client.completions.create(
            model="tiny",
            prompt="yes no yes",
            max_tokens=24,
            temperature=0,
            extra_body={"ignore_eos": True},
        )
        .choices[0]
        .text
    )
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    if not stop.strip():
        pytest.skip("the greedy text has no usable stop string")
    cut = client.completions.create(
        model="tiny",
        prompt="yes no yes",
        max_tokens=24,
        temperature=0,
        stop=[stop],
        extra_body={"ignore_eos": True},
    ).choices[0]
    assert cut.finish_reason == "stop"
    assert cut.text == full[: full.index(stop)]


def test_repeated_prefix_is_served_from_the_kv_cache(client: openai.OpenAI) -> None:
    history = [{"role": "user", "content": "wake the model " * 20}]
    first = client.chat.completions.create(
        model="tiny",
        messages=history,
        max_tokens=4,
        temperature=0,  # type: ignore[arg-type]
    )
    follow_up = [
        *history,
        {"role": "assistant", "content": first.choices[0].message.content or ""},
        {"role": "user", "content": "and again"},
    ]
    second = client.chat.completions.create(
        model="tiny",
        messages=follow_up,
        max_tokens=4,
        temperature=0,  # type: ignore[arg-type]
    )
    assert second.usage is not None
    details = second.usage.prompt_tokens_details
    assert details is not None
    assert details.cached_tokens is not None
    assert details.cached_tokens > 60  # the whole first turn was not decoded again


def test_embeddings(client: openai.OpenAI) -> None:
    response = client.embeddings.create(model="tiny", input=["hello world", "sleep"])
    assert [d.index for d in response.data] == [0, 1]
    for item in response.data:
        assert len(item.embedding) == 64
        assert math.isclose(math.sqrt(sum(x * x for x in item.embedding)), 1.0, rel_tol=1e-4)
    assert response.usage.prompt_tokens > 0


def test_prompt_longer_than_the_slot_context_is_rejected(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.completions.create(model="tiny", prompt=[300] * 600, max_tokens=4)
    assert raised.value.code == "context_length_exceeded"
    assert "context window" in raised.value.message


def test_generation_stops_at_the_context_limit(client: openai.OpenAI) -> None:
    slot_context = 2048 // 4
    response = client.completions.create(
        model="tiny",
        prompt=[300] * (slot_context - 10),
        max_tokens=100,
        extra_body={"ignore_eos": True},
    )
    assert response.choices[0].finish_reason == "length"
    assert response.usage is not None
    assert response.usage.prompt_tokens == slot_context - 10
    assert response.usage.completion_tokens == 11  # the last one fills the slot exactly


def test_metrics_use_llama_cpp_names(shared_server: ServerProcess, client: openai.OpenAI) -> None:
    before = shared_server.metric("llamacpp:tokens_predicted_total")
    client.completions.create(
        model="tiny", prompt="wake", max_tokens=5, extra_body={"ignore_eos": True}
    )
    text = httpx.get(f"{shared_server.url}/metrics").text
    for name in (
        "llamacpp:requests_processing",
        "llamacpp:requests_deferred",
        "llamacpp:prompt_tokens_total",
        "llamacpp:tokens_predicted_total",
        "llamacpp:prompt_seconds_total",
        "llamacpp:tokens_predicted_seconds_total",
        "llamacpp:n_decode_total",
        "llamacpp:n_busy_slots_per_decode",
        "llamacpp:prompt_tokens_seconds",
        "llamacpp:predicted_tokens_seconds",
        "siesta_server_model_load_seconds",
        "siesta_server_download_bytes_total",
        "siesta_server_last_request_timestamp_seconds",
        "siesta_server_time_to_first_token_seconds_bucket",
    ):
        assert f"\n{name}" in text, name
    assert "namespace=" not in text
    assert "pod=" not in text
    assert shared_server.metric("llamacpp:tokens_predicted_total") >= before + 5
    assert shared_server.metric("siesta_server_last_request_timestamp_seconds") > 0
