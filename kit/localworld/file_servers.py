"""File servers for download tests: Range requests, and a connection dropped mid-body.

- `ModelFileServer`: one payload on 127.0.0.1, in the test process, with injectable faults
  (the model server's source tests).
- Run as a script, a directory served inside a pod (the standard library only: the model
  server image has nothing else of ours); the first download of each file is dropped after
  `--cut-after` bytes, so a model's download meets a dying connection and has to resume:

      python3 file_servers.py --directory /srv --port 8000 --cut-after 131072

  Each GET is logged to stdout as one JSON line (path, Range header, bytes sent), so a test
  can read from the pod's log that the second request asked for the rest only.
"""

from __future__ import annotations

import argparse
import http.server
import json
import socket
import sys
import threading
import time
from pathlib import Path

CHUNK = 16 * 1024


def ranged_head(
    request: http.server.BaseHTTPRequestHandler, size: int, *, honour_ranges: bool = True
) -> tuple[int, int]:
    """Answer the head of a GET of `size` bytes: 206 for a `Range: bytes=N-` or `bytes=N-M`,
    else 200.

    Returns the body's span, start and end exclusive (the test servers of downloads share
    this); a range that starts at or past the end is answered 416 with an empty span."""
    header = request.headers.get("Range")
    start, end = 0, size
    if header and honour_ranges:
        first, _, last = header.removeprefix("bytes=").partition("-")
        start = int(first)
        end = min(int(last) + 1, size) if last else size
        if start >= end:
            request.send_response(416)
            request.send_header("Content-Range", f"bytes */{size}")
            request.send_header("Content-Length", "0")
            request.end_headers()
            return 0, 0
    request.send_response(206 if header and honour_ranges else 200)
    if header and honour_ranges:
        request.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
    request.send_header("Content-Length", str(end - start))
    request.send_header("Accept-Ranges", "bytes")
    request.end_headers()
    return start, end


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 (keep-alive, as clients expect of a file server), no access log on stderr."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *_: object) -> None:
        pass


def serve_in_thread(handler: type[http.server.BaseHTTPRequestHandler]) -> http.server.HTTPServer:
    """A server for `handler` on a free port of 127.0.0.1, served by a daemon thread;
    `shutdown()` then `server_close()` stop it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def send_body(
    request: http.server.BaseHTTPRequestHandler,
    body: bytes,
    *,
    cut_after: int | None = None,
    seconds_per_chunk: float = 0.0,
    bytes_per_second: float = 0.0,
) -> int:
    """Write `body` in chunks; with `cut_after`, stop there and drop the connection mid-body,
    as a dying proxy or node would; with `bytes_per_second`, no faster than that (one
    connection's share of a link, as a store that throttles each connection). Returns the
    bytes sent."""
    limit = len(body) if cut_after is None else min(cut_after, len(body))
    started = time.monotonic()
    for offset in range(0, limit, CHUNK):
        end = min(offset + CHUNK, limit)
        request.wfile.write(body[offset:end])
        request.wfile.flush()
        if seconds_per_chunk:
            time.sleep(seconds_per_chunk)
        if bytes_per_second:
            ahead = started + end / bytes_per_second - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    if cut_after is not None:
        request.close_connection = True
        request.connection.shutdown(socket.SHUT_RDWR)
    return limit


class ModelFileServer:
    """Serves one file over HTTP on 127.0.0.1, with Range support and injectable faults."""

    def __init__(
        self,
        payload: bytes,
        *,
        cut_first_requests: int = 0,
        cut_after_bytes: int = 0,
        honour_ranges: bool = True,
        seconds_per_chunk: float = 0.0,
        bytes_per_second: float = 0.0,
    ) -> None:
        self.payload = payload
        self.range_headers: list[str | None] = []
        self.sending = 0
        self.most_at_once = 0  # the most bodies being sent at the same time
        lock = threading.Lock()
        owner = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                if self.path != "/model.gguf":
                    self.send_error(404)
                    return
                with lock:  # parallel requests: count each exactly once
                    owner.range_headers.append(self.headers.get("Range"))
                    cut = len(owner.range_headers) <= cut_first_requests
                start, end = ranged_head(self, len(owner.payload), honour_ranges=honour_ranges)
                with lock:
                    owner.sending += 1
                    owner.most_at_once = max(owner.most_at_once, owner.sending)
                try:
                    send_body(
                        self,
                        owner.payload[start:end],
                        cut_after=cut_after_bytes if cut else None,
                        seconds_per_chunk=seconds_per_chunk,
                        bytes_per_second=bytes_per_second,
                    )
                finally:
                    with lock:
                        owner.sending -= 1

        self._server = serve_in_thread(Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/model.gguf"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def directory_handler(directory: Path, cut_after: int) -> type[http.server.BaseHTTPRequestHandler]:
    served: set[str] = set()
    lock = threading.Lock()

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            path = (directory / self.path.lstrip("/")).resolve()
            if directory not in path.parents or not path.is_file():
                self.send_error(404)
                return
            payload = path.read_bytes()
            with lock:
                cut = self.path not in served
                served.add(self.path)
            start, end = ranged_head(self, len(payload))
            # Logged before the connection drops, so that the client's retry comes after it.
            header = self.headers.get("Range")
            sent = min(cut_after, end - start) if cut else end - start
            print(json.dumps({"path": self.path, "range": header, "sent": sent}), flush=True)
            send_body(self, payload[start:end], cut_after=cut_after if cut else None)

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--directory", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--cut-after", type=int, required=True, help="bytes of the first GET")
    args = parser.parse_args(argv)
    server = http.server.ThreadingHTTPServer(
        ("0.0.0.0", args.port), directory_handler(args.directory.resolve(), args.cut_after)
    )
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
