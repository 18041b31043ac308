"""Parallel ranged reads: one object over several connections, resumable part by part.

One connection gets only its own share of the path: stores and CDNs throttle each
connection, and one TCP stream rarely fills an instance's network. `transfer` splits the
object into parts and fetches `connections` of them at a time with Range requests, writing
each at its offset in the `.part` file (allocated to the object's size). A part is listed
in the `.parts` file once its bytes are on disk, so a pod killed mid-download resumes with
only the parts that were in flight lost.

The SHA-256 must be computed over the file in order. The hasher follows the contiguous
prefix of finished parts, reading each back (from the page cache) as soon as the parts
before it are done, so hashing overlaps the transfer instead of costing a second pass. A
resumed download rehashes the prefix it already has once: hashlib's state cannot be saved
beside the parts.

A store that ignores Range answers the first request with the whole object; that one
connection then carries the download, as with `connections: 1`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from siesta_server.source.cache import (
    CHUNK_BYTES,
    DOWNLOAD_ATTEMPTS,
    PROGRESS_INTERVAL_SECONDS,
    RETRY_PAUSE_SECONDS,
    Body,
    FetchSettings,
    ModelSourceError,
    Progress,
    Remote,
    RestartDownload,
    Transferred,
    human_bytes,
    parts_path,
    transfer_one_stream,
)

log = logging.getLogger("siesta_server.source")

Span = tuple[int, int]  # [start, end) in bytes


@dataclass
class PartsRecord:
    """The `.parts` file: the object's size, the spans on disk, a digest the store vouched."""

    size: int
    done: list[Span]
    vouched: str | None = None

    def save(self, path: Path) -> None:
        scratch = path.with_name(path.name + ".new")
        scratch.write_text(
            json.dumps({"size": self.size, "done": self.done, "sha256": self.vouched})
        )
        os.replace(scratch, path)  # never a half-written list

    @classmethod
    def load(cls, path: Path, partial_size: int) -> PartsRecord | None:
        """The record, or None when it is missing or does not describe the `.part`."""
        try:
            data = json.loads(path.read_text())
            size = int(data["size"])
            done = [(int(start), int(end)) for start, end in data["done"]]
            vouched = data.get("sha256")
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if size != partial_size or any(not 0 <= s < e <= size for s, e in done):
            return None
        return cls(size, merge(done), vouched if isinstance(vouched, str) else None)


def merge(spans: list[Span]) -> list[Span]:
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def gaps(done: list[Span], size: int) -> list[Span]:
    missing, position = [], 0
    for start, end in done:
        if start > position:
            missing.append((position, start))
        position = max(position, end)
    if position < size:
        missing.append((position, size))
    return missing


def split(spans: list[Span], part: int) -> list[Span]:
    return [(s, min(s + part, end)) for start, end in spans for s in range(start, end, part)]


def prefix_end(done: list[Span]) -> int:
    return done[0][1] if done and done[0][0] == 0 else 0


def transfer(
    remote: Remote, partial: Path, progress: Progress, settings: FetchSettings
) -> Transferred:
    parts_file = parts_path(partial)
    record = _resume_record(partial, parts_file)
    done = record.done if record else _one_stream_prefix(partial)
    first = prefix_end(done)
    if record is not None and first == record.size:  # killed after the last part
        parts_file.unlink()
        return Transferred(_hash_file(partial, record.size), record.vouched)
    probe_end = first + settings.min_part_bytes
    try:
        body = remote.open(first, probe_end if record is None else min(probe_end, record.size))
    except RestartDownload:
        if first:
            raise
        parts_file.unlink(missing_ok=True)
        return transfer_one_stream(remote, partial, progress)  # e.g. an empty object
    total = body.total
    if total is None or body.end is None or not body.covers(first, min(probe_end, total)):
        if body.offset not in (0, first):
            body.close()
            raise OSError(f"asked for byte {first}, the store sent from byte {body.offset}")
        log.info("the store does not serve byte ranges; downloading over one connection")
        parts_file.unlink(missing_ok=True)
        return transfer_one_stream(remote, partial, progress, body)
    if record is None:
        if first > total:
            body.close()
            raise RestartDownload(f"the partial file is longer than the object ({total} bytes)")
        record = PartsRecord(total, done, body.sha256)
        with partial.open("r+b" if partial.exists() else "wb") as handle:
            handle.truncate(total)  # sparse: parts land at their offsets
        record.save(parts_file)
    elif total != record.size:
        body.close()
        raise RestartDownload(f"the object's size changed from {record.size} to {total}")
    probe: Span = (first, body.end)
    missing = split(gaps(merge([*record.done, probe]), total), settings.part_bytes(total))
    have = sum(end - start for start, end in record.done)
    progress.size(total - have)
    if have:
        log.info("resuming download: %s of %s already here", human_bytes(have), human_bytes(total))
    return _Download(remote, partial, progress, settings, record).run(body, [probe, *missing])


def _resume_record(partial: Path, parts_file: Path) -> PartsRecord | None:
    if not partial.exists():
        parts_file.unlink(missing_ok=True)
        return None
    if not parts_file.exists():
        return None
    record = PartsRecord.load(parts_file, partial.stat().st_size)
    if record is None:
        log.warning("%s does not describe %s; starting the download again", parts_file, partial)
        partial.unlink()
        parts_file.unlink()
    return record


