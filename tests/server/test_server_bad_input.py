"""Bad requests get a 4xx in OpenAI's error shape, and the server keeps serving."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import ServerProcess

pytestmark = pytest.mark.llama

CHAT = "/v1/chat/completions"
TEXT = "/v1/completions"
EMBED = "/v1/embeddings"
OK_MESSAGES = [{"role": "user", "content": "hi"}]


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "tiny", "messages": OK_MESSAGES, "max_tokens": 2, **fields}


# (id, path, body: JSON-able value or raw bytes, expected status, expected param or None)
CASES: list[tuple[str, str, Any, int, str | None]] = [
    ("malformed-json", CHAT, b'{"messages": [', 400, None),
    ("not-utf8", CHAT, b"\xff\xfe{}", 400, None),
    ("body-is-a-list", CHAT, [1, 2, 3], 400, None),
    ("messages-missing", CHAT, {"model": "tiny"}, 400, "messages"),
    ("messages-empty", CHAT, chat(messages=[]), 400, "messages"),
    ("role-unknown", CHAT, chat(messages=[{"role": "wizard", "content": "x"}]), 400, None),
    ("content-wrong-type", CHAT, chat(messages=[{"role": "user", "content": 5}]), 400, None),
    ("temperature-wrong-type", CHAT, chat(temperature="hot"), 400, "temperature"),
    ("temperature-out-of-range", CHAT, chat(temperature=7), 400, "temperature"),
    ("max-tokens-zero", CHAT, chat(max_tokens=0), 400, "max_tokens"),
    ("max-tokens-negative", CHAT, chat(max_tokens=-5), 400, "max_tokens"),
    ("max-tokens-huge", CHAT, chat(max_tokens=2**40), 400, "max_tokens"),
    ("max-tokens-string", CHAT, chat(max_tokens="ten"), 400, "max_tokens"),
    ("top-p-out-of-range", CHAT, chat(top_p=2.0), 400, "top_p"),
    ("n-zero", CHAT, chat(n=0), 400, "n"),
    ("n-too-many", CHAT, chat(n=1000), 400, "n"),
    ("stop-wrong-type", CHAT, chat(stop=42), 400, None),
    ("stream-wrong-type", CHAT, chat(stream="yes"), 400, "stream"),
    ("seed-float", CHAT, chat(seed=1.5), 400, "seed"),
    ("logit-bias-not-a-token", CHAT, chat(logit_bias={"abc": 1}), 400, "logit_bias"),
    ("logit-bias-out-of-vocab", CHAT, chat(logit_bias={"999999": 1}), 400, "logit_bias"),
    ("grammar-invalid", CHAT, chat(grammar="root ::= ("), 400, "grammar"),
    (
        "grammar-and-format",
        CHAT,
        chat(grammar='root ::= "a"', response_format={"type": "json_object"}),
        400,
        "grammar",
    ),
    ("response-format-unknown", CHAT, chat(response_format={"type": "xml"}), 400, None),
    (
        "json-schema-missing",
        CHAT,
        chat(response_format={"type": "json_schema"}),
        400,
        "response_format",
    ),
    ("tools-unsupported", CHAT, chat(tools=[{"type": "function"}]), 400, "tools"),
    ("unknown-model", CHAT, chat(model="gpt-9"), 404, "model"),
    ("prompt-missing", TEXT, {"model": "tiny"}, 400, "prompt"),
    ("prompt-wrong-type", TEXT, {"prompt": {"a": 1}}, 400, None),
    ("prompt-invalid-token", TEXT, {"prompt": [1, 10**7]}, 400, "prompt"),
    ("prompt-too-long", TEXT, {"prompt": [300] * 5000}, 400, "prompt"),
    ("embedding-input-empty", EMBED, {"input": []}, 400, None),
    (
        "embedding-format",
        EMBED,
        {"input": "x", "encoding_format": "hex"},
        400,
        "encoding_format",
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_bad_request_is_rejected_cleanly(
    shared_server: ServerProcess, path: str, body: Any, status: int, param: str | None
) -> None:
    if isinstance(body, bytes):
        response = httpx.post(
            shared_server.url + path,
            content=body,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
    else:
        response = httpx.post(shared_server.url + path, json=body, timeout=30)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert str(error["param"]).startswith(param), error


def test_oversized_body_is_413(shared_server: ServerProcess) -> None:
    huge = b'{"prompt": "' + b"a" * (9 * 1024 * 1024) + b'"}'
    response = httpx.post(
        shared_server.url + TEXT,
        content=huge,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_unknown_route_and_wrong_method(shared_server: ServerProcess) -> None:
    assert httpx.get(shared_server.url + "/v1/nothing").status_code == 404
    wrong = httpx.get(shared_server.url + CHAT)
    assert wrong.status_code == 405
    assert "error" in wrong.json()


def test_server_still_serves_after_bad_input(shared_server: ServerProcess) -> None:
    assert shared_server.health().status_code == 200
    response = httpx.post(shared_server.url + CHAT, json=chat(), timeout=30)
    assert response.status_code == 200
    assert shared_server.process.poll() is None
