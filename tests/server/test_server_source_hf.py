"""hf:// sources against a local server that answers like the Hub's resolve endpoint."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from localworld.hf_hub import FakeHub
from siesta_server.source import ModelSource, ModelSourceError, cache_path, fetch_model, hf

V1 = bytes(range(256)) * 1024  # 256 KiB
V2 = bytes(reversed(range(256))) * 1024
COMMIT_1 = "a" * 40
COMMIT_2 = "b" * 40


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    server = FakeHub()
    server.add("acme/public", {COMMIT_1: {"m.gguf": V1, "sub/dir/q4.gguf": V2}})
    server.add("acme/private", {COMMIT_1: {"m.gguf": V1}}, token="hf_secret")
    server.add("acme/moving", {COMMIT_2: {"m.gguf": V2}, COMMIT_1: {"m.gguf": V1}})
    for name in (hf.TOKEN_ENV, hf.TOKEN_PATH_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(hf.ENDPOINT_ENV, server.endpoint)
    yield server
    server.close()


def test_public_file_without_token(hub: FakeHub, tmp_path: Path) -> None:
    rates: list[float] = []
    source = ModelSource("hf://acme/public/m.gguf", None, tmp_path)
    path = fetch_model(source, on_rate=rates.append)
    assert path.read_bytes() == V1
    assert path == cache_path(source)
    assert path.name.endswith("-m.gguf")
    assert rates
    assert rates[-1] > 0
    resolve = hub.requests_to("/acme/public/resolve/main/m.gguf")
    assert len(resolve) == 1
    assert resolve[0].authorization is None


def test_file_in_a_folder(hub: FakeHub, tmp_path: Path) -> None:
    path = fetch_model(ModelSource("hf://acme/public/sub/dir/q4.gguf", None, tmp_path))
    assert path.read_bytes() == V2
    assert path.name.endswith("-q4.gguf")


def test_private_repository_with_token_never_sends_it_to_the_cdn(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(hf.TOKEN_ENV, "hf_secret")
    path = fetch_model(ModelSource("hf://acme/private/m.gguf", None, tmp_path))
    assert path.read_bytes() == V1
    assert [s.authorization for s in hub.requests_to("/acme/private/")] == ["Bearer hf_secret"]
    assert [s.authorization for s in hub.requests_to("/cdn/")] == [None]


def test_token_from_a_mounted_secret_file(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("hf_secret\n")
    monkeypatch.setenv(hf.TOKEN_PATH_ENV, str(token_file))
    path = fetch_model(ModelSource("hf://acme/private/m.gguf", None, tmp_path / "cache"))
    assert path.read_bytes() == V1


def test_private_repository_without_token_is_a_clear_fatal_error(
    hub: FakeHub, tmp_path: Path
) -> None:
    with pytest.raises(ModelSourceError, match=r"HTTP 401.*set HF_TOKEN"):
        fetch_model(ModelSource("hf://acme/private/m.gguf", None, tmp_path))
    assert len(hub.requests_to("/acme/private/")) == 1  # fatal: not retried
    assert not list(tmp_path.glob("*.gguf*.part"))
    assert not list(tmp_path.glob("*.gguf"))


def test_wrong_token_is_refused(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(hf.TOKEN_ENV, "hf_wrong")
    with pytest.raises(ModelSourceError, match=r"HTTP 401.*token was refused"):
        fetch_model(ModelSource("hf://acme/private/m.gguf", None, tmp_path))


def test_missing_file_and_revision(hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match=r"HTTP 404.*no file 'nope.gguf' at revision"):
        fetch_model(ModelSource("hf://acme/public/nope.gguf", None, tmp_path))
    with pytest.raises(ModelSourceError, match=r"HTTP 404.*revision 'c{40}'"):
        fetch_model(ModelSource(f"hf://acme/public/m.gguf@{'c' * 40}", None, tmp_path))


def test_revision_pinning(hub: FakeHub, tmp_path: Path) -> None:
    pinned = fetch_model(ModelSource(f"hf://acme/moving/m.gguf@{COMMIT_1}", None, tmp_path))
    latest = fetch_model(ModelSource("hf://acme/moving/m.gguf", None, tmp_path))
    assert pinned.read_bytes() == V1
    assert latest.read_bytes() == V2
    assert pinned != latest
    assert hub.requests_to(f"/acme/moving/resolve/{COMMIT_1}/m.gguf")


def test_hub_digest_catches_corruption_without_sha256(hub: FakeHub, tmp_path: Path) -> None:
    hub.corrupt.add(hashlib.sha256(V1).hexdigest())
    source = ModelSource("hf://acme/public/m.gguf", None, tmp_path)
    with pytest.raises(ModelSourceError, match="sha256 mismatch"):
        fetch_model(source)
    assert not cache_path(source).exists()
    assert not list(tmp_path.glob("*.part"))


def test_interrupted_download_resumes_through_the_redirect(hub: FakeHub, tmp_path: Path) -> None:
    source = ModelSource("hf://acme/public/m.gguf", hashlib.sha256(V1).hexdigest(), tmp_path)
    final = cache_path(source)
    final.parent.mkdir(parents=True, exist_ok=True)
    final.with_name(final.name + ".part").write_bytes(V1[:1000])
    received: list[int] = []
    assert fetch_model(source, on_bytes=received.append).read_bytes() == V1
    assert sum(received) == len(V1) - 1000
    # One ranged read from byte 1000 (the part fits in one request).
    ranges = [s.range or "" for s in hub.requests_to("/cdn/")]
    assert len(ranges) == 1
    assert ranges[0].startswith("bytes=1000-")


@pytest.mark.parametrize(
    "uri",
    ["hf://acme/m.gguf", "hf://acme//m.gguf", "hf://acme/public/m.gguf@", "hf:///public/m.gguf"],
)
def test_malformed_uris_fail_before_any_request(uri: str) -> None:
    with pytest.raises(ModelSourceError, match="malformed Hugging Face URI"):
        hf.parse(uri)


def test_resolve_url_and_revision_with_slashes() -> None:
    remote = hf.remote(
        "hf://acme/repo/dir/m.gguf@refs/pr/1", {hf.ENDPOINT_ENV: "https://mirror.example/"}
    )
    assert remote.url == "https://mirror.example/acme/repo/resolve/refs%2Fpr%2F1/dir/m.gguf"
    assert remote.secret_headers == {}
    assert hf.remote("hf://a/b/c.gguf", {}).url == "https://huggingface.co/a/b/resolve/main/c.gguf"
