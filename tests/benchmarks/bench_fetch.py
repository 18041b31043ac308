"""Benchmark: a model download over 8 parallel ranged connections against one stream.

A loopback file server (localworld.file_servers, in its own process so that it does not
share the client's interpreter) throttles each connection to 8 MiB/s, as a store or CDN
limits each connection's share of the path. The same file is fetched into an empty cache
by siesta-server's source code with 1 connection, then with 8 (default parts, sha256
computed while writing, atomic rename), each run checked against the digest. Goal: 8
connections >= 4x one.

A script, not a test:

    .venv/bin/python tests/benchmarks/bench_fetch.py              # 128 MiB, about 20 s
    .venv/bin/python tests/benchmarks/bench_fetch.py --mib 64 --rate-mib 4
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from siesta_server.source import FetchSettings, ModelSource, fetch_model

SERVER = """
import hashlib, sys, time
from localworld.file_servers import ModelFileServer
size, rate = int(sys.argv[1]), float(sys.argv[2])
block = hashlib.sha256(b"bench").digest() * 32768  # 1 MiB
payload = block * (size // len(block))
server = ModelFileServer(payload, bytes_per_second=rate)
print(server.url, hashlib.sha256(payload).hexdigest(), flush=True)
time.sleep(3600)
"""

MIB = 1024 * 1024
KIT = Path(__file__).resolve().parents[2] / "kit"


def fetch_seconds(url: str, digest: str, connections: int) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-fetch-") as cache:
        source = ModelSource(url, digest, Path(cache), FetchSettings(connections=connections))
        started = time.monotonic()
        path = fetch_model(source)
        seconds = time.monotonic() - started
        assert path.stat().st_size > 0
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=128, help="file size in MiB (128)")
    parser.add_argument("--rate-mib", type=float, default=8.0, help="MiB/s per connection (8)")
    parser.add_argument("--connections", type=int, default=8, help="the parallel run's (8)")
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(args.mib * MIB), str(args.rate_mib * MIB)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(KIT)},
    )
    try:
        assert server.stdout is not None
        url, digest = server.stdout.readline().split()
        print(f"{args.mib} MiB from {url}, each connection throttled to {args.rate_mib} MiB/s")
        one = fetch_seconds(url, digest, 1)
        many = fetch_seconds(url, digest, args.connections)
    finally:
        server.terminate()
        server.wait(10)
    print(f"{'connections':>12} {'seconds':>8} {'MiB/s':>8}")
    for count, seconds in ((1, one), (args.connections, many)):
        print(f"{count:>12} {seconds:>8.2f} {args.mib / seconds:>8.1f}")
    ratio = one / many
    verdict = "meets" if ratio >= 4 else "misses"
    print(f"speed-up: {ratio:.1f}x at {args.connections} connections ({verdict} the 4x goal)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
