"""API keys: one per line in a file mounted from a Secret; re-read when it changes.

Clients send `Authorization: Bearer KEY` (what the openai package does with api_key=KEY).
A line is a key alone (every model, no rate limit: the flat file of old), or a key with
options that narrow it (docs/gateway.md, "Scoped keys"):

    sk-team-a  namespaces=team-a,shared  models=chat,team-a/embed  rate=60/m  name=team-a
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("siesta.gateway")

_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Rate:
    """`count` requests per `seconds`, as a token bucket that holds `count` at most."""

    count: int
    seconds: float

    @classmethod
    def parse(cls, text: str) -> Rate:
        count, _, unit = text.partition("/")
        if not count.isdigit() or int(count) < 1 or unit not in _PER:
            raise ValueError(f"rate {text!r} is not N/s, N/m or N/h with N >= 1")
        return cls(int(count), _PER[unit])


@dataclass(frozen=True)
class KeyScope:
    """What one key may reach: namespaces and model names (empty: all), and its rate."""

    secret: str
    name: str = ""  # shown in logs and metrics instead of the key
    namespaces: frozenset[str] = frozenset()
    models: frozenset[str] = frozenset()
    rate: Rate | None = None

    def reaches(self, namespace: str, names: tuple[str, ...]) -> bool:
        """A model in `namespace` known by `names` (alias, NAMESPACE/ALIAS, name, ...)."""
        if self.namespaces and namespace not in self.namespaces:
            return False
        return not self.models or any(name in self.models for name in names)


def parse_line(line: str) -> KeyScope:
    secret, *options = line.split()
    fields: dict[str, str] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key not in ("namespaces", "models", "rate", "name") or key in fields:
            raise ValueError(f"unknown or repeated option {option!r}")
        fields[key] = value

    def names(text: str) -> frozenset[str]:
        return frozenset(item for item in text.split(",") if item)

    return KeyScope(
        secret=secret,
        name=fields.get("name", ""),
        namespaces=names(fields.get("namespaces", "")),
        models=names(fields.get("models", "")),
        rate=Rate.parse(fields["rate"]) if "rate" in fields else None,
    )


def parse_keys(text: str) -> dict[str, KeyScope]:
    """Keys by secret. Blank lines and lines starting with # are skipped; a line with a bad
    option is left out (fail closed: that key gets 401) and logged by its line number."""
    keys: dict[str, KeyScope] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            scope = parse_line(line)
        except ValueError as error:
            log.error("API keys file, line %d: %s; that key is not accepted", number, error)
            continue
        keys[scope.secret] = scope
    return keys


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def find_key(token: str | None, keys: dict[str, KeyScope]) -> KeyScope | None:
    """Constant-time comparison against every key: timing says nothing about which matched."""
    if token is None:
        return None
    found: KeyScope | None = None
    for secret, scope in keys.items():
        if hmac.compare_digest(token.encode(), secret.encode()):
            found = scope
    return found


def key_matches(token: str | None, keys: dict[str, KeyScope]) -> bool:
    return find_key(token, keys) is not None


class KeyFile:
    """Keys from a file, reloaded when its modification time changes (Secret updates)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._keys: dict[str, KeyScope] = {}

    def keys(self) -> dict[str, KeyScope]:
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return self._keys  # keep the last good keys while a Secret update swaps files
        if mtime != self._mtime:
            self._keys = parse_keys(self.path.read_text())
            self._mtime = mtime
        return self._keys

    def find(self, authorization: str | None) -> KeyScope | None:
        return find_key(bearer_token(authorization), self.keys())

    def allows(self, authorization: str | None) -> bool:
        return self.find(authorization) is not None


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