def _one_stream_prefix(partial: Path) -> list[Span]:
    """A `.part` without a parts list was written by one stream: its bytes are a prefix."""
    length = partial.stat().st_size if partial.exists() else 0
    return [(0, length)] if length else []


class _Download:
    """Parts fetched by a pool of connections; this thread records them and hashes."""

    def __init__(
        self,
        remote: Remote,
        partial: Path,
        progress: Progress,
        settings: FetchSettings,
        record: PartsRecord,
    ) -> None:
        self.remote = remote
        self.partial = partial
        self.progress = progress
        self.settings = settings
        self.record = record
        self.stop = threading.Event()
        self.received = 0
        self._lock = threading.Lock()
        self.digest = hashlib.sha256()
        self.hashed = 0
        # How far each part got: a retry asks only for the rest of its part.
        self.reached: dict[Span, int] = {}

    def run(self, probe: Body, parts: list[Span]) -> Transferred:
        fd = os.open(self.partial, os.O_RDWR)
        pool = ThreadPoolExecutor(self.settings.connections, thread_name_prefix="siesta-fetch")
        pending: dict[Future[None], Span] = {}
        try:
            pending[pool.submit(self._fetch, fd, parts[0], probe, 0.0)] = parts[0]
            for span in parts[1:]:
                pending[pool.submit(self._fetch, fd, span, None, 0.0)] = span
            self._record_until_done(fd, pending, pool)
            os.fsync(fd)
        finally:
            self.stop.set()
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True)
            if pending:  # a failure: the probe body may never have been read
                probe.close()
            os.close(fd)
        parts_path(self.partial).unlink(missing_ok=True)
        return Transferred(self.digest.hexdigest(), self.record.vouched)

    def _record_until_done(
        self, fd: int, pending: dict[Future[None], Span], pool: ThreadPoolExecutor
    ) -> None:
        tries: dict[Span, int] = {}
        started = last_report = time.monotonic()
        reported = 0
        while pending:
            finished, _ = wait(pending, PROGRESS_INTERVAL_SECONDS, FIRST_COMPLETED)
            newly_done: list[Span] = []
            for future in finished:
                span = pending.pop(future)
                error = future.exception()
                if error is None:
                    newly_done.append(span)
                    continue
                if not isinstance(error, OSError):
                    raise error  # fatal (no such object, denied) or a restart
                tries[span] = tries.get(span, 1) + 1
                if tries[span] > DOWNLOAD_ATTEMPTS:
                    raise ModelSourceError(
                        f"cannot download {self.remote.describe()}: bytes {span[0]}-"
                        f"{span[1] - 1} failed {DOWNLOAD_ATTEMPTS} times: {error}"
                    )
                log.warning("part %d-%d failed, retrying: %s", span[0], span[1] - 1, error)
                pause = RETRY_PAUSE_SECONDS * (tries[span] - 1)
                pending[pool.submit(self._fetch, fd, span, None, pause)] = span
            if newly_done:
                os.fsync(fd)  # on disk before the list says so
                self.record.done = merge([*self.record.done, *newly_done])
                self.record.save(parts_path(self.partial))
                self._hash_to(fd, prefix_end(self.record.done))
            now = time.monotonic()
            if now - last_report >= PROGRESS_INTERVAL_SECONDS:
                self._report(now - last_report, self.received - reported)
                last_report, reported = now, self.received
        if self.received and time.monotonic() > started:
            self.progress.rate(self.received / (time.monotonic() - started))

    def _fetch(self, fd: int, span: Span, body: Body | None, pause: float) -> None:
        start, end = self.reached.get(span, span[0]), span[1]
        if pause and self.stop.wait(pause):
            raise OSError("download stopped")
        body = body or self.remote.open(start, end)
        try:
            if not body.covers(start, end):
                raise OSError(
                    f"asked for bytes {start}-{end - 1}, the store sent {body.offset}-"
                    f"{body.end - 1 if body.end is not None else '?'}"
                )
            position = start
            while position < end:
                if self.stop.is_set():
                    raise OSError("download stopped")
                chunk = body.stream.read(min(CHUNK_BYTES, end - position))
                if not chunk:
                    raise OSError(f"connection closed at byte {position} of part {start}-{end}")
                os.pwrite(fd, chunk, position)
                position += len(chunk)
                self.reached[span] = position
                with self._lock:
                    self.received += len(chunk)
                    self.progress.bytes(len(chunk))
        finally:
            body.close()

    def _hash_to(self, fd: int, end: int) -> None:
        while self.hashed < end:
            chunk = os.pread(fd, min(CHUNK_BYTES, end - self.hashed), self.hashed)
            if not chunk:
                raise OSError(f"{self.partial} is shorter than its parts list says")
            self.digest.update(chunk)
            self.hashed += len(chunk)

    def _report(self, seconds: float, count: int) -> None:
        rate = count / seconds
        self.progress.rate(rate)
        have = sum(end - start for start, end in self.record.done)
        log.info(
            "downloaded %s of %s (%.0f%%) at %s/s over %d connections",
            human_bytes(have),
            human_bytes(self.record.size),
            100 * have / self.record.size,
            human_bytes(int(rate)),
            self.settings.connections,
        )


def _hash_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        left = size
        while left > 0 and (chunk := handle.read(min(CHUNK_BYTES, left))):
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()
