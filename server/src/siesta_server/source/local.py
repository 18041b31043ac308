"""Files already on this machine: a path, file://, or a pvc:// claim the operator mounted."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from siesta_server.source.cache import ModelSourceError, verify_sha256


def local_path(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    return Path(uri).expanduser()


def check(uri: str) -> Path:
    path = local_path(uri)
    if not path.is_file():
        raise ModelSourceError(f"model file not found: {path}")
    return path


def fetch(uri: str, sha256: str | None) -> Path:
    """The file itself (never copied), verified when a digest is given."""
    path = check(uri)
    if sha256:
        verify_sha256(path, sha256)
    return path
