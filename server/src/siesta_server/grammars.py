"""A request's grammar (`grammar` or `response_format`) -> checked GBNF -> compiled samplers.

Everything after the cheap size check runs on a small pool of grammar threads, never on the
event loop, and within `--grammar-timeout`: the schema's shape, GBNF built from it, the
GBNF checked against the limits (gbnf.py: llama.cpp never sees a grammar it would crash on
or print), llama.cpp's compile, and a measured pass over the vocabulary (at most 8 times
what JSON mode costs on the model, or `--max-grammar-step-ms` if that is more). Nothing of a grammar is logged here; errors quote 32 characters.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from dataclasses import dataclass
from typing import Any

from siesta_server.config import ServerConfig
from siesta_server.errors import APIError, unavailable
from siesta_server.gbnf import GrammarLimitError, GrammarLimits, GrammarSyntaxError, check_gbnf
from siesta_server.limits import check_schema
from siesta_server.native import Model
from siesta_server.sampling import (
    GrammarError,
    Sampler,
    SamplingParams,
    grammar_for_json_schema,
    grammar_step_budget_ms,
)

# Grammar compiles at once; more wait (and count against their deadline), so a burst of
# expensive grammars takes two cores at most, never the decode thread's.
GRAMMAR_THREADS = 2
_pool = concurrent.futures.ThreadPoolExecutor(GRAMMAR_THREADS, thread_name_prefix="siesta-grammar")


@dataclass(frozen=True)
class GrammarSource:
    """What a request constrains its output with: raw GBNF, a JSON schema, or any object."""

    param: str  # the request field it came from, for errors
    gbnf: str | None = None
    schema: dict[str, Any] | None = None


def check_size(source: GrammarSource, config: ServerConfig) -> None:
    """The one check on the event loop: the raw grammar's size (its length bounds it)."""
    text = source.gbnf
    if text is None:
        return
    limit = config.max_grammar_bytes
    if len(text) > limit or len(text.encode("utf-8")) > limit:
        raise APIError(
            400,
            f"the grammar is larger than {limit} bytes (--max-grammar-bytes)",
            param=source.param,
            code="grammar_too_large",
        )


def to_gbnf(source: GrammarSource, config: ServerConfig, model: Model) -> str:
    """Checked GBNF for `source`; APIError 400 naming the limit or the mistake."""
    text = source.gbnf
    if text is None:
        if source.schema is not None:
            check_schema(
                source.schema,
                max_depth=config.max_schema_depth,
                max_enum=config.max_schema_enum,
                param=source.param,
            )
        try:
            text = grammar_for_json_schema(source.schema)
        except GrammarError as error:
            raise APIError(400, str(error), param=source.param) from None
        if len(text.encode("utf-8")) > config.max_grammar_bytes:
            raise APIError(
                400,
                f"the JSON schema's grammar is larger than {config.max_grammar_bytes} bytes "
                "(--max-grammar-bytes)",
                param=source.param,
                code="grammar_too_large",
            )
    limits = GrammarLimits(
        max_depth=config.max_grammar_depth,
        max_rules=config.max_grammar_rules,
        max_elements=config.max_grammar_elements,
    )
    try:
        check_gbnf(
            text,
            limits,
            n_vocab=model.n_vocab,
            token_count=lambda piece: len(
                model.tokenize(piece, add_special=False, parse_special=True)
            ),
        )
    except GrammarLimitError as error:
        raise APIError(
            400, f"{error} ({error.flag})", param=source.param, code="grammar_too_large"
        ) from None
    except GrammarSyntaxError as error:
        raise APIError(400, str(error), param=source.param) from None
    return text


def _compile(
    source: GrammarSource,
    config: ServerConfig,
    model: Model,
    sampling: SamplingParams,
    prompts: list[list[int]],
) -> list[Sampler]:
    params = dataclasses.replace(sampling, grammar=to_gbnf(source, config, model))
    step_budget_ms = grammar_step_budget_ms(model, config.max_grammar_step_ms)
    samplers: list[Sampler] = []
    try:
        for index, prompt in enumerate(prompts):
            # One pass measured per request: every sequence has the same grammar.
            budget = step_budget_ms if index == 0 else None
            seeded = params.for_sequence(index)
            samplers.append(Sampler(model, seeded, prompt, grammar_step_budget_ms=budget))
    except GrammarError as error:
        for sampler in samplers:
            sampler.close()
        raise APIError(400, str(error), param=source.param, code=error.code) from None
    except BaseException:
        for sampler in samplers:
            sampler.close()
        raise
    return samplers


def _close_all(future: concurrent.futures.Future[list[Sampler]]) -> None:
    if not future.cancelled() and future.exception() is None:
        for sampler in future.result():
            sampler.close()


async def compile_samplers(
    source: GrammarSource,
    config: ServerConfig,
    model: Model,
    sampling: SamplingParams,
    prompts: list[list[int]],
) -> list[Sampler]:
    """One sampler per prompt, all with the grammar; 400 past --grammar-timeout."""
    future = _pool.submit(_compile, source, config, model, sampling, prompts)
    waiting = asyncio.wrap_future(future)
    # If the deadline passes, nobody awaits it: mark its outcome as seen.
    waiting.add_done_callback(lambda done: done.cancelled() or done.exception())
    done, _ = await asyncio.wait([waiting], timeout=config.grammar_timeout)
    if waiting in done:
        return waiting.result()
    if future.cancel():  # never started: the grammar threads are busy with others
        raise unavailable("server busy: the grammar threads are all compiling")
    future.add_done_callback(_close_all)  # llama.cpp's compile cannot be interrupted
    raise APIError(
        400,
        f"the grammar took longer than {config.grammar_timeout:g} s to compile (--grammar-timeout)",
        param=source.param,
        code="grammar_too_expensive",
    )
