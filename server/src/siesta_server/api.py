"""HTTP routes: the OpenAI-compatible API, /health, /metrics and llama-server's /props."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import struct
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from siesta_server.chat import ChatTemplateError
from siesta_server.chat_tokens import chat_tokens
from siesta_server.completions import (
    CHAT,
    CLIENT_CLOSED_REQUEST,
    TEXT,
    CompletionJob,
    grammar_source,
    run_completion,
    sampling_params,
)
from siesta_server.config import ServerConfig
from siesta_server.engine import EngineStoppedError, QueueFullError
from siesta_server.errors import APIError, bad_request, unavailable
from siesta_server.grammars import check_size as check_grammar_size
from siesta_server.limits import SURROGATE_ESCAPE, check_counts, find_surrogate
from siesta_server.metrics import CONTENT_TYPE
from siesta_server.native import Adapter, NativeError
from siesta_server.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from siesta_server.state import Loaded, Phase, ServerState

log = logging.getLogger(__name__)

BodyT = TypeVar("BodyT", bound=BaseModel)
T = TypeVar("T")

# Bodies, prompts and answers bigger than this are parsed, tokenized or serialized on a
# worker thread, so the event loop never spends long on one request; smaller ones inline.
INLINE_BYTES = 64 * 1024
# Template work per chat message, in the same units (characters) as its content.
_MESSAGE_COST = 64


# The paths that answer without an API key: kubelet probes, the gateway's readiness checks
# and Prometheus carry no key. Every other route needs one when --api-key-file is set.
OPEN_PATHS = frozenset({"/health", "/v1/health", "/metrics"})


def build_app(state: ServerState) -> Starlette:
    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/v1/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/models", models, methods=["GET"]),
        MeteredRoute("/props", "props", props, "GET"),
    ]
    for prefix in ("/v1", ""):
        routes += [
            MeteredRoute(f"{prefix}/chat/completions", "chat", chat, "POST"),
            MeteredRoute(f"{prefix}/completions", "completions", completions, "POST"),
            MeteredRoute(f"{prefix}/embeddings", "embeddings", embeddings, "POST"),
        ]
    keyed = [route for route in routes if route.path not in OPEN_PATHS]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(ApiKeyMiddleware, state=state, routes=keyed)],
        exception_handlers={HTTPException: http_error},
    )
    app.state.server = state
    return app


def build_metrics_app(state: ServerState) -> Starlette:
    """`--metrics-port`: /metrics alone, so a scraper needs no access to the API port."""
    app = Starlette(routes=[Route("/metrics", metrics, methods=["GET"])])
    app.state.server = state
    return app


def server_state(request: Request) -> ServerState:
    """The state `build_app` hung on the application, typed."""
    state: ServerState = request.app.state.server
    return state


class ApiKeyMiddleware:
    """The one place the API key is checked (--api-key-file), before any handler runs.

    Only a request that a keyed route would serve (path and method) is checked, so unknown
    paths still answer 404 and wrong methods 405, as they do without keys."""

    def __init__(self, app: ASGIApp, state: ServerState, routes: Sequence[Route]) -> None:
        self.app = app
        self.state = state
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        keys = self.state.api_keys
        route = self._keyed_route(scope) if keys is not None else None
        if keys is None or route is None:
            await self.app(scope, receive, send)
            return
        try:
            keys.check(Headers(scope=scope).get("authorization"))
        except Exception as error:
            response = _error_response(error, scope["path"])
            if isinstance(route, MeteredRoute):
                route.count(self.state, response.status_code)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _keyed_route(self, scope: Scope) -> Route | None:
        if scope["type"] != "http":
            return None
        for route in self.routes:
            if route.matches(scope)[0] is Match.FULL:
                return route
        return None


Handler = Callable[[Request], Awaitable[Response]]


class MeteredRoute(Route):
    """A route counted in siesta_server_requests_total (its `endpoint` label is `name`) that
    answers every failure in OpenAI's error shape."""

    def __init__(self, path: str, name: str, handler: Handler, method: str) -> None:
        async def counted(request: Request) -> Response:
            try:
                response = await handler(request)
            except Exception as error:
                response = _error_response(error, request.url.path)
            self.count(server_state(request), response.status_code)
            return response

        super().__init__(path, counted, methods=[method], name=name)

    def count(self, state: ServerState, status: int) -> None:
        state.metrics.requests.labels(self.name, str(status)).inc()


