"""Remember a download whose sha256 did not match, so a restarting pod does not fetch it again.

Without this, a wrong `--sha256` (or a changed file at the source) turns a crash-looping pod
into a download loop: gigabytes on every restart. The marker sits beside the cache entry
(`<entry>.sha256-mismatch`); while it is younger than RETRY_AFTER a start with the same URI
and expected digest fails at once, with both digests. A new expected digest is a new cache
entry, so fixing the spec is never blocked.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

log = logging.getLogger(__name__)

RETRY_AFTER = timedelta(hours=1)
SUFFIX = ".sha256-mismatch"


@dataclass(frozen=True)
class Mismatch:
    uri: str
    expected: str
    actual: str
    at: datetime

    def message(self) -> str:
        retry = _stamp(self.at + RETRY_AFTER)
        return (
            f"sha256 mismatch for {self.uri}: expected {self.expected}, got {self.actual} "
            f"(downloaded {_stamp(self.at)}; not downloading again before {retry}); "
            "fix spec.model.sha256 or the file at its source"
        )


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def marker_path(entry: Path) -> Path:
    return entry.with_name(entry.name + SUFFIX)


def remember(entry: Path, mismatch: Mismatch) -> None:
    record = {
        "uri": mismatch.uri,
        "expected": mismatch.expected,
        "actual": mismatch.actual,
        "at": _stamp(mismatch.at),
    }
    try:
        marker_path(entry).write_text(json.dumps(record) + "\n", encoding="utf-8")
    except OSError as error:
        log.warning("cannot remember the sha256 mismatch: %s", error)


def recall(entry: Path, uri: str, expected: str, now: datetime) -> Mismatch | None:
    """The remembered mismatch for this URI and digest, while it still holds."""
    try:
        record = json.loads(marker_path(entry).read_text(encoding="utf-8"))
        found = Mismatch(
            uri=str(record["uri"]),
            expected=str(record["expected"]),
            actual=str(record["actual"]),
            at=datetime.fromisoformat(str(record["at"]).replace("Z", "+00:00")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if found.uri != uri or found.expected != expected.lower():
        return None
    if now - found.at >= RETRY_AFTER:
        return None
    return found
