"""A local HTTP server that answers like the Hugging Face Hub's resolve endpoint.

`GET /ORG/REPO/resolve/REVISION/PATH` answers as the Hub does for an LFS file: 302 to a
CDN address (here on the same server, under /cdn/) with `X-Linked-Etag` (the file's
SHA-256), `X-Linked-Size` and `X-Repo-Commit`; a private repository without a valid
bearer token answers 401 (`X-Error-Code: RepoNotFound`, as the Hub hides private repos), a
missing file or revision 404 (`EntryNotFound` / `RevisionNotFound`). The CDN honours Range
requests. Every request's Authorization header is recorded per path.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from urllib.parse import unquote

from localworld.file_servers import QuietHandler, ranged_head, serve_in_thread


@dataclass
class HubRepo:
    files: dict[str, dict[str, bytes]]  # revision -> path -> content
    token: str | None = None  # set: a private repository
    branches: dict[str, str] = field(default_factory=dict)  # branch name -> revision


@dataclass
class Seen:
    path: str
    authorization: str | None
    range: str | None


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.blobs: dict[str, bytes] = {}
        self.seen: list[Seen] = []
        self.corrupt: set[str] = set()  # digests whose CDN bytes are damaged in transit
        hub = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                hub.seen.append(
                    Seen(self.path, self.headers.get("Authorization"), self.headers.get("Range"))
                )
                if self.path.startswith("/cdn/"):
                    self._cdn(self.path.removeprefix("/cdn/"))
                else:
                    self._resolve(unquote(self.path))

            def _error(self, status: int, code: str) -> None:
                body = f'{{"error":"{code}"}}'.encode()
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _resolve(self, path: str) -> None:
                org, name, resolve, rest = [*path.lstrip("/").split("/", 3), "", "", ""][:4]
                repo = hub.repos.get(f"{org}/{name}")
                if resolve != "resolve" or repo is None:
                    self._error(401, "RepoNotFound")
                    return
                if repo.token is not None and self.headers.get("Authorization") != (
                    f"Bearer {repo.token}"
                ):
                    self._error(401, "RepoNotFound")
                    return
                revision, _, file_path = rest.partition("/")
                revision = repo.branches.get(revision, revision)
                if revision not in repo.files:
                    self._error(404, "RevisionNotFound")
                    return
                content = repo.files[revision].get(file_path)
                if content is None:
                    self._error(404, "EntryNotFound")
                    return
                digest = hashlib.sha256(content).hexdigest()
                hub.blobs[digest] = content
                self.send_response(302)
                self.send_header("Location", f"/cdn/{digest}")
                self.send_header("X-Linked-Etag", f'"{digest}"')
                self.send_header("X-Linked-Size", str(len(content)))
                self.send_header("X-Repo-Commit", revision)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _cdn(self, digest: str) -> None:
                content = hub.blobs.get(digest)
                if content is None:
                    self._error(404, "NoSuchKey")
                    return
                if digest in hub.corrupt:
                    content = content[:-1] + bytes([content[-1] ^ 0xFF])
                start, end = ranged_head(self, len(content))
                self.wfile.write(content[start:end])

        self._server = serve_in_thread(Handler)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, repo: str, files: dict[str, dict[str, bytes]], token: str | None = None) -> None:
        self.repos[repo] = HubRepo(files, token, {"main": next(iter(files))})

    def requests_to(self, prefix: str) -> list[Seen]:
        return [seen for seen in self.seen if seen.path.startswith(prefix)]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
