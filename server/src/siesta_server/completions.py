"""Running completions: request fields -> engine jobs -> OpenAI responses (JSON or SSE).

Chat and text completions differ only in how the prompt is built and how each piece of
output is wrapped, so both go through `run_completion` with a `Shape`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from siesta_server.engine import (
    EngineStoppedError,
    Event,
    Failed,
    Finished,
    Generation,
    QueueFullError,
    TextDelta,
)
from siesta_server.errors import APIError, bad_request, unavailable
from siesta_server.grammars import GrammarSource, compile_samplers
from siesta_server.limits import token_id
from siesta_server.native import Adapter
from siesta_server.sampling import Sampler, SamplingParams
from siesta_server.schemas import _SamplingFields
from siesta_server.state import Loaded, ServerState

T = TypeVar("T")

CLIENT_CLOSED_REQUEST = 499  # nginx's status for "client went away"; shows in metrics

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass(frozen=True)
class Shape:
    """How one kind of completion looks on the wire."""

    id_prefix: str
    object_name: str
    chunk_object_name: str
    # (index, text, finish_reason) -> one entry of `choices`
    choice: Callable[[int, str, str | None], dict[str, Any]]
    chunk_choice: Callable[[int, str | None, str | None], dict[str, Any]]
    opening_chunk: Callable[[int], dict[str, Any]] | None = None


CHAT = Shape(
    id_prefix="chatcmpl-",
    object_name="chat.completion",
    chunk_object_name="chat.completion.chunk",
    choice=lambda index, text, finish: {
        "index": index,
        "message": {"role": "assistant", "content": text},
        "logprobs": None,
        "finish_reason": finish,
    },
    chunk_choice=lambda index, text, finish: {
        "index": index,
        "delta": {} if text is None else {"content": text},
        "logprobs": None,
        "finish_reason": finish,
    },
    opening_chunk=lambda index: {
        "index": index,
        "delta": {"role": "assistant", "content": ""},
        "logprobs": None,
        "finish_reason": None,
    },
)

TEXT = Shape(
    id_prefix="cmpl-",
    object_name="text_completion",
    chunk_object_name="text_completion",
    choice=lambda index, text, finish: {
        "index": index,
        "text": text,
        "logprobs": None,
        "finish_reason": finish,
    },
    chunk_choice=lambda index, text, finish: {
        "index": index,
        "text": text or "",
        "logprobs": None,
        "finish_reason": finish,
    },
)


def grammar_source(body: _SamplingFields) -> GrammarSource | None:
    """The request's output constraint: `grammar`, or `response_format` json_object/schema."""
    response_format = body.response_format
    if response_format is None or response_format.type == "text":
        return None if body.grammar is None else GrammarSource("grammar", gbnf=body.grammar)
    if body.grammar is not None:
        raise bad_request("use either `grammar` or `response_format`, not both", param="grammar")
    if response_format.type == "json_object":
        return GrammarSource("response_format")
    schema = (
        response_format.json_schema.schema_
        if response_format.json_schema is not None
        else response_format.schema_
    )
    if schema is None:
        raise bad_request(
            "response_format of type json_schema needs json_schema.schema",
            param="response_format",
        )
    return GrammarSource("response_format", schema=schema)


def sampling_params(body: _SamplingFields, loaded: Loaded) -> SamplingParams:
    """Resolve request fields to sampler settings (llama-server's defaults where absent).

    Values that would make llama.cpp allocate by them are clamped to what they can mean:
    `repeat_last_n` to a slot's context, `top_k` to the vocabulary.
    """
    defaults = SamplingParams()
    logit_bias = {
        token_id(key, loaded.model.n_vocab): bias for key, bias in (body.logit_bias or {}).items()
    }
    repeat_last_n = min(_pick(body.repeat_last_n, defaults.repeat_last_n), loaded.engine.n_ctx_seq)
    return SamplingParams(
        temperature=_pick(body.temperature, defaults.temperature),
        top_k=min(_pick(body.top_k, defaults.top_k), loaded.model.n_vocab),
        top_p=_pick(body.top_p, defaults.top_p),
        min_p=_pick(body.min_p, defaults.min_p),
        typical_p=_pick(body.typical_p, defaults.typical_p),
        repeat_penalty=_pick(body.repeat_penalty, defaults.repeat_penalty),
        repeat_last_n=repeat_last_n,
        presence_penalty=_pick(body.presence_penalty, defaults.presence_penalty),
        frequency_penalty=_pick(body.frequency_penalty, defaults.frequency_penalty),
        seed=body.seed,
        logit_bias=logit_bias,
    )


