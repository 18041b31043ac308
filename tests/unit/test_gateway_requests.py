"""What the gateway reads of a request body: `model` and `stream`, or a clear 400 (pure)."""

from __future__ import annotations

import pytest

from siesta.gateway.app import read_target


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
