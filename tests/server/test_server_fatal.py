"""Every fatal exit says why, in one line, in the termination-message file a kubelet reads
(and the operator shows): real server processes, real files, a real HTTP server."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from gguf import GGUFWriter

if TYPE_CHECKING:
    from conftest import ServerProcess

pytestmark = pytest.mark.llama

Launcher = Callable[..., "ServerProcess"]
FileServer = Callable[..., Any]


def run_to_exit(launch: Launcher, tmp_path: Path, *args: str) -> tuple[int, str]:
    message = tmp_path / "termination-log"
    message.write_text("")
    server = launch(*args, "--termination-log", str(message), wait=False)
    code = server.process.wait(120)
    text = message.read_text()
    assert text.endswith("\n"), f"not one line: {text!r}"
    assert text.count("\n") == 1, f"not one line: {text!r}"
    return code, text.strip()


def test_model_not_found(launch_server: Launcher, tmp_path: Path) -> None:
    code, message = run_to_exit(launch_server, tmp_path, "--model", str(tmp_path / "absent.gguf"))
    assert code == 1
    assert message == f"model file not found: {tmp_path / 'absent.gguf'}"


def test_download_http_status(
    launch_server: Launcher, tmp_path: Path, file_server: FileServer
) -> None:
    url = file_server(b"x").url.replace("model.gguf", "missing.gguf")
    code, message = run_to_exit(launch_server, tmp_path, "--model", url)
    assert code == 1
    assert message.startswith(f"cannot download {url}: HTTP 404 Not Found")


def test_sha256_mismatch_names_both_digests_and_is_not_fetched_again(
    launch_server: Launcher, tmp_path: Path, file_server: FileServer, tiny_model: Path
) -> None:
    payload = tiny_model.read_bytes()
    actual = hashlib.sha256(payload).hexdigest()
    source = file_server(payload)
    wrong = "0" * 64
    cache = tmp_path / "cache"
    args = ("--model", source.url, "--sha256", wrong, "--cache-dir", str(cache))
    code, message = run_to_exit(launch_server, tmp_path, *args)
    assert code == 1
    assert f"sha256 mismatch for {source.url}: expected {wrong}, got {actual}" in message
    assert len(source.range_headers) == 1
    # A restart (the kubelet's) fails at once with the same words, without a download.
    code, again = run_to_exit(launch_server, tmp_path, *args)
    assert code == 1
    assert f"expected {wrong}, got {actual}" in again
    assert "not downloading again before" in again
    assert len(source.range_headers) == 1
    # The right digest is a new cache entry: fixing the spec is never blocked.
    server = launch_server("--model", source.url, "--sha256", actual, "--cache-dir", str(cache))
    assert server.health().status_code == 200
    server.stop()


def test_not_a_gguf(launch_server: Launcher, tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"<html>Sign in to download</html>")
    code, message = run_to_exit(launch_server, tmp_path, "--model", str(junk))
    assert code == 1
    assert message == f"{junk} is not a GGUF model (starts with 3c68746d, not 'GGUF')"


def test_model_that_does_not_fit_in_memory(
    launch_server: Launcher, tmp_path: Path, tiny_model: Path
) -> None:
    """2**31 tokens of KV cache (about 1 TiB for the tiny model) fit on no test machine."""
    code, message = run_to_exit(
        launch_server, tmp_path, "--model", str(tiny_model), "--ctx-size", str(2**31)
    )
    assert code == 1
    assert message.startswith("model does not fit: needs 1024.00 GiB (weights 0.00 GiB + ")
    assert f"KV cache 1024.00 GiB for --ctx-size {2**31} over --parallel 4)" in message
    assert "free" in message
    assert "lower server.contextSize" in message


def test_unsupported_architecture(launch_server: Launcher, tmp_path: Path) -> None:
    path = tmp_path / "future.gguf"
    writer = GGUFWriter(str(path), "future-arch")
    writer.add_block_count(1)
    writer.add_embedding_length(8)
    writer.add_head_count(1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    code, message = run_to_exit(launch_server, tmp_path, "--model", str(path))
    assert code == 1
    assert message.startswith(f"unsupported model architecture 'future-arch' in {path}")


def test_usage_error(launch_server: Launcher, tmp_path: Path, tiny_model: Path) -> None:
    code, message = run_to_exit(
        launch_server, tmp_path, "--model", str(tiny_model), "--parallel", "0"
    )
    assert code == 2
    assert message == "--parallel must be at least 1"


def test_no_file_is_written_unless_asked(launch_server: Launcher, tmp_path: Path) -> None:
    """By hand (no kubelet file, no flag) the server never creates /dev/termination-log."""
    server = launch_server("--model", str(tmp_path / "absent.gguf"), wait=False)
    assert server.process.wait(60) == 1
    assert not Path("/dev/termination-log").exists()
