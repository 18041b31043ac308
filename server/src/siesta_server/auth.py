"""Optional API keys on the server itself, for anyone who reaches a model pod directly.

The file holds one key per line (blank lines and # comments ignored), the same format as
the gateway's key file, and is re-read when it changes (a rotated Secret). Clients send
`Authorization: Bearer KEY`. /health and /metrics stay open for probes and Prometheus.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from siesta_server.errors import APIError


def parse_keys(text: str) -> frozenset[str]:
    return frozenset(
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    )


class ApiKeys:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._keys: frozenset[str] = frozenset()
        if not self.keys():
            raise ValueError(f"{path}: no API keys in the file")

    def keys(self) -> frozenset[str]:
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return self._keys  # keep the last good keys while a Secret update swaps files
        if mtime != self._mtime:
            self._keys = parse_keys(self.path.read_text())
            self._mtime = mtime
        return self._keys

    def check(self, authorization: str | None) -> None:
        """Raise a 401 in OpenAI's shape unless the header carries a known key."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        matched = False
        for key in self.keys():  # constant time over every key
            matched |= hmac.compare_digest(token.encode(), key.encode())
        if not matched:
            raise APIError(
                401,
                "Missing or invalid API key.",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
