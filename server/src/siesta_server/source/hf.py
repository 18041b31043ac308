"""hf://ORG/REPO/PATH/FILE.gguf[@REVISION]: a file of a Hugging Face model repository.

Fetched through the Hub's resolve URL, `{endpoint}/ORG/REPO/resolve/REVISION/PATH`, with
the same resumable download as any https:// file. The environment follows huggingface_hub:
HF_ENDPOINT (a mirror or a test server), HF_TOKEN or the file HF_TOKEN_PATH (a private or
gated repository). The token goes to the endpoint only, never along its redirect to the
CDN. The Hub vouches for the file's SHA-256 (X-Linked-Etag), so even without `--sha256`
a corrupted download is caught. Pin REVISION to a commit hash: the cache is keyed by the
URI, so a branch name that moves on keeps serving the file first downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from siesta_server.source.cache import ModelSourceError
from siesta_server.source.web import HttpObject

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_REVISION = "main"
ENDPOINT_ENV = "HF_ENDPOINT"
TOKEN_ENV = "HF_TOKEN"
TOKEN_PATH_ENV = "HF_TOKEN_PATH"
FORM = "hf://ORG/REPO/FILE.gguf or hf://ORG/REPO/FILE.gguf@REVISION"


@dataclass(frozen=True)
class HfFile:
    repo: str  # ORG/REPO
    path: str  # inside the repository, may contain folders
    revision: str


def parse(uri: str) -> HfFile:
    body = uri.split("://", 1)[1]
    revision = DEFAULT_REVISION
    if "@" in body:
        body, revision = body.rsplit("@", 1)
    parts = body.split("/")
    if len(parts) < 3 or not all(parts) or not revision:
        raise ModelSourceError(f"malformed Hugging Face URI {uri!r}: expected {FORM}")
    return HfFile(repo="/".join(parts[:2]), path="/".join(parts[2:]), revision=revision)


def file_name(uri: str) -> str:
    return PurePosixPath(parse(uri).path).name


def token(environ: Mapping[str, str]) -> str | None:
    if environ.get(TOKEN_ENV, "").strip():
        return environ[TOKEN_ENV].strip()
    path = environ.get(TOKEN_PATH_ENV, "").strip()
    if path:
        try:
            return Path(path).read_text().strip() or None
        except OSError as error:
            raise ModelSourceError(
                f"cannot read the token file {TOKEN_PATH_ENV}={path}: {error}"
            ) from None
    return None


def remote(uri: str, environ: Mapping[str, str] | None = None) -> HttpObject:
    environ = os.environ if environ is None else environ
    wanted = parse(uri)
    endpoint = (environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT).strip().rstrip("/")
    url = (
        f"{endpoint}/{quote(wanted.repo)}/resolve/{quote(wanted.revision, safe='')}/"
        f"{quote(wanted.path)}"
    )
    secret = token(environ)
    private = f"no such repository, or a private or gated one: set {TOKEN_ENV}"
    return HttpObject(
        url,
        secret_headers={"Authorization": f"Bearer {secret}"} if secret else {},
        shown_as=uri,
        digest_header="X-Linked-Etag",
        hints={
            401: "the token was refused" if secret else private,
            403: "the token has no access to this repository" if secret else private,
            404: f"no file {wanted.path!r} at revision {wanted.revision!r} of {wanted.repo}",
        },
    )
