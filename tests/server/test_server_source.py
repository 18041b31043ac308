"""Model sources: local paths, file:// and downloads from a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from siesta_server.source import (
    FetchSettings,
    ModelSource,
    ModelSourceError,
    cache_path,
    check_source,
    fetch_model,
)

PAYLOAD = bytes(range(256)) * 2048  # 512 KiB
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()

ONE_STREAM = FetchSettings(connections=1)
FileServer = Callable[..., Any]  # the `file_server` fixture (conftest.ModelFileServer)


def test_local_path_and_file_uri(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(PAYLOAD)
    for uri in (str(model), model.as_uri()):
        source = ModelSource(uri, DIGEST, tmp_path / "cache")
        check_source(source)
        assert fetch_model(source) == model


def test_missing_local_file_fails_before_serving(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match="not found"):
        check_source(ModelSource(str(tmp_path / "nope.gguf"), None, tmp_path))


def test_unsupported_scheme(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match="unsupported"):
        check_source(ModelSource("ftp://host/m.gguf", None, tmp_path))


def test_local_checksum_mismatch(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(PAYLOAD)
    with pytest.raises(ModelSourceError, match="sha256 mismatch"):
        fetch_model(ModelSource(str(model), "0" * 64, tmp_path))


def test_download_with_good_checksum(tmp_path: Path, file_server: FileServer) -> None:
    server = file_server(PAYLOAD)
    downloaded: list[int] = []
    source = ModelSource(server.url, DIGEST, tmp_path)
    path = fetch_model(source, on_bytes=downloaded.append)
    assert path.read_bytes() == PAYLOAD
    assert sum(downloaded) == len(PAYLOAD)
    assert not list(tmp_path.glob("*.part"))
    # A second start uses the cache without asking the server again.
    assert fetch_model(source) == path
    assert len(server.range_headers) == 1


def test_download_with_bad_checksum_leaves_nothing_to_trust(
    tmp_path: Path, file_server: FileServer
) -> None:
    server = file_server(PAYLOAD)
    source = ModelSource(server.url, "f" * 64, tmp_path)
    with pytest.raises(ModelSourceError, match="sha256 mismatch"):
        fetch_model(source)
    assert not cache_path(source).exists()
    assert not list(tmp_path.glob("*.part"))


def test_interrupted_transfer_resumes_with_a_range_request(
    tmp_path: Path, file_server: FileServer
) -> None:
    server = file_server(PAYLOAD, cut_first_requests=1, cut_after_bytes=200 * 1024)
    path = fetch_model(ModelSource(server.url, DIGEST, tmp_path, ONE_STREAM))
    assert path.read_bytes() == PAYLOAD
    assert server.range_headers[0] is None
    assert server.range_headers[1] is not None
    assert server.range_headers[1].startswith("bytes=")
    assert int(server.range_headers[1].removeprefix("bytes=").rstrip("-")) > 0


def test_interrupted_part_resumes_where_it_stopped(tmp_path: Path, file_server: FileServer) -> None:
    server = file_server(PAYLOAD, cut_first_requests=1, cut_after_bytes=200 * 1024)
    path = fetch_model(ModelSource(server.url, DIGEST, tmp_path))
    assert path.read_bytes() == PAYLOAD
    # The whole file is one part here; its retry asks for the rest of it only.
    assert server.range_headers == [
        f"bytes=0-{1024 * 1024 - 1}",
        f"bytes=204800-{len(PAYLOAD) - 1}",
    ]


def test_partial_file_from_a_killed_pod_is_resumed(tmp_path: Path, file_server: FileServer) -> None:
    server = file_server(PAYLOAD)
    for settings, ranges in (
        (ONE_STREAM, ["bytes=1000-"]),
        (FetchSettings(), [f"bytes=1000-{1000 + 1024 * 1024 - 1}"]),
    ):
        server.range_headers.clear()
        source = ModelSource(server.url, DIGEST, tmp_path / str(settings.connections), settings)
        partial = cache_path(source).with_name(cache_path(source).name + ".part")
        partial.parent.mkdir(parents=True)
        partial.write_bytes(PAYLOAD[:1000])  # what one stream had written
        assert fetch_model(source).read_bytes() == PAYLOAD
        assert server.range_headers == ranges


def test_server_without_range_support_restarts_cleanly(
    tmp_path: Path, file_server: FileServer
) -> None:
    server = file_server(PAYLOAD, honour_ranges=False)
    source = ModelSource(server.url, DIGEST, tmp_path)
    partial = cache_path(source).with_name(cache_path(source).name + ".part")
    partial.write_bytes(b"garbage that is not a prefix")
    assert fetch_model(source).read_bytes() == PAYLOAD


def test_http_404_is_a_clear_error(tmp_path: Path, file_server: FileServer) -> None:
    server = file_server(PAYLOAD)
    source = ModelSource(server.url.replace("model.gguf", "other.gguf"), None, tmp_path)
    with pytest.raises(ModelSourceError, match="HTTP 404"):
        fetch_model(source)
