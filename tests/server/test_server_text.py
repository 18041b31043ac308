"""Token bytes -> text: UTF-8 split across tokens and stop strings split across tokens."""

from __future__ import annotations

from siesta_server.text import TextStream


def run(stream: TextStream, pieces: list[bytes]) -> str:
    return "".join(stream.push(piece) for piece in pieces) + stream.finish()


def test_multibyte_character_split_over_tokens() -> None:
    encoded = "héllo ✓".encode()
    pieces = [encoded[i : i + 1] for i in range(len(encoded))]
    assert run(TextStream([]), pieces) == "héllo ✓"


def test_invalid_utf8_becomes_replacement_character() -> None:
    assert run(TextStream([]), [b"ok", b"\xff", b"!"]) == "ok\ufffd!"


def test_stop_string_across_tokens_is_cut() -> None:
    stream = TextStream(["END"])
    out = run(stream, [b"abc E", b"N", b"D and more"])
    assert out == "abc "
    assert stream.stopped


def test_partial_stop_prefix_is_released_when_it_does_not_match() -> None:
    stream = TextStream(["STOP"])
    released = [stream.push(p) for p in [b"a S", b"T", b"x"]]
    assert released == ["a ", "", "STx"]
    assert not stream.stopped


def test_earliest_of_several_stop_strings_wins() -> None:
    stream = TextStream(["world", "lo"])
    assert run(stream, [b"hello world"]) == "hel"


def test_text_held_for_a_stop_prefix_is_flushed_at_the_end() -> None:
    assert run(TextStream(["</answer>"]), [b"42 </ans"]) == "42 </ans"