def _pick(value: T | None, default: T) -> T:
    return default if value is None else value


@dataclass(frozen=True)
class CompletionJob:
    prompts: list[list[int]]  # one per choice
    sampling: SamplingParams
    max_tokens: int | None
    stop: list[str]
    ignore_eos: bool
    stream: bool
    include_usage: bool
    adapter: Adapter | None  # the LoRA adapter to generate with (None: the base model)
    model_name: str  # the name answers carry: the adapter's, or the base alias
    grammar: GrammarSource | None = None


def check_prompts(job: CompletionJob, loaded: Loaded, shape: Shape) -> None:
    """Each prompt non-empty, within a slot's context and of valid token ids (linear time)."""
    n_ctx_seq, n_vocab = loaded.engine.n_ctx_seq, loaded.model.n_vocab
    several = len(_distinct(job.prompts)) > 1
    for index, prompt in enumerate(job.prompts):
        if not prompt:
            raise bad_request("the prompt is empty", param="prompt")
        if len(prompt) >= n_ctx_seq:
            raise bad_request(
                f"the prompt{f' #{index}' if several else ''} has {len(prompt)} tokens, but the "
                f"context window of a slot is {n_ctx_seq} tokens (--ctx-size / --parallel); "
                "shorten the prompt",
                param="messages" if shape is CHAT else "prompt",
                code="context_length_exceeded",
            )
        if min(prompt) < 0 or max(prompt) >= n_vocab:
            raise bad_request("the prompt contains an invalid token id", param="prompt")


# Prompts with more tokens than this are checked on a worker thread, not the event loop.
INLINE_CHECK_TOKENS = 4096


async def run_completion(
    request: Request, state: ServerState, loaded: Loaded, job: CompletionJob, shape: Shape
) -> Response:
    engine = loaded.engine
    if sum(len(prompt) for prompt in job.prompts) > INLINE_CHECK_TOKENS:
        await asyncio.to_thread(check_prompts, job, loaded, shape)
    else:
        check_prompts(job, loaded, shape)
    max_tokens = job.max_tokens if job.max_tokens is not None else engine.n_ctx_seq
    generations = await _start(state, loaded, job, max_tokens)
    state.metrics.request_received(job.adapter)
    completion_id = shape.id_prefix + uuid.uuid4().hex
    created = int(time.time())
    model_name = job.model_name
    distinct_prompt_tokens = sum(len(p) for p in _distinct(job.prompts))
    watcher = asyncio.create_task(_cancel_on_disconnect(request, generations))
    if job.stream:
        stream = _sse(
            state,
            generations,
            watcher,
            shape,
            completion_id,
            created,
            model_name,
            distinct_prompt_tokens,
            job.include_usage,
        )
        return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)
    state.request_started()
    try:
        texts = ["" for _ in generations]
        finishes: list[Finished | None] = [None for _ in generations]
        async for index, event in _merged(generations):
            if isinstance(event, TextDelta):
                texts[index] += event.text
            elif isinstance(event, Finished):
                finishes[index] = event
            elif watcher.done():  # the client hung up; nobody will read an answer
                return Response(status_code=CLIENT_CLOSED_REQUEST)
            else:
                raise APIError(500, event.message, error_type="server_error")
    finally:
        watcher.cancel()
        for generation in generations:
            generation.cancel()
        state.request_ended()
    completion_tokens = sum(f.completion_tokens for f in finishes if f is not None)
    cached = sum(f.cached_tokens for f in finishes if f is not None)
    return JSONResponse(
        {
            "id": completion_id,
            "object": shape.object_name,
            "created": created,
            "model": model_name,
            "system_fingerprint": None,
            "choices": [
                shape.choice(i, texts[i], finish.reason if finish else "stop")
                for i, finish in enumerate(finishes)
            ],
            "usage": _usage(distinct_prompt_tokens, completion_tokens, cached),
        }
    )


