"""Checks on request data that must hold before any of it reaches llama.cpp.

Each walk here is iterative and stops at its limit, so a hostile document (nested 100,000
deep, or with a million enum values) costs at most the limit's worth of work.
"""

from __future__ import annotations

import re
from typing import Any

from siesta_server.config import ServerConfig
from siesta_server.errors import APIError, bad_request
from siesta_server.schemas import MAX_STOP_STRINGS

_SURROGATE = re.compile("[\ud800-\udfff]")
# JSON text of a \uD800-\uDFFF escape: the only way a lone surrogate gets into a parsed body
# once the bytes are strict UTF-8.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_TOKEN_ID = re.compile(r"[0-9]{1,10}")


def find_surrogate(data: Any) -> str | None:
    """The path of the first string (key or value) holding a lone surrogate, if any."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return path or "body"
        elif isinstance(value, dict):
            for key, item in value.items():
                if _SURROGATE.search(key):
                    return f"{path}.{key.encode('utf-8', 'replace').decode()}".lstrip(".")
                stack.append((f"{path}.{key}".lstrip("."), item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
    return None


def check_schema(schema: Any, *, max_depth: int, max_enum: int, param: str) -> None:
    """Refuse a JSON schema nested deeper than `max_depth` or with too many enum values.

    Depth counts JSON objects and arrays of the schema document; enum values are counted
    over the whole schema (`enum` lists and `const`s), as OpenAI does.
    """
    enum_values = 0
    stack: list[tuple[Any, int]] = [(schema, 1)]
    while stack:
        value, depth = stack.pop()
        if not isinstance(value, dict | list):
            continue
        if depth > max_depth:
            raise APIError(
                400,
                f"the JSON schema is nested deeper than {max_depth} levels (--max-schema-depth)",
                param=param,
                code="schema_too_deep",
            )
        if isinstance(value, dict):
            enum = value.get("enum")
            if isinstance(enum, list):
                enum_values += len(enum)
            if "const" in value:
                enum_values += 1
            if enum_values > max_enum:
                raise APIError(
                    400,
                    f"the JSON schema has more than {max_enum} enum values (--max-schema-enum)",
                    param=param,
                    code="schema_too_large",
                )
            stack.extend((item, depth + 1) for item in value.values())
        else:
            stack.extend((item, depth + 1) for item in value)


def token_id(key: str, n_vocab: int) -> int:
    """A `logit_bias` key as a token id: ASCII digits only ("--5", "²" and "1e3" are not)."""
    text = key.strip()
    if not _TOKEN_ID.fullmatch(text) or int(text) >= n_vocab:
        shown = key if len(key) <= 32 else key[:32] + "..."
        raise bad_request(f"logit_bias: {shown!r} is not a token id", param="logit_bias")
    return int(text)


# Entries of `logit_bias` (llama.cpp copies them for every sequence).
MAX_LOGIT_BIAS = 1024


def check_counts(data: dict[str, Any], config: ServerConfig) -> None:
    """Refuse lists too long to validate, before pydantic does (it holds the GIL: 200,000
    messages take seconds in which the event loop cannot run, thread or not)."""
    messages = data.get("messages")
    if isinstance(messages, list):
        parts = sum(
            len(m["content"])
            for m in messages
            if isinstance(m, dict) and isinstance(m.get("content"), list)
        )
        _at_most(len(messages) + parts, config.max_messages, "messages", "--max-messages")
    prompt = data.get("prompt", data.get("input"))
    if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
        if "input" in data:
            _at_most(len(prompt), config.max_embedding_inputs, "input", "--max-embedding-inputs")
        else:
            _at_most(len(prompt), config.max_prompts, "prompt", "--max-prompts")
    logit_bias = data.get("logit_bias")
    if isinstance(logit_bias, dict) and len(logit_bias) > MAX_LOGIT_BIAS:
        raise bad_request(
            f"logit_bias has {len(logit_bias)} entries; the limit is {MAX_LOGIT_BIAS}",
            param="logit_bias",
        )
    for field, limit in (("stop", MAX_STOP_STRINGS), ("tools", 0)):
        value = data.get(field)
        if isinstance(value, list) and len(value) > limit:
            raise bad_request(
                f"{field}: at most {limit} entries"
                if limit
                else f"{field}: tool calling is not supported by this server",
                param=field,
            )


def _at_most(count: int, limit: int, param: str, flag: str) -> None:
    if count > limit:
        what = "messages and content parts" if param == "messages" else f"{param}s"
        raise APIError(
            400,
            f"{count} {what} in one request; the limit is {limit} ({flag})",
            param=param,
            code="too_many_inputs",
        )