def _error_response(error: Exception, path: str) -> Response:
    if isinstance(error, APIError):
        return error.response()
    log.exception("unexpected error in %s", path, exc_info=error)
    return APIError(500, "internal server error", error_type="server_error").response()


async def http_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    kind = "not_found_error" if error.status_code == 404 else "invalid_request_error"
    return APIError(error.status_code, str(error.detail), error_type=kind).response()


async def health(request: Request) -> Response:
    # Exactly llama-server's bodies: probes and the gateway read these.
    state = server_state(request)
    loaded = state.loaded
    if state.phase is Phase.READY and loaded is not None and loaded.engine.alive:
        return JSONResponse({"status": "ok"})
    if state.phase is Phase.READY:
        message = "The decode loop stopped; restart the server"
    elif state.phase is Phase.DRAINING:
        message = "Server is shutting down"
    else:
        message = "Loading model"
    return JSONResponse(
        {"error": {"code": 503, "message": message, "type": "unavailable_error"}},
        status_code=503,
    )


async def metrics(request: Request) -> Response:
    return Response(server_state(request).metrics.render(), media_type=CONTENT_TYPE)


async def models(request: Request) -> Response:
    state = server_state(request)
    base = state.config.model_id
    base_entry = {
        "id": base,
        "object": "model",
        "created": state.created,
        "owned_by": "siesta",
        "meta": _model_meta(state.loaded),
    }
    # Adapters are listed from the configuration, so also while the model loads.
    adapters = [
        {
            "id": lora.name,
            "object": "model",
            "created": state.created,
            "owned_by": "siesta",
            "parent": base,
            "meta": {"lora_scale": lora.scale},
        }
        for lora in state.config.loras
    ]
    return JSONResponse({"object": "list", "data": [base_entry, *adapters]})


def _model_meta(loaded: Loaded | None) -> dict[str, Any] | None:
    """llama-server's `meta` of the base model; None until it is loaded."""
    if loaded is None:
        return None
    return {
        "n_vocab": loaded.model.n_vocab,
        "n_ctx_train": loaded.model.n_ctx_train,
        "n_embd": loaded.model.n_embd,
        "n_params": loaded.model.n_params,
        "size": loaded.model.size_bytes,
    }


async def props(request: Request) -> Response:
    state = server_state(request)
    loaded = state.require_ready()
    return JSONResponse(
        {
            "model_path": str(loaded.model.path),
            "model_alias": state.config.model_id,
            "total_slots": loaded.engine.n_slots,
            "n_ctx": loaded.engine.n_ctx_seq * loaded.engine.n_slots,
            "n_ctx_slot": loaded.engine.n_ctx_seq,
            "chat_template": loaded.chat_template.source,
            "build_info": "siesta-server",
        }
    )


async def chat(request: Request) -> Response:
    state = server_state(request)
    loaded = state.require_ready()
    body = await _parse(request, state, ChatCompletionRequest)
    adapter = _resolve_model(state, loaded, body.model)
    if body.tools:
        raise bad_request("tool calling is not supported by this server", param="tools")
    if body.logprobs:
        raise bad_request("logprobs are not supported by this server", param="logprobs")
    messages = [{"role": m.role, "content": m.text()} for m in body.messages]
    size = sum(len(m["content"]) + _MESSAGE_COST for m in messages)
    try:
        prompt = await _off_loop(size, chat_tokens, loaded.model, loaded.chat_template, messages)
    except ChatTemplateError as error:
        raise bad_request(str(error), param="messages") from None
    max_tokens = body.max_completion_tokens or body.max_tokens
    job = _job(body, loaded, [prompt] * body.n, max_tokens, adapter, state)
    return await run_completion(request, state, loaded, job, CHAT)


async def completions(request: Request) -> Response:
    state = server_state(request)
    loaded = state.require_ready()
    body = await _parse(request, state, CompletionRequest)
    adapter = _resolve_model(state, loaded, body.model)
    if body.logprobs:
        raise bad_request("logprobs are not supported by this server", param="logprobs")
    if body.echo:
        raise bad_request("echo is not supported by this server", param="echo")
    texts = _prompt_chars(body.prompt)
    prompts = await _off_loop(texts, _text_prompts, loaded, body.prompt)
    prompts = [p for p in prompts for _ in range(body.n)]
    job = _job(body, loaded, prompts, body.max_tokens, adapter, state)
    return await run_completion(request, state, loaded, job, TEXT)


