"""Parallel ranged reads (source/ranged.py) against real HTTP servers on 127.0.0.1.

The download is cut, killed with SIGKILL mid-way and resumed, refused on a wrong digest,
and falls back to one stream where the server ignores Range.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from siesta_server.source import (
    ChecksumMismatch,
    FetchSettings,
    ModelSource,
    cache_path,
    fetch_model,
)
from siesta_server.source.ranged import PartsRecord, gaps, merge, split

PART = 64 * 1024
PAYLOAD = hashlib.sha256(b"seed").digest() * (2 * 1024 * 1024 // 32)  # 2 MiB, 32 parts
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()
FOUR = FetchSettings(connections=4, max_part_bytes=PART, min_part_bytes=PART)

FileServer = Callable[..., Any]  # the `file_server` fixture (localworld ModelFileServer)


def spans_asked(range_headers: list[str | None]) -> list[tuple[int, int]]:
    spans = []
    for header in range_headers:
        assert header is not None
        first, _, last = header.removeprefix("bytes=").partition("-")
        spans.append((int(first), min(int(last) + 1, len(PAYLOAD))))
    return spans


def test_spans_arithmetic() -> None:
    assert merge([(5, 9), (0, 3), (3, 5), (20, 30)]) == [(0, 9), (20, 30)]
    assert gaps([(0, 9), (20, 30)], 40) == [(9, 20), (30, 40)]
    assert gaps([], 10) == [(0, 10)]
    assert split([(9, 20)], 4) == [(9, 13), (13, 17), (17, 20)]


def test_parts_record_must_describe_the_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf.parts"
    PartsRecord(100, [(0, 10), (10, 20), (50, 60)], None).save(path)
    record = PartsRecord.load(path, 100)
    assert record is not None
    assert record.done == [(0, 20), (50, 60)]
    assert PartsRecord.load(path, 99) is None  # the .part is not the size it says
    path.write_text("{not json")
    assert PartsRecord.load(path, 100) is None


def test_parallel_fetch_is_correct_and_parallel(tmp_path: Path, file_server: FileServer) -> None:
    server = file_server(PAYLOAD, bytes_per_second=1024 * 1024)
    received: list[int] = []
    source = ModelSource(server.url, DIGEST, tmp_path, FOUR)
    path = fetch_model(source, on_bytes=received.append)
    assert path.read_bytes() == PAYLOAD
    assert sum(received) == len(PAYLOAD)
    spans = sorted(spans_asked(server.range_headers))
    assert spans == [(s, s + PART) for s in range(0, len(PAYLOAD), PART)]
    # At least four at once (the server counts a body until its thread is done with it,
    # so the next request of a connection can overlap the end of its last one).
    assert server.most_at_once >= 4
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, path.name + ".lock"])


def test_cut_connections_are_retried_from_where_they_stopped(
    tmp_path: Path, file_server: FileServer
) -> None:
    server = file_server(PAYLOAD, cut_first_requests=3, cut_after_bytes=PART // 2)
    path = fetch_model(ModelSource(server.url, DIGEST, tmp_path, FOUR))
    assert path.read_bytes() == PAYLOAD
    retries = [s for s in spans_asked(server.range_headers) if s[0] % PART]
    assert len(retries) == 3
    assert all(start % PART == PART // 2 for start, _ in retries)


FETCH_SCRIPT = """
import sys
from pathlib import Path
from siesta_server.source import FetchSettings, ModelSource, fetch_model
url, digest, cache = sys.argv[1:]
part = 64 * 1024
fetch_model(ModelSource(url, digest, Path(cache), FetchSettings(4, part, part)))
"""


def test_killed_download_resumes_from_its_parts(tmp_path: Path, file_server: FileServer) -> None:
    """SIGKILL mid-download (a pod killed on a node going away): the parts on disk stay."""
    slow = file_server(PAYLOAD, bytes_per_second=256 * 1024)  # about 2 s over 4 connections
    source = ModelSource(slow.url, DIGEST, tmp_path, FOUR)
    parts_file = cache_path(source).with_name(cache_path(source).name + ".parts")
    fetcher = subprocess.Popen([sys.executable, "-c", FETCH_SCRIPT, slow.url, DIGEST, tmp_path])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if sum(e - s for s, e in done_spans(parts_file)) >= 2 * PART:
                break
            assert fetcher.poll() is None, "the download ended before it could be killed"
            time.sleep(0.02)
        os.kill(fetcher.pid, signal.SIGKILL)
    finally:
        fetcher.wait(10)
    done = done_spans(parts_file)
    have = sum(end - start for start, end in done)
    assert 0 < have < len(PAYLOAD)

    fresh = file_server(PAYLOAD)  # the pod's next start: same cache, same digest
    path = fetch_model(ModelSource(fresh.url, DIGEST, tmp_path, FOUR))
    assert path.read_bytes() == PAYLOAD
    asked = spans_asked(fresh.range_headers)
    assert not any(s < e and ds < e and s < de for s, e in asked for ds, de in done)
    assert sum(e - s for s, e in asked) == len(PAYLOAD) - have
    assert not parts_file.exists()


def done_spans(parts_file: Path) -> list[tuple[int, int]]:
    try:
        return [(s, e) for s, e in json.loads(parts_file.read_text())["done"]]
    except (OSError, ValueError):
        return []  # between writes


def test_checksum_mismatch_is_refused_and_nothing_kept(
    tmp_path: Path, file_server: FileServer
) -> None:
    server = file_server(PAYLOAD)
    source = ModelSource(server.url, "e" * 64, tmp_path, FOUR)
    with pytest.raises(ChecksumMismatch, match="sha256 mismatch") as caught:
        fetch_model(source)
    assert caught.value.actual == DIGEST
    assert [p.name for p in tmp_path.iterdir()] == [cache_path(source).name + ".lock"]


def test_server_without_range_support_is_read_over_one_connection(
    tmp_path: Path, file_server: FileServer
) -> None:
    server = file_server(PAYLOAD, honour_ranges=False)
    path = fetch_model(ModelSource(server.url, DIGEST, tmp_path, FOUR))
    assert path.read_bytes() == PAYLOAD
    assert len(server.range_headers) == 1  # the first answer was the whole file: kept
