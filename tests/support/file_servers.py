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
) -> int:
    """Answer the head of a GET of `size` bytes: 206 from a `Range: bytes=N-` start, else 200.

    Returns where the body starts (the test servers of downloads share this)."""
    header = request.headers.get("Range")
    start = int(header.removeprefix("bytes=").split("-")[0]) if header and honour_ranges else 0
    request.send_response(206 if start else 200)
    if start:
        request.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
    request.send_header("Content-Length", str(size - start))
    request.send_header("Accept-Ranges", "bytes")
    request.end_headers()
    return start


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
    ) -> None:
        self.payload = payload
        self.range_headers: list[str | None] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path != "/model.gguf":
                    self.send_error(404)
                    return
                owner.range_headers.append(self.headers.get("Range"))
                start = ranged_head(self, len(owner.payload), honour_ranges=honour_ranges)
                body = owner.payload[start:]
                cut = len(owner.range_headers) <= cut_first_requests
                limit = cut_after_bytes if cut else len(body)
                for offset in range(0, limit, CHUNK):
                    self.wfile.write(body[offset : min(offset + CHUNK, limit)])
                    self.wfile.flush()
                    if seconds_per_chunk:
                        time.sleep(seconds_per_chunk)
                if cut:  # drop the connection mid-body, as a dying proxy or pod would
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/model.gguf"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def directory_handler(directory: Path, cut_after: int) -> type[http.server.BaseHTTPRequestHandler]:
    served: set[str] = set()
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:
            pass

        def do_GET(self) -> None:
            path = (directory / self.path.lstrip("/")).resolve()
            if directory not in path.parents or not path.is_file():
                self.send_error(404)
                return
            payload = path.read_bytes()
            with lock:
                cut = self.path not in served
                served.add(self.path)
            start = ranged_head(self, len(payload))
            body = payload[start:]
            limit = min(cut_after, len(body)) if cut else len(body)
            for offset in range(0, limit, CHUNK):
                self.wfile.write(body[offset : min(offset + CHUNK, limit)])
            self.wfile.flush()
            header = self.headers.get("Range")
            print(json.dumps({"path": self.path, "range": header, "sent": limit}), flush=True)
            if cut:  # drop the connection mid-body, as a dying proxy or node would
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

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