async def embeddings(request: Request) -> Response:
    state = server_state(request)
    loaded = state.require_ready()
    body = await _parse(request, state, EmbeddingRequest)
    adapter = _resolve_model(state, loaded, body.model)
    inputs = await _off_loop(_prompt_chars(body.input), _embedding_inputs, loaded, body.input)
    state.metrics.request_received(adapter)
    state.request_started()
    try:
        vectors = await _embed(request, loaded, inputs, adapter)
    finally:
        state.request_ended()
    if vectors is None:  # the client went away; the work was dropped
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    if body.dimensions is not None:
        vectors = [v[: body.dimensions] for v in vectors]
    used = sum(len(tokens) for tokens in inputs)
    name = adapter.name if adapter is not None else state.config.model_id
    # A few hundred vectors of thousands of floats: serialize off the event loop.
    content = await _off_loop(
        len(vectors) * len(vectors[0]) if vectors else 0,
        _embedding_answer,
        vectors,
        body,
        name,
        used,
    )
    return Response(content, media_type="application/json")


async def _parse(request: Request, state: ServerState, model: type[BodyT]) -> BodyT:
    raw = await _read_body(request, state)
    if len(raw) > INLINE_BYTES:
        return await asyncio.to_thread(_decode, raw, model, state.config)
    return _decode(raw, model, state.config)


async def _read_body(request: Request, state: ServerState) -> bytes:
    limit, timeout = state.config.max_body_bytes, state.config.body_timeout
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    raw = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                raw += chunk
                if len(raw) > limit:
                    raise _too_large(limit)
    except TimeoutError:
        raise APIError(
            408,
            f"the request body did not arrive within {timeout:g} s (--body-timeout)",
            code="request_timeout",
        ) from None
    return bytes(raw)