async def _start(
    state: ServerState, loaded: Loaded, job: CompletionJob, max_tokens: int
) -> list[Generation]:
    engine = loaded.engine
    room = engine.n_slots + engine.max_queue - engine.outstanding
    if len(job.prompts) > room:  # refused before any sampler (or grammar) is built
        raise unavailable(
            f"server busy: {len(job.prompts)} sequences asked for, room for {max(room, 0)} "
            f"({engine.n_slots} slots, --max-queue {engine.max_queue})"
        )
    samplers = await _make_samplers(state, loaded, job)
    generations: list[Generation] = []
    try:
        for index, (prompt, sampler) in enumerate(zip(job.prompts, samplers, strict=True)):
            assert sampler is not None
            generations.append(
                loaded.engine.submit(
                    prompt,
                    sampler,
                    max_tokens=max_tokens,
                    stop=job.stop,
                    ignore_eos=job.ignore_eos,
                    adapter=job.adapter,
                )
            )
            samplers[index] = None  # the engine owns it now
    except QueueFullError as error:
        raise unavailable(f"server busy: {error}") from None
    except EngineStoppedError:
        raise unavailable("Server is shutting down") from None
    finally:
        if len(generations) < len(samplers):
            for generation in generations:
                generation.cancel()
            for sampler in samplers:
                if sampler is not None:
                    sampler.close()
    return generations


async def _make_samplers(
    state: ServerState, loaded: Loaded, job: CompletionJob
) -> list[Sampler | None]:
    """One sampler per prompt; a grammar is compiled off the event loop, with a deadline."""
    if job.grammar is not None:
        made = await compile_samplers(
            job.grammar, state.config, loaded.model, job.sampling, job.prompts
        )
        return list(made)
    samplers: list[Sampler | None] = []
    for index, prompt in enumerate(job.prompts):
        samplers.append(Sampler(loaded.model, job.sampling.for_sequence(index), prompt))
    return samplers


async def _sse(
    state: ServerState,
    generations: list[Generation],
    watcher: asyncio.Task[None],
    shape: Shape,
    completion_id: str,
    created: int,
    model_name: str,
    prompt_tokens: int,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    def chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        body: dict[str, Any] = {
            "id": completion_id,
            "object": shape.chunk_object_name,
            "created": created,
            "model": model_name,
            "system_fingerprint": None,
            "choices": choices,
        }
        if include_usage:
            body["usage"] = usage
        return _event(body)

    completion_tokens = 0
    cached = 0
    state.request_started()
    try:
        if shape.opening_chunk is not None:
            yield chunk([shape.opening_chunk(i) for i in range(len(generations))])
        async for index, event in _merged(generations):
            if isinstance(event, TextDelta):
                yield chunk([shape.chunk_choice(index, event.text, None)])
            elif isinstance(event, Finished):
                completion_tokens += event.completion_tokens
                cached += event.cached_tokens
                yield chunk([shape.chunk_choice(index, None, event.reason)])
            elif not watcher.done():  # a real failure, not our own cancellation
                error = APIError(500, event.message, error_type="server_error")
                yield _event(error.body())
                return
            else:
                return
        if include_usage:
            yield chunk([], _usage(prompt_tokens, completion_tokens, cached))
        yield b"data: [DONE]\n\n"
    finally:
        watcher.cancel()
        for generation in generations:
            generation.cancel()
        state.request_ended()


async def _merged(generations: list[Generation]) -> AsyncIterator[tuple[int, Event]]:
    """Events of several generations in arrival order, tagged with their choice index."""
    if len(generations) == 1:
        async for event in generations[0].events():
            yield 0, event
        return
    merged: asyncio.Queue[tuple[int, Event]] = asyncio.Queue()

    async def pump(index: int, generation: Generation) -> None:
        async for event in generation.events():
            merged.put_nowait((index, event))

    pumps = [asyncio.create_task(pump(i, g)) for i, g in enumerate(generations)]
    try:
        remaining = len(generations)
        while remaining:
            index, event = await merged.get()
            if isinstance(event, Finished | Failed):
                remaining -= 1
            yield index, event
    finally:
        for task in pumps:
            task.cancel()


async def _cancel_on_disconnect(request: Request, generations: list[Generation]) -> None:
    """Free the slots as soon as the client goes away (not at the next token write)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    for generation in generations:
        generation.cancel()


def _event(body: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"


def _usage(prompt: int, completion: int, cached: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def _distinct(prompts: list[list[int]]) -> list[list[int]]:
    """The prompts without repeats (n > 1 repeats each), in linear time."""
    seen: dict[tuple[int, ...], list[int]] = {}
    for prompt in prompts:
        seen.setdefault(tuple(prompt), prompt)
    return list(seen.values())
