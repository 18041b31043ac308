"""API keys on the server itself (--api-key-file): /v1 needs a key, probes and metrics do not."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import openai
import pytest

from siesta_server.auth import ApiKeys
from siesta_server.config import ConfigError, parse_config
from siesta_server.errors import APIError

if TYPE_CHECKING:
    from conftest import Launcher


@pytest.mark.llama
def test_requests_need_a_key_and_probes_do_not(
    launch_server: Launcher, tiny_model: Path, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# rotated 2026-11\nk-old\n\nk-new\n")
    server = launch_server(
        "--model", str(tiny_model), "--alias", "tiny", "--api-key-file", str(keys)
    )
    assert server.health().status_code == 200
    assert httpx.get(f"{server.url}/metrics", timeout=5).status_code == 200
    for key in ("k-old", "k-new"):
        client = openai.OpenAI(base_url=server.api_url, api_key=key, max_retries=0)
        assert [m.id for m in client.models.list().data] == ["tiny"]
        reply = client.completions.create(model="tiny", prompt="hi", max_tokens=2)
        assert reply.choices
    wrong = openai.OpenAI(base_url=server.api_url, api_key="k-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as raised:
        wrong.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}])
    assert raised.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    bare = httpx.post(f"{server.url}/v1/completions", json={"prompt": "hi"}, timeout=5)
    assert bare.status_code == 401
    assert bare.headers["WWW-Authenticate"] == "Bearer"
    assert server.metric('siesta_server_requests_total{endpoint="chat",status="401"}') == 1


def test_keys_are_reread_when_the_secret_changes(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("one\n")
    keys = ApiKeys(path)
    keys.check("Bearer one")
    path.write_text("two\n")
    os.utime(path, (1, 1))  # a new modification time, as a Secret update gives
    keys.check("Bearer two")
    with pytest.raises(APIError, match="invalid API key"):
        keys.check("Bearer one")
    with pytest.raises(APIError):
        keys.check("Basic one")
    with pytest.raises(APIError):
        keys.check(None)


def test_an_empty_or_missing_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        parse_config(["--model", "m.gguf", "--api-key-file", str(tmp_path / "nope")], environ={})
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    with pytest.raises(ValueError, match="no API keys"):
        ApiKeys(empty)
