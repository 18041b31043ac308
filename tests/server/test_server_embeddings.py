"""A long embedding input does not stall a concurrent stream beyond about one step.

The decode thread gives embeddings one chunk per step, sized to take about as long as the
generation step; before that change, one embedding call held every stream for its whole
duration (here: over a second). The test measures token arrival gaps of a running stream
before and during a long embedding request and compares them.
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import Launcher, ServerProcess

pytestmark = pytest.mark.llama

LONG_INPUT = [40 + (i * 7) % 200 for i in range(1500)]  # byte tokens of the tiny vocabulary


@pytest.fixture(scope="module")
def server(launch_server: Launcher, slow_model: Path) -> ServerProcess:
    return launch_server(
        "--model", str(slow_model), "--alias", "slow", "--parallel", "2", "--ctx-size", "8192"
    )


def embed(server: ServerProcess, tokens: list[int]) -> np.ndarray:
    response = httpx.post(
        f"{server.api_url}/embeddings",
        json={"model": "slow", "input": tokens, "encoding_format": "float"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    return np.array(response.json()["data"][0]["embedding"])


def test_a_long_embedding_does_not_stall_a_stream(server: ServerProcess) -> None:
    started = time.monotonic()
    alone = embed(server, LONG_INPUT)  # also warms up the embeddings context
    alone_seconds = time.monotonic() - started

    arrivals: list[float] = []
    stop = threading.Event()
    body = {"model": "slow", "prompt": "wake", "max_tokens": 3000, "stream": True}
    body["ignore_eos"] = True

    def stream() -> None:
        with httpx.stream("POST", f"{server.api_url}/completions", json=body, timeout=120) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    arrivals.append(time.monotonic())
                if stop.is_set():
                    return

    reader = threading.Thread(target=stream)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while len(arrivals) < 60:  # a steady stream first: its normal step time
            assert time.monotonic() < deadline, "the stream did not start"
            assert reader.is_alive(), "the stream ended"
            time.sleep(0.01)
        embedding_started = time.monotonic()
        during = embed(server, LONG_INPUT)
        embedding_ended = time.monotonic()
        deadline = time.monotonic() + 30
        while arrivals[-1] <= embedding_ended:  # a token after it, so the stream outlived it
            assert time.monotonic() < deadline, "no token after the embedding"
            assert reader.is_alive(), "the stream ended early"
            time.sleep(0.01)
    finally:
        stop.set()
        reader.join(timeout=60)

    before = [b - a for a, b in itertools.pairwise(arrivals) if b <= embedding_started]
    overlapping = [
        b - a
        for a, b in itertools.pairwise(arrivals)
        if b > embedding_started and a < embedding_ended
    ]
    step = statistics.median(before[10:])
    # An embedding decoded in one go would stall the stream for about `alone_seconds`; now
    # the worst gap is a step plus one chunk of about a step (generous slack for a busy CI
    # machine, still far below the stall it replaces).
    assert alone_seconds > 20 * step, "the input is too short to show a stall"
    assert len(overlapping) > 10, "the stream and the embedding did not overlap"
    assert max(overlapping) < max(8 * step, alone_seconds / 4), (
        f"stream stalled {max(overlapping):.3f}s (step {step:.4f}s, embedding {alone_seconds:.2f}s)"
    )
    # Decoded in chunks while streaming or at once while idle: the same mean-pooled vector.
    assert float(np.dot(alone, during)) > 0.9999
