"""HTTP routes: the OpenAI-compatible API, /health, /metrics and llama-server's /props."""

from __future__ import annotations

import base64
import json
import logging
import struct
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from siesta_server.chat import ChatTemplateError
from siesta_server.completions import CHAT, TEXT, CompletionJob, run_completion, sampling_params
from siesta_server.engine import EngineStoppedError
from siesta_server.errors import APIError, bad_request, unavailable
from siesta_server.metrics import CONTENT_TYPE
from siesta_server.native import Adapter, NativeError
from siesta_server.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from siesta_server.state import Loaded, Phase, ServerState

log = logging.getLogger(__name__)

BodyT = TypeVar("BodyT", bound=BaseModel)


def build_app(state: ServerState) -> Starlette:
    async def health(_: Request) -> Response:
        # Exactly llama-server's bodies: probes and the gateway read these.
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

    async def metrics(_: Request) -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    async def models(request: Request) -> Response:
        if state.api_keys is not None:
            try:
                state.api_keys.check(request.headers.get("authorization"))
            except APIError as error:
                return error.response()
        loaded = state.loaded
        meta: dict[str, Any] = {}
        if loaded is not None:
            meta = {
                "n_vocab": loaded.model.n_vocab,
                "n_ctx_train": loaded.model.n_ctx_train,
                "n_embd": loaded.model.n_embd,
                "n_params": loaded.model.n_params,
                "size": loaded.model.size_bytes,
            }
        base = state.config.model_id
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
        base_entry = {
            "id": base,
            "object": "model",
            "created": state.created,
            "owned_by": "siesta",
            "meta": meta or None,
        }
        return JSONResponse({"object": "list", "data": [base_entry, *adapters]})

    async def props(_: Request) -> Response:
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
        loaded = state.require_ready()
        body = await _parse(request, state, ChatCompletionRequest)
        adapter = _resolve_model(state, loaded, body.model)
        if body.tools:
            raise bad_request("tool calling is not supported by this server", param="tools")
        if body.logprobs:
            raise bad_request("logprobs are not supported by this server", param="logprobs")
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        try:
            prompt_text = loaded.chat_template.render(messages)
        except ChatTemplateError as error:
            raise bad_request(str(error), param="messages") from None
        prompt = _tokenize_chat(loaded, prompt_text)
        max_tokens = body.max_completion_tokens or body.max_tokens
        job = _job(body, loaded, [prompt] * body.n, max_tokens, adapter, state)
        return await run_completion(request, state, loaded, job, CHAT)

    async def completions(request: Request) -> Response:
        loaded = state.require_ready()
        body = await _parse(request, state, CompletionRequest)
        adapter = _resolve_model(state, loaded, body.model)
        if body.logprobs:
            raise bad_request("logprobs are not supported by this server", param="logprobs")
        if body.echo:
            raise bad_request("echo is not supported by this server", param="echo")
        prompts = [p for p in _text_prompts(loaded, body.prompt) for _ in range(body.n)]
        job = _job(body, loaded, prompts, body.max_tokens, adapter, state)
        return await run_completion(request, state, loaded, job, TEXT)

    async def embeddings(request: Request) -> Response:
        loaded = state.require_ready()
        body = await _parse(request, state, EmbeddingRequest)
        adapter = _resolve_model(state, loaded, body.model)
        inputs = _text_prompts(loaded, body.input, add_special=True)
        for tokens in inputs:
            if not tokens or any(t < 0 or t >= loaded.model.n_vocab for t in tokens):
                raise bad_request("an input is empty or has invalid token ids", param="input")
            if len(tokens) > loaded.engine.n_ctx_seq:
                raise bad_request(
                    f"an input has {len(tokens)} tokens; the limit is {loaded.engine.n_ctx_seq}",
                    param="input",
                    code="context_length_exceeded",
                )
        state.metrics.request_received(adapter)
        state.request_started()
        try:
            vectors = await loaded.engine.embed(inputs, adapter)
        except EngineStoppedError:
            raise unavailable("Server is shutting down") from None
        except NativeError as error:
            raise APIError(
                501, f"this model cannot produce embeddings: {error}", error_type="not_supported"
            ) from None
        finally:
            state.request_ended()
        if body.dimensions is not None:
            vectors = [v[: body.dimensions] for v in vectors]
        used = sum(len(tokens) for tokens in inputs)
        return JSONResponse(
            {
                "object": "list",
                "model": adapter.name if adapter is not None else state.config.model_id,
                "data": [
                    {"object": "embedding", "index": i, "embedding": _encode(vector, body)}
                    for i, vector in enumerate(vectors)
                ],
                "usage": {"prompt_tokens": used, "total_tokens": used},
            }
        )

    def endpoint(name: str, handler: Any) -> Any:
        """Answer every failure in OpenAI's error shape and count requests by status."""

        async def wrapper(request: Request) -> Response:
            try:
                if state.api_keys is not None:
                    state.api_keys.check(request.headers.get("authorization"))
                response: Response = await handler(request)
            except APIError as error:
                response = error.response()
            except Exception:
                log.exception("unexpected error in %s", request.url.path)
                response = APIError(
                    500, "internal server error", error_type="server_error"
                ).response()
            state.metrics.requests.labels(name, str(response.status_code)).inc()
            return response

        return wrapper

    async def http_error(_: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        kind = "not_found_error" if error.status_code == 404 else "invalid_request_error"
        return APIError(error.status_code, str(error.detail), error_type=kind).response()

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/v1/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/models", models, methods=["GET"]),
        Route("/props", endpoint("props", props), methods=["GET"]),
    ]
    for prefix in ("/v1", ""):
        routes += [
            Route(f"{prefix}/chat/completions", endpoint("chat", chat), methods=["POST"]),
            Route(f"{prefix}/completions", endpoint("completions", completions), methods=["POST"]),
            Route(f"{prefix}/embeddings", endpoint("embeddings", embeddings), methods=["POST"]),
        ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})


async def _parse(request: Request, state: ServerState, model: type[BodyT]) -> BodyT:
    limit = state.config.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise _too_large(limit)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise bad_request(f"the request body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise bad_request("the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        message = f"{param}: {first['msg']}" if param else first["msg"]
        raise bad_request(message, param=param) from None


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
    return CompletionJob(
        prompts=prompts,
        sampling=sampling_params(body, loaded),
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


def _tokenize_chat(loaded: Loaded, text: str) -> list[int]:
    model = loaded.model
    # Templates usually write the BOS token themselves; add it only if they did not.
    bos_text = model.token_text(model.bos_token)
    add_special = model.add_bos and not (bos_text and text.startswith(bos_text))
    return model.tokenize(text, add_special=add_special, parse_special=True)


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