def _decode(raw: bytes, model: type[BodyT], config: ServerConfig) -> BodyT:
    """JSON -> request model; every failure a 400 (never a RecursionError's 500)."""
    try:
        data = json.loads(raw.decode("utf-8"))  # strict: no surrogates from the bytes
    except UnicodeDecodeError as error:
        raise bad_request(f"the request body is not valid UTF-8: {error}") from None
    except RecursionError:
        raise bad_request("the request body is nested too deeply") from None
    except ValueError as error:
        raise bad_request(f"the request body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise bad_request("the request body must be a JSON object")
    if SURROGATE_ESCAPE.search(raw):
        where = find_surrogate(data)
        if where is not None:
            raise bad_request(
                f"{_short(where)}: contains a lone UTF-16 surrogate (\\uD800-\\uDFFF), "
                "which is not a character",
                param=_short(where),
            )
    check_counts(data, config)
    try:
        return model.model_validate(data)
    except RecursionError:
        raise bad_request("the request body is nested too deeply") from None
    except ValidationError as error:
        first = error.errors()[0]
        param = _short(".".join(str(part) for part in first["loc"])) or None
        message = f"{param}: {first['msg']}" if param else first["msg"]
        raise bad_request(message, param=param) from None


def _short(text: str) -> str:
    """A field path quoted back to the client: keys are the client's and may be huge."""
    return text if len(text) <= 128 else text[:128] + "..."


async def _off_loop(size: int, function: Callable[..., T], *args: Any) -> T:
    """Run `function` on a worker thread when `size` says it is big, else right here."""
    if size > INLINE_BYTES:
        return await asyncio.to_thread(function, *args)
    return function(*args)


def _prompt_chars(prompt: str | list[str] | list[int] | list[list[int]]) -> int:
    """About how much work tokenizing and checking the prompt is."""
    if isinstance(prompt, str):
        return len(prompt)
    return sum(len(item) if isinstance(item, str | list) else 1 for item in prompt)


def _embedding_inputs(
    loaded: Loaded, given: str | list[str] | list[int] | list[list[int]]
) -> list[list[int]]:
    inputs = _text_prompts(loaded, given, add_special=True)
    for tokens in inputs:
        if not tokens or min(tokens) < 0 or max(tokens) >= loaded.model.n_vocab:
            raise bad_request("an input is empty or has invalid token ids", param="input")
        if len(tokens) > loaded.engine.n_ctx_seq:
            raise bad_request(
                f"an input has {len(tokens)} tokens; the limit is {loaded.engine.n_ctx_seq}",
                param="input",
                code="context_length_exceeded",
            )
    return inputs


async def _embed(
    request: Request, loaded: Loaded, inputs: list[list[int]], adapter: Adapter | None
) -> list[list[float]] | None:
    """The vectors, or None if the client left first (its work is dropped then)."""
    try:
        job = loaded.engine.submit_embedding(inputs, adapter)
    except QueueFullError as error:
        raise unavailable(f"server busy: {error}") from None
    except EngineStoppedError:
        raise unavailable("Server is shutting down") from None
    result = asyncio.wrap_future(job.result)
    result.add_done_callback(lambda done: done.cancelled() or done.exception())
    gone: asyncio.Future[None] = asyncio.ensure_future(_disconnected(request))
    try:
        either: list[asyncio.Future[Any]] = [result, gone]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not result.done():
        job.cancel()
        return None
    try:
        return result.result()
    except EngineStoppedError:
        raise unavailable("Server is shutting down") from None
    except NativeError as error:
        raise APIError(
            501, f"this model cannot produce embeddings: {error}", error_type="not_supported"
        ) from None


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _embedding_answer(
    vectors: list[list[float]], body: EmbeddingRequest, name: str, used: int
) -> bytes:
    """The answer's JSON, one vector at a time: the interpreter lock is released between
    vectors, so even 512 vectors of 4096 floats (about 44 MB) never stall the event loop."""
    items = (
        _dumps({"object": "embedding", "index": i, "embedding": _encode(vector, body)})
        for i, vector in enumerate(vectors)
    )
    usage = {"prompt_tokens": used, "total_tokens": used}
    return b"".join(
        [
            b'{"object":"list","model":',
            _dumps(name),
            b',"data":[',
            b",".join(items),
            b'],"usage":',
            _dumps(usage),
            b"}",
        ]
    )


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _encode(vector: list[float], body: EmbeddingRequest) -> list[float] | str:
    if body.encoding_format == "float":
        return vector
    # OpenAI's base64 form: little-endian float32s (the openai client asks for it).
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def _too_large(limit: int) -> APIError:
    return APIError(413, f"the request body is larger than {limit} bytes", code="request_too_large")


def _job(
    body: ChatCompletionRequest | CompletionRequest,
    loaded: Loaded,
    prompts: list[list[int]],
    max_tokens: int | None,
    adapter: Adapter | None,
    state: ServerState,
) -> CompletionJob:
    """The generation work of a chat or text completion request, once its prompts are known."""
    grammar = grammar_source(body)
    if grammar is not None:
        check_grammar_size(grammar, state.config)
    return CompletionJob(
        prompts=prompts,
        sampling=sampling_params(body, loaded),
        grammar=grammar,
        max_tokens=max_tokens,
        stop=body.stop_strings(),
        ignore_eos=body.ignore_eos,
        stream=body.stream,
        include_usage=bool(body.stream_options and body.stream_options.include_usage),
        adapter=adapter,
        model_name=adapter.name if adapter is not None else state.config.model_id,
    )


def _resolve_model(state: ServerState, loaded: Loaded, requested: str | None) -> Adapter | None:
    """The LoRA adapter a request's `model` names; None for the base model (or no name)."""
    config = state.config
    if requested is None or requested in {config.model_id, config.model}:
        return None
    adapter = loaded.adapters.get(requested)
    if adapter is not None:
        return adapter
    served = ", ".join(repr(name) for name in [config.model_id, *loaded.adapters])
    raise APIError(
        404,
        f"the model {requested!r} does not exist; this server serves {served}",
        param="model",
        code="model_not_found",
    )


def _text_prompts(
    loaded: Loaded,
    prompt: str | list[str] | list[int] | list[list[int]],
    *,
    add_special: bool = True,
) -> list[list[int]]:
    model = loaded.model
    if isinstance(prompt, str):
        return [model.tokenize(prompt, add_special=add_special, parse_special=False)]
    if all(isinstance(item, int) for item in prompt):
        return [[int(item) for item in prompt]]  # type: ignore[arg-type]
    prompts: list[list[int]] = []
    for item in prompt:
        if isinstance(item, str):
            prompts.append(model.tokenize(item, add_special=add_special, parse_special=False))
        elif isinstance(item, list):
            prompts.append(list(item))
    return prompts
