"""JSON mode always yields JSON: random schemas x random prompts on the random-weight model.

The random weights make the model pick bytes no real model would (control characters,
stray UTF-8 continuation bytes, overlong sequences): exactly the worst case for a grammar.
Every answer must parse with `json.loads` and validate against its schema (`jsonschema`).
Generated schemas bound every string and array, so each answer is bounded and must end by
itself (`finish_reason == "stop"`), well inside `max_tokens`.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import httpx
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import Launcher, ServerProcess

pytestmark = pytest.mark.llama

# CI-sized and derandomized (the same 40 examples every run). To hunt for new cases, run
# with SIESTA_JSON_EXAMPLES=500: that many examples, freshly random.
HUNT = os.environ.get("SIESTA_JSON_EXAMPLES", "")
PROPERTY_SETTINGS = settings(
    max_examples=int(HUNT) if HUNT else 40,
    deadline=None,
    derandomize=not HUNT,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
MAX_TOKENS = 1500

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.text(max_size=6),
)
names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=6)


@st.composite
def string_schemas(draw: st.DrawFn) -> dict[str, Any]:
    high = draw(st.integers(0, 8))
    low = draw(st.integers(0, high))
    schema: dict[str, Any] = {"type": "string", "maxLength": high}
    if low:
        schema["minLength"] = low
    return schema


leaf_schemas = st.one_of(
    string_schemas(),
    st.sampled_from([{"type": "integer"}, {"type": "number"}, {"type": "boolean"}]),
    st.sampled_from([{"type": "null"}, {"type": ["boolean", "null"]}]),
    st.lists(json_scalars, min_size=1, max_size=4, unique_by=json.dumps).map(
        lambda values: {"enum": values}
    ),
    json_scalars.map(lambda value: {"const": value}),
)


@st.composite
def object_schemas(draw: st.DrawFn, children: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    properties = draw(st.dictionaries(names, children, min_size=0, max_size=4))
    required = [key for key in properties if draw(st.booleans())]
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    # Without properties only `additionalProperties: false` bounds the object ({} exactly);
    # otherwise it is any object, which is what json_object is tested for below.
    if not properties or draw(st.booleans()):
        schema["additionalProperties"] = False
    return schema


@st.composite
def array_schemas(draw: st.DrawFn, children: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    high = draw(st.integers(0, 3))
    low = draw(st.integers(0, high))
    return {"type": "array", "items": draw(children), "minItems": low, "maxItems": high}


schemas = st.recursive(
    leaf_schemas,
    lambda children: st.one_of(
        object_schemas(children),
        array_schemas(children),
        st.lists(children, min_size=2, max_size=3).map(lambda options: {"anyOf": options}),
    ),
    max_leaves=6,
)
prompts = st.text(max_size=40)


@pytest.fixture(scope="module")
def json_server(launch_server: Launcher, tiny_model: Path) -> ServerProcess:
    return launch_server(
        "--model", str(tiny_model), "--alias", "tiny", "--parallel", "2", "--ctx-size", "4096"
    )


def _chat(server: ServerProcess, prompt: str, response_format: dict[str, Any], seed: int) -> Any:
    response = httpx.post(
        f"{server.api_url}/chat/completions",
        json={
            "model": "tiny",
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": MAX_TOKENS,
            # Half greedy, half sampled: both paths must respect the grammar.
            "temperature": 0.0 if seed % 2 else 1.0,
            "seed": seed,
            "response_format": response_format,
        },
        timeout=120,
    )
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]


@PROPERTY_SETTINGS
@given(schema=schemas, prompt=prompts, seed=st.integers(0, 2**31))
def test_json_schema_answers_parse_and_validate(
    json_server: ServerProcess, schema: dict[str, Any], prompt: str, seed: int
) -> None:
    response_format = {"type": "json_schema", "json_schema": {"name": "t", "schema": schema}}
    choice = _chat(json_server, prompt, response_format, seed)
    content = choice["message"]["content"]
    assert choice["finish_reason"] == "stop", f"did not end by itself: {content!r}"
    value = json.loads(content)
    jsonschema.validate(value, schema)


def test_word_with_max_length_has_no_control_characters(json_server: ServerProcess) -> None:
    """The user's report: `{"word": string, maxLength 8}` returned raw control bytes."""
    schema = {
        "type": "object",
        "properties": {"word": {"type": "string", "maxLength": 8}},
        "required": ["word"],
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "w", "schema": schema}}
    for seed in range(6):
        choice = _chat(json_server, "give me a word", response_format, seed)
        value = json.loads(choice["message"]["content"])
        jsonschema.validate(value, schema)
        assert not any(ord(c) < 0x20 for c in value["word"])


def test_json_object_answers_are_objects(json_server: ServerProcess) -> None:
    """`json_object` has no schema to bound it: an answer that ends is a JSON object."""
    ended = 0
    for seed in range(8):
        choice = _chat(json_server, f"answer #{seed} in JSON", {"type": "json_object"}, seed)
        if choice["finish_reason"] != "stop":
            continue  # cut by max_tokens: truncated, as OpenAI's json_object may be
        ended += 1
        assert isinstance(json.loads(choice["message"]["content"]), dict)
    assert ended >= 4, "most json_object answers should end by themselves"


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "string", "pattern": "^a$"}, "unsupported JSON schema keyword(s) pattern"),
        ({"type": "string", "minLength": 3, "maxLength": 2}, "minLength 3 is larger"),
        ({"type": "date"}, "unknown type 'date'"),
        ({"type": "array", "items": {"$ref": "#/x"}}, "$.items: unsupported"),
        ({"enum": []}, "$.enum: must be a non-empty list"),
    ],
)
def test_unsupported_schemas_are_refused_clearly(
    json_server: ServerProcess, schema: dict[str, Any], message: str
) -> None:
    response = httpx.post(
        f"{json_server.api_url}/chat/completions",
        json={
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"schema": schema}},
        },
        timeout=30,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "response_format"
    assert message in error["message"]


def byte_token(value: int) -> str:
    return str(3 + value)  # tiny_gguf: <unk>, <s>, </s>, then the 256 byte tokens


@pytest.mark.parametrize(
    "favoured",
    [
        [0xC0, 0xAF],  # C0 AF: an overlong "/" (llama.cpp's grammar refuses it itself)
        [0xE0, 0x9F, 0xBF],  # E0 9F BF: U+07FF in three bytes, overlong (the guard's case)
        [0xF0, 0x8F, 0xBF],  # F0 8F BF BF: U+FFFF in four bytes, overlong (the guard's too)
        [0xED, 0xA0, 0x80],  # ED A0 80: a UTF-16 surrogate
    ],
)
def test_strings_are_valid_utf8_even_when_invalid_bytes_are_likeliest(
    json_server: ServerProcess, favoured: list[int]
) -> None:
    """The grammar checks code points; byte tokens that would decode to U+FFFD are masked."""
    schema = {"type": "string", "minLength": 6, "maxLength": 6}
    response = httpx.post(
        f"{json_server.api_url}/completions",
        json={
            "prompt": "x",
            "max_tokens": 200,
            "temperature": 0,
            "logit_bias": {byte_token(b): 30.0 for b in favoured},
            "response_format": {"type": "json_schema", "json_schema": {"schema": schema}},
        },
        timeout=60,
    )
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "stop"
    value = json.loads(choice["text"])
    jsonschema.validate(value, schema)
    assert "\ufffd" not in value
