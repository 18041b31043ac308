"""Two versions of one process, measured side by side: the baseline's sources from git.

The benchmarks of the request limits (bench_limits.py for siesta-server, bench_gateway_limits.py
for the gateway) run the code of a baseline commit next to this working tree's, alternate
rounds between them, and report requests per second and per CPU-second of the process
(the second is far less noisy on a busy machine).
"""

from __future__ import annotations

import io
import os
import statistics
import subprocess
import tarfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]

Request = tuple[str, Mapping[str, object]]  # (path, JSON body)


def sources_at(commit: str, subtree: str, scratch: Path) -> Path:
    """`subtree` (e.g. server/src) as it was at `commit`, extracted under `scratch`; the
    repository itself is not touched."""
    archive = subprocess.run(
        ["git", "archive", commit, subtree], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(scratch, filter="data")
    return scratch / subtree


def cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Round:
    per_second: float
    per_cpu_second: float  # requests per CPU-second of the process measured


def closed_loop(
    url: str,
    pid: int,
    requests: Sequence[Request],
    seconds: float,
    *,
    concurrency: int,
    headers: Mapping[str, str] | None = None,
) -> Round:
    """`concurrency` clients, each cycling through `requests` (from its own offset) for
    `seconds`, every answer a 200; the CPU counted is that of process `pid`."""
    done = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(offset: int) -> None:
        with httpx.Client(base_url=url, timeout=60, headers=dict(headers or {})) as http:
            index = offset
            while time.monotonic() < stop:
                path, body = requests[index % len(requests)]
                response = http.post(path, json=body)
                if response.status_code != 200:
                    raise SystemExit(f"{url}{path}: {response.status_code} {response.text[:300]}")
                index += 1
                with lock:
                    done[0] += 1

    started_at, cpu_before = time.monotonic(), cpu_seconds(pid)
    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu = max(cpu_seconds(pid) - cpu_before, 1e-9)
    return Round(done[0] / (time.monotonic() - started_at), done[0] / cpu)


def print_ratios(results: Mapping[str, list[Round]], *, footer: str) -> None:
    """The medians of "limits" over "before", round by round, then `footer`."""
    for label, attribute in (("throughput", "per_second"), ("per CPU-second", "per_cpu_second")):
        ratios = [
            getattr(n, attribute) / getattr(b, attribute)
            for n, b in zip(results["limits"], results["before"], strict=True)
        ]
        print(
            f"limits / before {label}: median {statistics.median(ratios):.2f}x "
            f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})"
        )
    print(f"{footer}, load average after {os.getloadavg()[0]:.1f}")
