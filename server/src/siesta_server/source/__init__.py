"""Model sources: turn a URI into a verified local file, one module per scheme.

    path, file://        local.py   used in place (pvc:// arrives here as the mounted path)
    http://, https://    web.py     downloaded with Range requests
    s3://BUCKET/KEY      s3.py      the AWS SDK's credential chain and endpoint settings
    hf://ORG/REPO/FILE   hf.py      Hugging Face resolve URLs, optional token and @revision

Remote objects are downloaded by cache.py (over several connections by ranged.py):
resumable, sha256-checked and renamed into place only when complete. Anything that fetches a file by URI (the model, LoRA adapters)
goes through `fetch`; anything that manages the cache asks `cache_path` which file a URI
occupies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from siesta_server.source import hf, local, s3, web
from siesta_server.source.cache import (
    DEFAULT_CONNECTIONS,
    LOCK_SUFFIX,
    PARTIAL_SUFFIX,
    PARTS_SUFFIX,
    ChecksumMismatch,
    FetchSettings,
    ModelSourceError,
    Progress,
    Remote,
    cache_file,
    download,
    partial_path,
    verify_sha256,
)

__all__ = [
    "DEFAULT_CONNECTIONS",
    "LOCK_SUFFIX",
    "PARTIAL_SUFFIX",
    "PARTS_SUFFIX",
    "REMOTE_SCHEMES",
    "ChecksumMismatch",
    "FetchSettings",
    "ModelSource",
    "ModelSourceError",
    "Progress",
    "cache_path",
    "check_source",
    "fetch",
    "fetch_model",
    "partial_path",
    "scheme_of",
    "verify_sha256",
]

ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class _Scheme:
    remote: Callable[[str], Remote]  # parses the URI (fails fast on a malformed one)
    file_name: Callable[[str], str]


_SCHEMES: dict[str, _Scheme] = {
    "http": _Scheme(web.HttpObject, web.file_name),
    "https": _Scheme(web.HttpObject, web.file_name),
    "s3": _Scheme(s3.parse, s3.file_name),
    "hf": _Scheme(hf.remote, hf.file_name),
}
REMOTE_SCHEMES = tuple(_SCHEMES)


def scheme_of(uri: str) -> str:
    """'' for a plain path, else the URI's scheme in lower case."""
    return urlparse(uri).scheme.lower() if "://" in uri else ""


@dataclass(frozen=True)
class ModelSource:
    uri: str
    sha256: str | None
    cache_dir: Path
    fetch: FetchSettings = field(default_factory=FetchSettings)

    @property
    def is_remote(self) -> bool:
        return scheme_of(self.uri) in REMOTE_SCHEMES


def _scheme(uri: str) -> _Scheme:
    scheme = scheme_of(uri)
    if scheme not in _SCHEMES:
        supported = ", ".join(f"{s}://" for s in ("file", *_SCHEMES))
        raise ModelSourceError(
            f"unsupported model URI scheme {scheme!r} in {uri!r} (use a path or {supported})"
        )
    return _SCHEMES[scheme]


def check_source(source: ModelSource) -> None:
    """Fail fast, before the HTTP server starts, on a source that can never work."""
    if scheme_of(source.uri) in ("", "file"):
        local.check(source.uri)
    else:
        _scheme(source.uri).remote(source.uri)


def cache_path(source: ModelSource) -> Path:
    """The file a remote source occupies in the cache once downloaded."""
    name = _scheme(source.uri).file_name(source.uri)
    return cache_file(source.cache_dir, source.uri, source.sha256, name)


def fetch_model(
    source: ModelSource,
    on_bytes: ProgressCallback | None = None,
    on_rate: Callable[[float], None] | None = None,
    on_size: Callable[[int], None] | None = None,
) -> Path:
    """A local, verified path to the model, downloading it into the cache if needed."""
    if scheme_of(source.uri) in ("", "file"):
        return local.fetch(source.uri, source.sha256)
    remote = _scheme(source.uri).remote(source.uri)
    progress = Progress(on_bytes, on_rate, on_size)
    return download(remote, cache_path(source), source.sha256, progress, source.fetch)


def fetch(
    uri: str,
    cache_dir: Path,
    sha256: str | None = None,
    progress: Progress | None = None,
    settings: FetchSettings | None = None,
) -> Path:
    """`fetch_model` for any file by URI (adapters, tokenizers, ...)."""
    source = ModelSource(uri, sha256, cache_dir, settings or FetchSettings())
    progress = progress or Progress()
    return fetch_model(source, progress.on_bytes, progress.on_rate)
