"""A model host on this machine, as a user's https:// model store: GGUF files over HTTP.

Serves one directory on the pod network's host address (10.244.0.1, see localnet.py), which
every pod of the local world reaches and which ends on this machine: the process kubelets'
pods through the veth pair, the real node's through its bridge. GETs honour `Range`
(`bytes=N-` and `bytes=N-M`), so the model server's parallel, resumable download runs as it
does against S3 or a CDN. Standard library only; one line per GET on stdout.

    PYTHONPATH=kit python -m localworld.model_host --directory DIR --port 8090
    # then spec.model.uri: http://10.244.0.1:8090/FILE.gguf
"""

from __future__ import annotations

import argparse
import http.server
import json
import sys
from pathlib import Path

from localworld.file_servers import QuietHandler, ranged_head
from localworld.localnet import HOST_ADDRESS, ensure_pod_network

CHUNK = 1 << 20


def directory_handler(directory: Path) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:
            path = (directory / self.path.lstrip("/")).resolve()
            if directory not in path.parents or not path.is_file():
                self.send_error(404)
                return
            start, end = ranged_head(self, path.stat().st_size)
            print(json.dumps({"path": self.path, "range": [start, end]}), flush=True)
            with path.open("rb") as body:
                body.seek(start)
                left = end - start
                while left and (chunk := body.read(min(CHUNK, left))):
                    self.wfile.write(chunk)
                    left -= len(chunk)

    return Handler


def url(port: int, name: str) -> str:
    return f"http://{HOST_ADDRESS}:{port}/{name}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--directory", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    ensure_pod_network()
    server = http.server.ThreadingHTTPServer(
        (HOST_ADDRESS, args.port), directory_handler(args.directory.resolve())
    )
    server.daemon_threads = True
    print(f"serving {args.directory} at http://{HOST_ADDRESS}:{args.port}/", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
