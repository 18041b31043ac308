"""Downloads into the cache: resumable, sha256-checked and atomic, whatever the scheme.

A download lands in `<cache>/<key>-<name>.part` and is renamed into place only once
complete and (if a digest is known) verified, so a pod killed mid-download never leaves a
file that a later start would trust. A later start resumes the `.part` from its size, or
restarts it cleanly when the store cannot resume. Each scheme only knows how to open its
object at an offset (`Remote.open`); retries, progress, locking and checks live here.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

log = logging.getLogger("siesta_server.source")

CHUNK_BYTES = 1024 * 1024
PROGRESS_INTERVAL_SECONDS = 5.0
DOWNLOAD_ATTEMPTS = 5
CONNECT_TIMEOUT_SECONDS = 30.0
RETRY_PAUSE_SECONDS = 0.5
PARTIAL_SUFFIX = ".part"
LOCK_SUFFIX = ".lock"


class ModelSourceError(RuntimeError):
    """The model cannot be found, fetched or verified (fatal: retrying will not help)."""


class ChecksumMismatch(ModelSourceError):
    def __init__(self, path: Path, expected: str, actual: str) -> None:
        super().__init__(f"sha256 mismatch for {path}: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


class RestartDownload(Exception):
    """The partial file is not a prefix the store can continue: start again from byte 0."""


@dataclass
class Progress:
    """Where download progress goes: bytes as they arrive, and the transfer rate."""

    on_bytes: Callable[[int], None] | None = None
    on_rate: Callable[[float], None] | None = None
    on_size: Callable[[int], None] | None = None
    """Told the bytes a transfer is about to write, before it writes (room in the cache)."""

    def bytes(self, count: int) -> None:
        if self.on_bytes is not None:
            self.on_bytes(count)

    def size(self, remaining: int) -> None:
        if self.on_size is not None:
            self.on_size(remaining)

    def rate(self, bytes_per_second: float) -> None:
        if self.on_rate is not None:
            self.on_rate(bytes_per_second)


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


@dataclass
class Body:
    """An open object, positioned at `offset` (0 when the store ignored the request to resume)."""

    stream: Readable
    offset: int
    total: int | None  # the whole object's size, when known
    sha256: str | None = None  # a digest the store vouches for, when it gives one
    close: Callable[[], None] = field(default=lambda: None)


class Remote(Protocol):
    """One scheme's way to read an object from a byte offset.

    Raise ModelSourceError for what retrying cannot fix (no such object, access denied),
    RestartDownload when `offset` cannot be honoured, and OSError for anything transient.
    """

    def describe(self) -> str: ...

    def open(self, offset: int) -> Body: ...


def cache_key(uri: str, sha256: str | None) -> str:
    """Files are keyed by the expected digest, else by the URI itself."""
    return (sha256 or hashlib.sha256(uri.encode()).hexdigest())[:16]


def cache_file(cache_dir: Path, uri: str, sha256: str | None, name: str) -> Path:
    return cache_dir / f"{cache_key(uri, sha256)}-{name or 'model.gguf'}"


def partial_path(final: Path) -> Path:
    return final.with_name(final.name + PARTIAL_SUFFIX)


def download(
    remote: Remote, final: Path, sha256: str | None, progress: Progress | None = None
) -> Path:
    """Fetch `remote` into `final` unless it is already there; return `final`."""
    progress = progress or Progress()
    if final.is_file():
        log.info("model already in cache: %s", final)
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(final.with_name(final.name + LOCK_SUFFIX)):
        if final.is_file():  # another process finished it while we waited
            return final
        partial = partial_path(final)
        vouched = _transfer_with_retries(remote, partial, progress)
        expected = sha256 or vouched
        if expected:
            try:
                verify_sha256(partial, expected)
            except ModelSourceError:
                partial.unlink(missing_ok=True)  # a wrong file must not be resumed later
                raise
        os.replace(partial, final)
        _fsync_directory(final.parent)
    log.info("model downloaded to %s", final)
    return final


def _transfer_with_retries(remote: Remote, partial: Path, progress: Progress) -> str | None:
    last_error: Exception | None = None
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        try:
            return _transfer(remote, partial, progress)
        except RestartDownload as restart:
            log.warning("%s; restarting the download", restart)
            partial.unlink(missing_ok=True)
            last_error = restart
        except (OSError, _Incomplete) as error:
            last_error = error
            log.warning("download attempt %d failed: %s", attempt, error)
            time.sleep(RETRY_PAUSE_SECONDS * attempt if attempt < DOWNLOAD_ATTEMPTS else 0)
    raise ModelSourceError(
        f"cannot download {remote.describe()} after {DOWNLOAD_ATTEMPTS} attempts: {last_error}"
    )


class _Incomplete(Exception):
    """The store closed the connection before sending every byte."""


def _transfer(remote: Remote, partial: Path, progress: Progress) -> str | None:
    offset = partial.stat().st_size if partial.exists() else 0
    body = remote.open(offset)
    try:
        if offset and body.offset == 0:
            log.info("the store ignored the range request; restarting the download")
        elif body.offset:
            log.info("resuming download at byte %d", body.offset)
        if body.total is not None:
            progress.size(body.total - body.offset)
        with partial.open("ab" if body.offset else "wb") as out:
            if body.offset:
                out.truncate(body.offset)
            received = _copy(body, out, progress)
            out.flush()
            os.fsync(out.fileno())
    finally:
        body.close()
    if body.total is not None and received < body.total:
        raise _Incomplete(f"connection closed at byte {received} of {body.total}")
    return body.sha256


def _copy(body: Body, out: BinaryIO, progress: Progress) -> int:
    received = body.offset
    started = last_report = time.monotonic()
    reported = received
    while chunk := body.stream.read(CHUNK_BYTES):
        out.write(chunk)
        received += len(chunk)
        progress.bytes(len(chunk))
        now = time.monotonic()
        if now - last_report >= PROGRESS_INTERVAL_SECONDS:
            rate = (received - reported) / (now - last_report)
            progress.rate(rate)
            last_report, reported = now, received
            share = f" ({100 * received / body.total:.0f}%)" if body.total else ""
            log.info(
                "downloaded %s of %s%s at %s/s",
                _human(received),
                _human(body.total) if body.total else "?",
                share,
                _human(int(rate)),
            )
    elapsed = time.monotonic() - started
    if received > body.offset and elapsed > 0:
        progress.rate((received - body.offset) / elapsed)
    return received


def verify_sha256(path: Path, expected: str) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    if digest.hexdigest() != expected.lower():
        raise ChecksumMismatch(path, expected.lower(), digest.hexdigest())


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    # Two pods sharing a cache volume must not write the same .part file.
    with lock_path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _human(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"
