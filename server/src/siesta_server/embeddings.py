"""Embeddings inside the decode loop, one bounded chunk per step, so streams never stall.

An embedding input of thousands of tokens decoded in one call would hold every streaming
slot for the whole call. Instead the decode thread gives embeddings one chunk per step,
sized so the chunk takes about as long as the generation step it follows (measured, not
guessed); with no generation running, chunks are as large as the batch allows. The chunks
of one input go through a separate embeddings context (its own KV cache, the same model
weights) and are mean-pooled here, over the last hidden state of every token: the same
vector llama.cpp's MEAN pooling gives for the input decoded at once.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from siesta_server.native import (
    Adapter,
    Batch,
    Context,
    Model,
    NativeError,
    create_context,
    l2_normalize,
)

# Chunk size while nothing is known about the speed of embeddings yet.
FIRST_CHUNK_TOKENS = 8
# Most a chunk size changes from one chunk to the next (it follows the measured times).
MAX_GROWTH = 2.0


@dataclass
class EmbeddingJob:
    inputs: list[list[int]]
    result: concurrent.futures.Future[list[list[float]]]
    adapter: Adapter | None = None  # a LoRA adapter applied to every chunk of this job
    vectors: list[list[float]] = field(default_factory=list)
    position: int = 0  # tokens of the current input already decoded
    total: np.ndarray | None = None  # sum of their hidden states
    cancelled: bool = False  # set by the client's side; the decode thread drops the job

    def cancel(self) -> None:
        """The client went away: never start the job, or stop it at its next chunk."""
        self.cancelled = True
        self.result.cancel()


class EmbeddingCancelledError(RuntimeError):
    """The job was dropped because its client went away."""


class EmbeddingRunner:
    """Owned by the decode thread: queued embedding jobs and the context they run in."""

    def __init__(self, model: Model, *, n_ctx: int, threads: int) -> None:
        self._model = model
        self._n_ctx = n_ctx
        self._threads = threads
        self._context: Context | None = None
        self._batch: Batch | None = None
        self._jobs: deque[EmbeddingJob] = deque()
        # Tokens per chunk while generation runs: adjusted after every chunk so that a chunk
        # takes about as long as a generation step (the cost of a chunk is not proportional
        # to its size: small batches pay the weight reads of the whole model too).
        self._chunk_tokens = FIRST_CHUNK_TOKENS

    @property
    def pending(self) -> bool:
        return bool(self._jobs)

    def add(self, job: EmbeddingJob) -> None:
        if job.result.set_running_or_notify_cancel():
            self._jobs.append(job)

    def chunk_size(self, step_seconds: float | None) -> int:
        """Tokens for the next chunk: about one generation step's time, if one is running."""
        if step_seconds is None:
            return self._n_batch
        return min(self._chunk_tokens, self._n_batch)

    def _adjust(self, tokens: int, chunk_seconds: float, step_seconds: float) -> None:
        ratio = step_seconds / max(chunk_seconds, 1e-6)
        ratio = min(MAX_GROWTH, max(1 / MAX_GROWTH, ratio))
        self._chunk_tokens = max(1, min(self._n_batch, round(tokens * ratio)))

    @property
    def _n_batch(self) -> int:
        return min(self._n_ctx, 512)

    def run_chunk(self, step_seconds: float | None) -> None:
        """Decode the next chunk of the oldest job; finish the job if that was its last."""
        job = self._jobs[0]
        if job.cancelled:
            self._jobs.popleft()
            self._reset()
            job.result.set_exception(EmbeddingCancelledError("the client went away"))
            return
        tokens = self.chunk_size(step_seconds)
        started = time.monotonic()
        try:
            self._advance(job, tokens)
        except Exception as error:
            self._jobs.popleft()
            self._reset()
            job.result.set_exception(error)
            return
        if step_seconds is not None:
            self._adjust(tokens, time.monotonic() - started, step_seconds)
        if len(job.vectors) == len(job.inputs):
            self._jobs.popleft()
            job.result.set_result(job.vectors)

    def _advance(self, job: EmbeddingJob, count: int) -> None:
        context, batch = self._native()
        tokens = job.inputs[len(job.vectors)]
        chunk = tokens[job.position : job.position + count]
        context.use_adapter(job.adapter)
        batch.clear()
        for offset, token in enumerate(chunk):
            batch.add(token, job.position + offset, 0, output=True)
        status = context.decode(batch)
        if status != 0:
            raise NativeError(f"llama_decode failed with status {status}")
        hidden = context.output_embeddings(len(chunk), self._model.n_embd)
        summed = hidden.sum(axis=0, dtype=np.float64)
        job.total = summed if job.total is None else job.total + summed
        job.position += len(chunk)
        if job.position == len(tokens):
            job.vectors.append(l2_normalize(job.total / len(tokens)))
            job.position = 0
            job.total = None
            context.forget(0)

    def _native(self) -> tuple[Context, Batch]:
        if self._context is None or self._batch is None:
            # Created on first use: most deployments never ask for embeddings.
            self._context = create_context(
                self._model,
                n_ctx=self._n_ctx,
                n_seq=1,
                n_batch=self._n_batch,
                threads=self._threads,
                embeddings=True,
            )
            self._batch = Batch(self._n_batch)
        return self._context, self._batch

    def _reset(self) -> None:
        if self._context is not None:
            self._context.forget(0)

    def fail_all(self, error: Exception) -> None:
        while self._jobs:
            self._jobs.popleft().result.set_exception(error)

    def close(self) -> None:
        if self._batch is not None:
            self._batch.close()
        if self._context is not None:
            self._context.close()
