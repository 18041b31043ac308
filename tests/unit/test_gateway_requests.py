"""What the gateway reads of a request body: `model` and `stream`, or a clear 400 (pure)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siesta.gateway.app import read_target, with_model


def test_model_and_stream() -> None:
    assert read_target(b'{"model": "m", "stream": true}') == ("m", True)
    assert read_target(b'{"model": "m", "stream": "yes"}') == ("m", False)
    assert read_target(b'{"model": "\\ud800"}') == ("\ud800", False)  # lone surrogate: 404 later


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
        (b'{"model": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", "nested too deeply"),
        (b"\xff\xfe", "JSON object"),
        (b"", "JSON object"),
        (b"[]", "string field 'model'"),
        (b'{"model": null}', "string field 'model'"),
        (b'"model"', "string field 'model'"),
    ],
)
def test_bad_bodies_are_400s(body: bytes, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        read_target(body)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)  # a busy CI box
@given(
    payload=st.dictionaries(st.sampled_from(["model", "stream", "messages", "x"]), JSON_VALUES),
    raw=st.binary(max_size=64),
)
def test_any_body_is_read_or_refused_with_a_400(payload: dict[str, object], raw: bytes) -> None:
    """No body makes the gateway fail otherwise (a 500): JSON objects of any shape, bytes."""
    for body in (json.dumps(payload).encode(), raw):
        try:
            alias, streaming = read_target(body)
        except ValueError:
            continue
        assert isinstance(alias, str)
        assert isinstance(streaming, bool)
        rewritten = json.loads(with_model(body, "served"))  # a NAMESPACE/NAME request
        assert rewritten["model"] == "served"
