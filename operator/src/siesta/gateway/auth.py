"""Optional API keys: one per line in a file mounted from a Secret; re-read when it changes.

Clients send `Authorization: Bearer KEY` (what the openai package does with api_key=KEY).
"""

from __future__ import annotations

import hmac
from pathlib import Path


def parse_keys(text: str) -> frozenset[str]:
    """Non-empty lines, surrounding space stripped; lines starting with # are comments."""
    return frozenset(
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    )


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def key_matches(token: str | None, keys: frozenset[str]) -> bool:
    """Constant-time comparison against every key."""
    if token is None:
        return False
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(token.encode(), key.encode())
    return matched


class KeyFile:
    """Keys from a file, reloaded when its modification time changes (Secret updates)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._keys: frozenset[str] = frozenset()

    def keys(self) -> frozenset[str]:
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return self._keys  # keep the last good keys while a Secret update swaps files
        if mtime != self._mtime:
            self._keys = parse_keys(self.path.read_text())
            self._mtime = mtime
        return self._keys

    def allows(self, authorization: str | None) -> bool:
        return key_matches(bearer_token(authorization), self.keys())


class UpstreamKey:
    """The key the gateway sends to model servers that check keys themselves (first line)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._key: str | None = None

    def authorization(self) -> str | None:
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return self._authorization()
        if mtime != self._mtime:
            lines = [
                line.strip()
                for line in self.path.read_text().splitlines()
                if line.strip() and not line.strip().startswith("#")
            ]
            self._key = lines[0] if lines else None
            self._mtime = mtime
        return self._authorization()

    def _authorization(self) -> str | None:
        return f"Bearer {self._key}" if self._key else None
