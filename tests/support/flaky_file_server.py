"""A file server that drops the first download of each file mid-body, then serves Range requests.

Runs inside a pod (the standard library only: the model server image has nothing else of
ours), so that a model's download meets a connection that dies and has to resume:

    python3 flaky_file_server.py --directory /srv --port 8000 --cut-after 131072

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
from pathlib import Path

CHUNK = 16 * 1024


def handler(directory: Path, cut_after: int) -> type[http.server.BaseHTTPRequestHandler]:
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
            header = self.headers.get("Range")
            start = int(header.removeprefix("bytes=").split("-")[0]) if header else 0
            with lock:
                cut = self.path not in served
                served.add(self.path)
            body = payload[start:]
            limit = min(cut_after, len(body)) if cut else len(body)
            self.send_response(206 if start else 200)
            if start:
                self.send_header(
                    "Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}"
                )
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            for offset in range(0, limit, CHUNK):
                self.wfile.write(body[offset : min(offset + CHUNK, limit)])
            self.wfile.flush()
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
        ("0.0.0.0", args.port), handler(args.directory.resolve(), args.cut_after)
    )
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
