"""The decode loop: continuous batching of up to `--parallel` sequences in one thread.

One dedicated thread owns the llama.cpp context. Each step it admits waiting requests into
free slots (reusing a slot's cached prefix when the new prompt starts the same way and was
computed with the same LoRA adapter), builds one `llama_batch` with the next token of every
generating sequence plus prompt chunks of new ones, runs a single `llama_decode`, and
samples each sequence from its own logits.

LoRA adapters: llama.cpp applies one adapter set per context and decode call, so a step
groups the busy sequences by adapter and runs one `llama_decode` per group (the base model
without adapter is a group too). Every sequence still advances one token per step, all
adapters share the slots and the KV cache, and a sequence is only ever decoded with its
own request's adapter.

Embedding requests share the loop too: each step adds at most one chunk of embedding
work, sized to take about as long as the generation step (see embeddings.py), so a long
embedding input never stalls the streams.

The asyncio side talks to the thread through a thread-safe inbox; results go back with one
`call_soon_threadsafe` per step into each request's asyncio.Queue.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal

from siesta_server.embeddings import EmbeddingJob, EmbeddingRunner
from siesta_server.metrics import ServerMetrics
from siesta_server.native import Adapter, Batch, Context, Model
from siesta_server.sampling import Sampler
from siesta_server.text import TextStream

log = logging.getLogger(__name__)

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Finished:
    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int


@dataclass(frozen=True)
class Failed:
    message: str


Event = TextDelta | Finished | Failed


class QueueFullError(RuntimeError):
    """Every slot is busy and the waiting queue is at its limit."""


class EngineStoppedError(RuntimeError):
    """The decode thread is no longer running."""


@dataclass
class _Job:
    id: int
    prompt: list[int]
    sampler: Sampler
    max_tokens: int
    stop: list[str]
    ignore_eos: bool
    events: asyncio.Queue[Event]
    received_at: float
    adapter: Adapter | None = None


@dataclass
class _Cancel:
    job_id: int


@dataclass
class _Slot:
    seq_id: int
    cached: list[int] = field(default_factory=list)  # tokens now in this sequence's KV cache
    cached_adapter: Adapter | None = None  # the adapter those tokens were computed with
    job: _Job | None = None
    prompt_pos: int = 0
    next_token: int | None = None
    batch_index: int = -1
    generated: int = 0
    reused: int = 0
    text: TextStream | None = None
    started_at: float = 0.0
    first_token_at: float = 0.0


class Generation:
    """The asyncio side of one running request: iterate its events, or cancel it."""

    def __init__(self, engine: Engine, job_id: int, events: asyncio.Queue[Event]) -> None:
        self._engine = engine
        self.job_id = job_id
        self._events = events
        self.done = False
        self._cancelled = False

    async def events(self) -> AsyncIterator[Event]:
        while not self.done:
            event = await self._events.get()
            if isinstance(event, Finished | Failed):
                self.done = True
            yield event

    def cancel(self) -> None:
        """Free the slot now (client went away); safe to call more than once."""
        if not self.done and not self._cancelled:
            self._cancelled = True
            self._engine.cancel(self.job_id)
            # Wake whoever is waiting for the next event; it ends the iteration.
            self._events.put_nowait(Failed("cancelled"))


class Engine:
    def __init__(
        self,
        model: Model,
        context: Context,
        metrics: ServerMetrics,
        *,
        max_queue: int,
        threads: int,
    ) -> None:
        self.model = model
        self.context = context
        self.metrics = metrics
        self.n_slots = context.n_seq
        self.n_ctx_seq = context.n_ctx_seq
        self.max_queue = max_queue
        self._threads = threads
        self._slots = [_Slot(seq_id=i) for i in range(self.n_slots)]
        self._waiting: deque[_Job] = deque()
        self._inbox: queue.SimpleQueue[_Job | EmbeddingJob | _Cancel | None] = queue.SimpleQueue()
        self._batch = Batch(max(context.n_batch, self.n_slots))
        self._ids = itertools.count(1)
        self._outstanding = 0  # submitted and not yet finished, guarded by _lock
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._outbox: list[tuple[asyncio.Queue[Event], Event]] = []
        self._embeddings = EmbeddingRunner(model, n_ctx=self.n_ctx_seq, threads=threads)
        self._last_step_seconds: float | None = None  # of the last generation step
        # Called on the event loop if the decode thread dies: the process should exit.
        self.on_crash: Callable[[], None] | None = None
        metrics.engine.total_slots = self.n_slots

    # -- asyncio side -------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="siesta-decode", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def outstanding(self) -> int:
        with self._lock:
            return self._outstanding

    def submit(
        self,
        prompt: list[int],
        sampler: Sampler,
        *,
        max_tokens: int,
        stop: list[str],
        ignore_eos: bool = False,
        adapter: Adapter | None = None,
    ) -> Generation:
        """Queue a generation; the caller owns `sampler` until this returns."""
        if self._thread is None or not self._thread.is_alive():
            raise EngineStoppedError("the decode loop is not running")
        with self._lock:
            if self._outstanding >= self.n_slots + self.max_queue:
                raise QueueFullError(
                    f"all {self.n_slots} slots are busy and {self.max_queue} requests wait"
                )
            self._outstanding += 1
        events: asyncio.Queue[Event] = asyncio.Queue()
        job = _Job(
            id=next(self._ids),
            prompt=prompt,
            sampler=sampler,
            max_tokens=max_tokens,
            stop=stop,
            ignore_eos=ignore_eos,
            events=events,
            received_at=time.monotonic(),
            adapter=adapter,
        )
        self._inbox.put(job)
        return Generation(self, job.id, events)

    def cancel(self, job_id: int) -> None:
        self._inbox.put(_Cancel(job_id))

    def submit_embedding(
        self, inputs: list[list[int]], adapter: Adapter | None = None
    ) -> EmbeddingJob:
        """Queue embedding work; it takes one place in the queue, like a completion."""
        if self._thread is None or not self._thread.is_alive():
            raise EngineStoppedError("the decode loop is not running")
        with self._lock:
            if self._outstanding >= self.n_slots + self.max_queue:
                raise QueueFullError(
                    f"all {self.n_slots} slots are busy and {self.max_queue} requests wait"
                )
            self._outstanding += 1
        result: concurrent.futures.Future[list[list[float]]] = concurrent.futures.Future()
        # Finished, failed or cancelled: the place in the queue is free again.
        result.add_done_callback(lambda _: self._job_done())
        job = EmbeddingJob(inputs, result, adapter)
        self._inbox.put(job)
        return job

    def stop(self, timeout: float = 10.0) -> None:
        """End the decode thread; requests still running get a Failed event."""
        self._inbox.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    # -- decode thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._absorb_messages():
                self._admit_waiting()
                generating = any(slot.job for slot in self._slots)
                if generating:
                    started = time.monotonic()
                    self._step()
                    self._last_step_seconds = time.monotonic() - started
                if self._embeddings.pending:
                    self._embeddings.run_chunk(self._last_step_seconds if generating else None)
                self._publish_gauges()
                self._flush_outbox()
        except Exception:
            log.exception("decode loop crashed")
            crashed = True
        else:
            crashed = False
        finally:
            self._fail_everything("the server is shutting down")
            self._flush_outbox()
            self._release_native()
        if crashed and self._loop is not None and self.on_crash is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self.on_crash)

    def _absorb_messages(self) -> bool:
        """Take everything from the inbox; block only when there is nothing to do."""
        idle = (
            not self._waiting
            and not self._embeddings.pending
            and not any(slot.job for slot in self._slots)
        )
        while True:
            try:
                message = self._inbox.get(block=idle)
            except queue.Empty:
                return True
            idle = False
            if message is None:
                return False
            if isinstance(message, _Job):
                self._waiting.append(message)
            elif isinstance(message, _Cancel):
                self._cancel(message.job_id)
            else:
                self._embeddings.add(message)

    def _admit_waiting(self) -> None:
        free = [slot for slot in self._slots if slot.job is None]
        while self._waiting and free:
            job = self._waiting.popleft()
            # Longest shared prefix first; on a tie the slot caching least, so the caches
            # of other conversations survive for their next turn.
            slot = max(free, key=lambda s: (_reusable(s, job), -len(s.cached)))
            free.remove(slot)
            # Keep the shared prefix in the KV cache, but always decode the prompt's last
            # token again: its logits are needed to sample the first new token.
            keep = min(_reusable(slot, job), len(job.prompt) - 1)
            if keep < len(slot.cached) and not self.context.forget(slot.seq_id, keep):
                self.context.forget(slot.seq_id)
                keep = 0
            slot.cached = slot.cached[:keep]
            slot.cached_adapter = job.adapter
            slot.job = job
            slot.prompt_pos = keep
            slot.reused = keep
            slot.next_token = None
            slot.generated = 0
            slot.text = TextStream(job.stop)
            slot.started_at = time.monotonic()
            self.metrics.engine.prompt_tokens_cached += keep
            self.metrics.adapter_tokens(job.adapter, "prompt", len(job.prompt))

    def _step(self) -> None:
        """Advance every busy sequence by one decode, one `llama_decode` per adapter."""
        groups: dict[Adapter | None, list[_Slot]] = {}
        # The adapter the context has now goes first: one switch fewer per step.
        groups[self.context.adapter] = []
        for slot in self._slots:
            if slot.job is not None:
                groups.setdefault(slot.job.adapter, []).append(slot)
        for adapter, busy in groups.items():
            if busy:
                self.context.use_adapter(adapter)
                self._decode(busy)

    def _decode(self, busy: list[_Slot]) -> None:
        batch = self._batch
        batch.clear()
        for slot in busy:
            slot.batch_index = -1
            if slot.next_token is not None:
                slot.batch_index = batch.add(
                    slot.next_token, len(slot.cached), slot.seq_id, output=True
                )
                slot.cached.append(slot.next_token)
                slot.next_token = None
        prompt_tokens = 0
        for slot in busy:
            job = slot.job
            assert job is not None
            remaining = len(job.prompt) - slot.prompt_pos
            if remaining <= 0 or batch.free <= 0:
                continue
            count = min(remaining, batch.free)
            last = len(job.prompt) - 1
            for pos in range(slot.prompt_pos, slot.prompt_pos + count):
                index = batch.add(job.prompt[pos], pos, slot.seq_id, output=pos == last)
                if pos == last:
                    slot.batch_index = index
            slot.cached.extend(job.prompt[slot.prompt_pos : slot.prompt_pos + count])
            slot.prompt_pos += count
            prompt_tokens += count

        status = self.context.decode(batch)
        counters = self.metrics.engine
        counters.n_decode += 1
        counters.n_busy_slots += len(busy)
        counters.prompt_tokens += prompt_tokens
        if status != 0:
            reason = "no room in the KV cache" if status == 1 else f"error {status}"
            log.error("llama_decode failed (%s) for a batch of %d tokens", reason, batch.size)
            for slot in busy:
                self.context.forget(slot.seq_id)
                slot.cached = []
                self._fail(slot, f"decoding failed: {reason}")
            return
        for slot in busy:
            if slot.batch_index >= 0 and slot.job is not None:
                token = slot.job.sampler.sample(self.context.handle, slot.batch_index)
                self._accept(slot, token)

    def _accept(self, slot: _Slot, token: int) -> None:
        job = slot.job
        assert job is not None
        assert slot.text is not None
        now = time.monotonic()
        if slot.generated == 0:
            slot.first_token_at = now
            self.metrics.engine.prompt_seconds += now - slot.started_at
            self.metrics.time_to_first_token.observe(now - job.received_at)
        slot.generated += 1
        self.metrics.adapter_tokens(job.adapter, "predicted", 1)
        if not job.ignore_eos and self.model.is_end_of_generation(token):
            self._finish(slot, "stop")
            return
        text = slot.text.push(self.model.piece(token))
        if text:
            self._outbox.append((job.events, TextDelta(text)))
        if slot.text.stopped:
            self._finish(slot, "stop")
        elif slot.generated >= job.max_tokens or len(slot.cached) >= self.n_ctx_seq:
            # The second case: the sequence's share of the KV cache is full, so this token
            # could not be decoded; llama-server also reports it as "length".
            self._finish(slot, "length")
        else:
            slot.next_token = token

    def _finish(self, slot: _Slot, reason: FinishReason) -> None:
        job = slot.job
        assert job is not None
        assert slot.text is not None
        rest = slot.text.finish()
        if rest:
            self._outbox.append((job.events, TextDelta(rest)))
        self._outbox.append(
            (
                job.events,
                Finished(
                    reason=reason,
                    prompt_tokens=len(job.prompt),
                    completion_tokens=slot.generated,
                    cached_tokens=slot.reused,
                ),
            )
        )
        self._account(slot)
        self._release(slot)

    def _account(self, slot: _Slot) -> None:
        """Add a finished or abandoned generation's tokens and time to the counters."""
        counters = self.metrics.engine
        if slot.generated:
            counters.tokens_predicted += slot.generated
            counters.tokens_predicted_seconds += time.monotonic() - slot.first_token_at
        counters.n_tokens_max = max(counters.n_tokens_max, len(slot.cached) + 1)

    def _fail(self, slot: _Slot, message: str) -> None:
        if slot.job is not None:
            self._outbox.append((slot.job.events, Failed(message)))
            self._release(slot)

    def _release(self, slot: _Slot) -> None:
        # The KV cache keeps this sequence's tokens: the next prompt may share the prefix.
        if slot.job is not None:
            slot.job.sampler.close()
            slot.job = None
            self._job_done()
        slot.next_token = None
        slot.text = None

    def _cancel(self, job_id: int) -> None:
        for job in self._waiting:
            if job.id == job_id:
                self._waiting.remove(job)
                job.sampler.close()
                self._job_done()
                return
        for slot in self._slots:
            if slot.job is not None and slot.job.id == job_id:
                log.debug("request %d cancelled; slot %d is free", job_id, slot.seq_id)
                self._account(slot)
                self._release(slot)
                return

    def _job_done(self) -> None:
        with self._lock:
            self._outstanding -= 1

    def _publish_gauges(self) -> None:
        counters = self.metrics.engine
        counters.requests_processing = sum(1 for slot in self._slots if slot.job is not None)
        counters.requests_deferred = len(self._waiting)

    def _flush_outbox(self) -> None:
        if not self._outbox or self._loop is None:
            return
        outbox, self._outbox = self._outbox, []
        # A closed event loop raises RuntimeError: nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_deliver, outbox)

    def _fail_everything(self, message: str) -> None:
        for slot in self._slots:
            self._fail(slot, message)
        while self._waiting:
            job = self._waiting.popleft()
            self._outbox.append((job.events, Failed(message)))
            job.sampler.close()
            self._job_done()
        while True:
            try:
                message_or_job = self._inbox.get_nowait()
            except queue.Empty:
                break
            if isinstance(message_or_job, _Job):
                self._outbox.append((message_or_job.events, Failed(message)))
                message_or_job.sampler.close()
                self._job_done()
            elif (
                isinstance(message_or_job, EmbeddingJob)
                and message_or_job.result.set_running_or_notify_cancel()
            ):
                message_or_job.result.set_exception(EngineStoppedError(message))
        self._embeddings.fail_all(EngineStoppedError(message))
        self._publish_gauges()

    def _release_native(self) -> None:
        self._batch.close()
        self._embeddings.close()
        self.context.close()
        self.model.close()


def _deliver(outbox: list[tuple[asyncio.Queue[Event], Event]]) -> None:
    for events, event in outbox:
        events.put_nowait(event)


def _reusable(slot: _Slot, job: _Job) -> int:
    """Cached tokens of `slot` that `job` can keep: its KV must come from the same adapter."""
    if slot.cached_adapter is not job.adapter:
        return 0
    return _common_prefix(slot.cached, job.prompt)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
