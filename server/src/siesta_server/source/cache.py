"""Downloads into the cache: resumable, sha256-checked and atomic, whatever the scheme.

A download lands in `<cache>/<key>-<name>.part` and is renamed into place only once
complete and (if a digest is known) verified, so a pod killed mid-download never leaves a
file that a later start would trust. With several connections (ranged.py) the parts done
are listed in `<name>.parts` beside it; with one, the `.part` is a prefix of the object.
A later start resumes either, or restarts cleanly when the store cannot resume. The
SHA-256 is computed while the bytes arrive, so no second pass over the file is needed.
Each scheme only knows how to open a byte range of its object (`Remote.open`); retries,
progress, locking and checks live here.
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
from typing import Any, BinaryIO, Protocol

log = logging.getLogger("siesta_server.source")

CHUNK_BYTES = 1024 * 1024
PROGRESS_INTERVAL_SECONDS = 5.0
DOWNLOAD_ATTEMPTS = 5
CONNECT_TIMEOUT_SECONDS = 30.0
RETRY_PAUSE_SECONDS = 0.5
PARTIAL_SUFFIX = ".part"
PARTS_SUFFIX = ".parts"
LOCK_SUFFIX = ".lock"
DEFAULT_CONNECTIONS = 8
# A part is big enough that a request's round trip is small beside its transfer, and small
# enough that a dropped connection costs little: a killed pod loses at most one per connection.
MAX_PART_BYTES = 16 * 1024 * 1024
MIN_PART_BYTES = 1024 * 1024


@dataclass(frozen=True)
class FetchSettings:
    """How a download uses the network: parallel ranged reads, in parts of at most
    `max_part_bytes` (about four a connection for a small file, never under `min_part_bytes`)."""

    connections: int = DEFAULT_CONNECTIONS
    max_part_bytes: int = MAX_PART_BYTES
    min_part_bytes: int = MIN_PART_BYTES

    def part_bytes(self, size: int) -> int:
        return max(self.min_part_bytes, min(self.max_part_bytes, size // (4 * self.connections)))


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
    end: int | None = None  # where this body's bytes end (exclusive), when known

    def covers(self, start: int, end: int) -> bool:
        """The store sent exactly the range asked for (not the whole object instead)."""
        return self.offset == start and self.end == end


class Remote(Protocol):
    """One scheme's way to read an object's bytes from `offset` (to `end`, exclusive).

    Raise ModelSourceError for what retrying cannot fix (no such object, access denied),
    RestartDownload when `offset` cannot be honoured, and OSError for anything transient.
    """

    def describe(self) -> str: ...

    def open(self, offset: int, end: int | None = None) -> Body: ...


def cache_key(uri: str, sha256: str | None) -> str:
    """Files are keyed by the expected digest, else by the URI itself."""
    return (sha256 or hashlib.sha256(uri.encode()).hexdigest())[:16]


def cache_file(cache_dir: Path, uri: str, sha256: str | None, name: str) -> Path:
    return cache_dir / f"{cache_key(uri, sha256)}-{name or 'model.gguf'}"


def partial_path(final: Path) -> Path:
    return final.with_name(final.name + PARTIAL_SUFFIX)


def parts_path(partial: Path) -> Path:
    """The list of parts done, beside a `.part` written by several connections."""
    return partial.with_name(partial.name.removesuffix(PARTIAL_SUFFIX) + PARTS_SUFFIX)


@dataclass(frozen=True)
class Transferred:
    """What a finished transfer knows: the file's SHA-256, and any digest the store vouched."""

    sha256: str
    vouched: str | None


def download(
    remote: Remote,
    final: Path,
    sha256: str | None,
    progress: Progress | None = None,
    settings: FetchSettings | None = None,
) -> Path:
    """Fetch `remote` into `final` unless it is already there; return `final`."""
    progress = progress or Progress()
    settings = settings or FetchSettings()
    if final.is_file():
        log.info("model already in cache: %s", final)
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(final.with_name(final.name + LOCK_SUFFIX)):
        if final.is_file():  # another process finished it while we waited
            return final
        partial = partial_path(final)
        done = _transfer_with_retries(remote, partial, progress, settings)
        expected = (sha256 or done.vouched or "").lower()
        if expected and done.sha256 != expected:
            # A wrong file must not be resumed later.
            partial.unlink(missing_ok=True)
            parts_path(partial).unlink(missing_ok=True)
            raise ChecksumMismatch(partial, expected, done.sha256)
        os.replace(partial, final)
        _fsync_directory(final.parent)
    log.info("model downloaded to %s", final)
    return final


def _transfer_with_retries(
    remote: Remote, partial: Path, progress: Progress, settings: FetchSettings
) -> Transferred:
    from siesta_server.source import ranged  # it builds on this module's types

    last_error: Exception | None = None
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        try:
            if settings.connections > 1:
                return ranged.transfer(remote, partial, progress, settings)
            parts_path(partial).unlink(missing_ok=True)  # one stream writes a prefix
            return transfer_one_stream(remote, partial, progress)
        except RestartDownload as restart:
            log.warning("%s; restarting the download", restart)
            partial.unlink(missing_ok=True)
            parts_path(partial).unlink(missing_ok=True)
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


def transfer_one_stream(
    remote: Remote, partial: Path, progress: Progress, body: Body | None = None
) -> Transferred:
    """One connection from the end of the `.part` (or from `body`, already open) to the end
    of the object, hashing each chunk as it is written."""
    offset = partial.stat().st_size if partial.exists() else 0
    body = body or remote.open(offset)
    try:
        if offset and body.offset == 0:
            log.info("the store ignored the range request; restarting the download")
        elif body.offset:
            log.info("resuming download at byte %d", body.offset)
        if body.total is not None:
            progress.size(body.total - body.offset)
        with partial.open("r+b" if body.offset else "wb") as out:
            digest = hashlib.sha256()
            if body.offset:
                out.truncate(body.offset)
                _hash_prefix(out, body.offset, digest)  # what an earlier run wrote
                out.seek(body.offset)
            received = _copy(body, out, progress, digest)
            out.flush()
            os.fsync(out.fileno())
    finally:
        body.close()
    if body.total is not None and received < body.total:
        raise _Incomplete(f"connection closed at byte {received} of {body.total}")
    return Transferred(digest.hexdigest(), body.sha256)


def _hash_prefix(handle: BinaryIO, length: int, digest: Any) -> None:
    handle.seek(0)
    left = length
    while left > 0 and (chunk := handle.read(min(CHUNK_BYTES, left))):
        digest.update(chunk)
        left -= len(chunk)


def _copy(body: Body, out: BinaryIO, progress: Progress, digest: Any) -> int:
    received = body.offset
    started = last_report = time.monotonic()
    reported = received
    while chunk := body.stream.read(CHUNK_BYTES):
        out.write(chunk)
        digest.update(chunk)
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
                human_bytes(received),
                human_bytes(body.total) if body.total else "?",
                share,
                human_bytes(int(rate)),
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


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"
