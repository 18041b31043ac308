"""Model source: turn `--model` (path, file://, http(s)://) into a verified local GGUF file.

Downloads land in `<cache>/<name>.part` and are renamed into place only once complete and
(if `--sha256` was given) verified, so a pod killed mid-download never leaves a file that a
later start would trust. A later start resumes the `.part` with an HTTP Range request, or
restarts it cleanly when the server cannot resume.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

log = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
PROGRESS_INTERVAL_SECONDS = 5.0
DOWNLOAD_ATTEMPTS = 5
CONNECT_TIMEOUT_SECONDS = 30.0
RETRY_PAUSE_SECONDS = 0.5

ProgressCallback = Callable[[int], None]


class ModelSourceError(RuntimeError):
    """The model cannot be found, fetched or verified."""


@dataclass(frozen=True)
class ModelSource:
    uri: str
    sha256: str | None
    cache_dir: Path

    @property
    def is_remote(self) -> bool:
        return urlparse(self.uri).scheme in {"http", "https"}


def check_source(source: ModelSource) -> None:
    """Fail fast on sources that can never work (before the HTTP server starts)."""
    scheme = urlparse(source.uri).scheme
    if source.is_remote:
        return
    if scheme not in {"", "file"}:
        raise ModelSourceError(f"unsupported model URI scheme {scheme!r} in {source.uri!r}")
    path = local_path(source.uri)
    if not path.is_file():
        raise ModelSourceError(f"model file not found: {path}")


def local_path(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    return Path(uri).expanduser()


def fetch_model(source: ModelSource, on_bytes: ProgressCallback | None = None) -> Path:
    """Return a local, verified path to the model, downloading it if needed."""
    if not source.is_remote:
        path = local_path(source.uri)
        if not path.is_file():
            raise ModelSourceError(f"model file not found: {path}")
        if source.sha256:
            verify_sha256(path, source.sha256)
        return path
    return download(source, on_bytes)


def cache_path(source: ModelSource) -> Path:
    """Where a URI is cached: keyed by the expected digest, else by the URI itself."""
    name = Path(unquote(urlparse(source.uri).path)).name or "model.gguf"
    key = (source.sha256 or hashlib.sha256(source.uri.encode()).hexdigest())[:16]
    return source.cache_dir / f"{key}-{name}"


def download(source: ModelSource, on_bytes: ProgressCallback | None = None) -> Path:
    final = cache_path(source)
    if final.is_file():
        log.info("model already in cache: %s", final)
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(final.with_name(final.name + ".lock")):
        if final.is_file():  # another process finished it while we waited
            return final
        partial = final.with_name(final.name + ".part")
        last_error: Exception | None = None
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            try:
                _transfer(source.uri, partial, on_bytes)
                break
            except (OSError, http.client.HTTPException, _Incomplete) as error:
                if isinstance(error, urllib.error.HTTPError) and error.code < 500:
                    raise ModelSourceError(
                        f"cannot download {source.uri}: HTTP {error.code} {error.reason}"
                    ) from None
                last_error = error
                log.warning("download attempt %d failed: %s", attempt, error)
                time.sleep(RETRY_PAUSE_SECONDS * attempt if attempt < DOWNLOAD_ATTEMPTS else 0)
        else:
            raise ModelSourceError(
                f"cannot download {source.uri} after {DOWNLOAD_ATTEMPTS} attempts: {last_error}"
            )
        if source.sha256:
            try:
                verify_sha256(partial, source.sha256)
            except ModelSourceError:
                partial.unlink(missing_ok=True)  # a wrong file must not be resumed later
                raise
        os.replace(partial, final)
        _fsync_directory(final.parent)
    log.info("model downloaded to %s", final)
    return final


class _Incomplete(Exception):
    """The server closed the connection before sending every byte."""


def _transfer(uri: str, partial: Path, on_bytes: ProgressCallback | None) -> None:
    offset = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(uri, headers={"User-Agent": "siesta-server"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=CONNECT_TIMEOUT_SECONDS)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # our partial file is not a prefix we can resume
            log.warning("server cannot resume at byte %d; restarting the download", offset)
            partial.unlink()
            raise _Incomplete("restarting") from None
        raise
    with response:
        resumed = offset > 0 and response.status == 206
        if offset and not resumed:
            log.info("server ignored the range request; restarting the download")
            offset = 0
        elif resumed:
            log.info("resuming download at byte %d", offset)
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        with partial.open("ab" if resumed else "wb") as out:
            received = _copy(response, out, offset, total, on_bytes)
            out.flush()
            os.fsync(out.fileno())
    if total is not None and received < total:
        raise _Incomplete(f"connection closed at byte {received} of {total}")


def _copy(
    response: BinaryIO,
    out: BinaryIO,
    offset: int,
    total: int | None,
    on_bytes: ProgressCallback | None,
) -> int:
    received = offset
    started = last_report = time.monotonic()
    while chunk := response.read(CHUNK_BYTES):
        out.write(chunk)
        received += len(chunk)
        if on_bytes is not None:
            on_bytes(len(chunk))
        now = time.monotonic()
        if now - last_report >= PROGRESS_INTERVAL_SECONDS:
            last_report = now
            rate = (received - offset) / max(now - started, 1e-9)
            share = f" ({100 * received / total:.0f}%)" if total else ""
            log.info(
                "downloaded %s of %s%s at %s/s",
                _human(received),
                _human(total) if total else "?",
                share,
                _human(int(rate)),
            )
    return received


def verify_sha256(path: Path, expected: str) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    if digest.hexdigest() != expected.lower():
        raise ModelSourceError(
            f"sha256 mismatch for {path}: expected {expected.lower()}, got {digest.hexdigest()}"
        )


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
