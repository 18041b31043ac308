"""Keep the model cache from filling its volume.

The cache directory holds one file per downloaded model version (`<key>-<name>`, see
`source.cache_path`), with `.part` (download in progress), `.parts` (its parts done),
`.lock` and `.sha256-mismatch` files beside it. Before a download the server deletes the versions the current spec does
not use, oldest first, keeping the newest `--cache-keep` of them; once the download's size
is known it deletes kept versions too if that is what it takes to fit, and fails with the
numbers when even an empty cache would not hold the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from siesta_server import mismatch
from siesta_server.fit import gib
from siesta_server.source import LOCK_SUFFIX, PARTIAL_SUFFIX, PARTS_SUFFIX

log = logging.getLogger(__name__)

SIDE_SUFFIXES = (PARTIAL_SUFFIX, PARTS_SUFFIX, LOCK_SUFFIX, mismatch.SUFFIX)
# Room left over after a download (the filesystem's own needs, a log file or two).
HEADROOM_BYTES = 64 * 1024 * 1024


class CacheFullError(RuntimeError):
    """The download cannot fit in the cache volume even after evicting everything else."""


@dataclass(frozen=True)
class Entry:
    """One cached model version: its file and the bytes it (and its side files) take."""

    path: Path
    mtime: float
    size: int


def _base(path: Path) -> Path:
    for suffix in SIDE_SUFFIXES:
        if path.name.endswith(suffix):
            return path.with_name(path.name.removesuffix(suffix))
    return path


def entries(cache_dir: Path, current: Path) -> list[Entry]:
    """Every cached version except `current`, newest first (a `.part` alone counts too)."""
    groups: dict[Path, list[Path]] = {}
    with contextlib.suppress(FileNotFoundError):
        for path in cache_dir.iterdir():
            if path.is_file():
                groups.setdefault(_base(path), []).append(path)
    found = []
    for base, files in groups.items():
        if base == current:
            continue
        stats = [f.stat() for f in files if f.exists()]
        if not stats:
            continue
        mtime = max(s.st_mtime for s in stats)
        found.append(Entry(base, mtime, sum(s.st_size for s in stats)))
    return sorted(found, key=lambda e: (-e.mtime, e.path.name))


@contextlib.contextmanager
def _unless_in_use(base: Path) -> Iterator[bool]:
    """True while we hold the entry's download lock; False if another process holds it."""
    lock = base.with_name(base.name + LOCK_SUFFIX)
    if not lock.exists():
        yield True
        return
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def remove(entry: Entry) -> bool:
    """Delete a cached version and its side files; False if a download of it is running."""
    with _unless_in_use(entry.path) as free:
        if not free:
            log.info("cache: keeping %s, another process is downloading it", entry.path.name)
            return False
        for suffix in ("", PARTIAL_SUFFIX, mismatch.SUFFIX, LOCK_SUFFIX):
            entry.path.with_name(entry.path.name + suffix).unlink(missing_ok=True)
    log.info("cache: deleted %s (%s)", entry.path.name, gib(entry.size))
    return True


def evict(cache_dir: Path, current: Path, keep: int) -> list[Entry]:
    """Delete all but the newest `keep` versions other than `current`; returns the deleted."""
    deleted = []
    for entry in entries(cache_dir, current)[max(keep, 0) :]:
        if remove(entry):
            deleted.append(entry)
    return deleted


FreeBytes = Callable[[Path], int]


def free_bytes(directory: Path) -> int:
    return shutil.disk_usage(directory).free


def make_room(
    cache_dir: Path, current: Path, needed: int, free: FreeBytes = free_bytes
) -> list[Entry]:
    """Ensure `needed` more bytes fit, deleting other versions oldest first if it takes that.

    Raises CacheFullError with the numbers when the volume cannot hold the download.
    """
    wanted = needed + HEADROOM_BYTES
    deleted: list[Entry] = []
    for entry in reversed(entries(cache_dir, current)):  # oldest first
        if free(cache_dir) >= wanted:
            break
        if remove(entry):
            deleted.append(entry)
    available = free(cache_dir)
    if available < wanted:
        usage = shutil.disk_usage(cache_dir)
        raise CacheFullError(
            f"not enough disk space in {cache_dir} for the download: needs {gib(needed)}, "
            f"{gib(available)} free of {gib(usage.total)} after evicting the cache; "
            "raise cache.size (the cache volume) or free the volume"
        )
    return deleted
