"""The model cache never fills its volume: eviction across model versions (real servers and
a real HTTP server), the free-space check, and the pure pieces behind them."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from localworld.tiny_gguf import write_tiny_llama
from siesta_server import eviction, mismatch
from siesta_server.source import ModelSource, cache_path
from support.specs import utc

if TYPE_CHECKING:
    from conftest import ServerProcess

Launcher = Callable[..., "ServerProcess"]
FileServer = Callable[..., Any]
MIB = 1024 * 1024


def entry(directory: Path, name: str, size: int, age: int, *side: str) -> Path:
    path = directory / name
    path.write_bytes(b"x" * size)
    for suffix in side:
        path.with_name(name + suffix).write_bytes(b"")
    stamp = 1_700_000_000 - age
    for file in directory.glob(name + "*"):
        os.utime(file, (stamp, stamp))
    return path


def test_evict_keeps_the_newest_other_versions(tmp_path: Path) -> None:
    current = entry(tmp_path, "cccc-m.gguf", 10, 0)
    newest = entry(tmp_path, "bbbb-m.gguf", 10, 100, ".lock")
    entry(tmp_path, "aaaa-m.gguf", 10, 200, ".lock", ".sha256-mismatch")
    entry(tmp_path, "dddd-m.gguf", 10, 300)
    entry(tmp_path, "eeee-m.gguf", 5, 50, ".part")  # an abandoned download counts too
    (tmp_path / "eeee-m.gguf").unlink()
    deleted = eviction.evict(tmp_path, current, keep=1)
    assert [e.path.name for e in deleted] == ["bbbb-m.gguf", "aaaa-m.gguf", "dddd-m.gguf"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cccc-m.gguf", "eeee-m.gguf.part"]
    assert newest.name not in os.listdir(tmp_path)


def test_evict_never_deletes_a_download_in_progress(tmp_path: Path) -> None:
    import fcntl

    current = entry(tmp_path, "cccc-m.gguf", 10, 0)
    busy = entry(tmp_path, "aaaa-m.gguf", 10, 200, ".lock")
    with busy.with_name(busy.name + ".lock").open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        assert eviction.evict(tmp_path, current, keep=0) == []
    assert busy.exists()


def test_make_room_deletes_kept_versions_oldest_first(tmp_path: Path) -> None:
    current = tmp_path / "cccc-m.gguf"
    entry(tmp_path, "aaaa-m.gguf", 10, 200)
    entry(tmp_path, "bbbb-m.gguf", 10, 100)
    free = {"bytes": 100 * MIB}

    def fake_free(_: Path) -> int:  # the filesystem's free bytes, as files go away
        return free["bytes"] + 1000 * MIB * (2 - len(list(tmp_path.glob("*-m.gguf"))))

    deleted = eviction.make_room(tmp_path, current, 900 * MIB, fake_free)
    assert [e.path.name for e in deleted] == ["aaaa-m.gguf"]
    with pytest.raises(eviction.CacheFullError, match=r"needs 5\.00 GiB, 2\.05 GiB free"):
        eviction.make_room(tmp_path, current, 5 * 1024 * MIB, fake_free)
    assert list(tmp_path.glob("*-m.gguf")) == []


def test_a_remembered_mismatch_expires(tmp_path: Path) -> None:
    at = utc("2026-11-25T09:00")
    path = tmp_path / "k-m.gguf"
    mismatch.remember(path, mismatch.Mismatch("http://h/m.gguf", "a" * 64, "b" * 64, at))
    assert mismatch.recall(path, "http://h/m.gguf", "A" * 64, at + timedelta(minutes=59))
    assert mismatch.recall(path, "http://h/m.gguf", "a" * 64, at + timedelta(hours=1)) is None
    assert mismatch.recall(path, "http://h/other.gguf", "a" * 64, at) is None
    assert mismatch.recall(path, "http://h/m.gguf", "c" * 64, at) is None


@pytest.mark.llama
def test_three_model_versions_keep_exactly_the_current_and_the_previous(
    launch_server: Launcher, tmp_path: Path, file_server: FileServer
) -> None:
    cache = tmp_path / "cache"
    sources = []
    for version in (1, 2, 3):
        model = write_tiny_llama(tmp_path / f"v{version}.gguf", seed=version)
        payload = model.read_bytes()
        digest = hashlib.sha256(payload).hexdigest()
        sources.append(ModelSource(file_server(payload).url, digest, cache))

    def serve(source: ModelSource, keep: int) -> set[str]:
        server = launch_server(
            "--model", source.uri, "--sha256", str(source.sha256),
            "--cache-dir", str(cache), "--cache-keep", str(keep),
        )  # fmt: skip
        assert server.stop() == 0
        return {p.name for p in cache.iterdir() if not p.name.endswith(".lock")}

    v1, v2, v3 = (cache_path(s).name for s in sources)
    assert serve(sources[0], keep=1) == {v1}
    assert serve(sources[1], keep=1) == {v1, v2}
    assert serve(sources[2], keep=1) == {v2, v3}  # v1, the oldest other version, is gone
    assert serve(sources[1], keep=1) == {v2, v3}  # a rollback to v2 keeps v3
    assert serve(sources[0], keep=0) == {v1}
