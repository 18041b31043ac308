"""Sampling: request parameters -> a llama.cpp sampler chain for one sequence.

The chain mirrors llama-server's default order: grammar, logit bias, penalties, top-k,
typical-p, top-p, min-p, temperature, then a seeded draw (or greedy at temperature 0).
"""

from __future__ import annotations

import ctypes
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import llama_cpp
import numpy as np

from siesta_server.json_grammar import SchemaError, grammar_for_json_object, grammar_for_schema
from siesta_server.native import Model
from siesta_server.utf8_guard import Utf8Guard, utf8_tables

RANDOM_SEED = llama_cpp.LLAMA_DEFAULT_SEED


class GrammarError(ValueError):
    """A grammar or JSON schema that llama.cpp cannot use, or one over a limit."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    grammar: str | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)

    def for_sequence(self, index: int) -> SamplingParams:
        """The parameters of sequence `index` of a request: n > 1 with one seed gives
        different but reproducible choices."""
        if self.seed is None or not index:
            return self
        return dataclasses.replace(self, seed=self.seed + index)


def grammar_for_json_schema(schema: dict[str, Any] | None) -> str:
    """GBNF for a JSON schema (any JSON object when the schema is None)."""
    if schema is None:
        return grammar_for_json_object()
    try:
        return grammar_for_schema(schema)
    except SchemaError as error:
        raise GrammarError(f"unsupported JSON schema: {error}") from None


class Sampler:
    """One sequence's sampler chain. Create on any thread; sample on the decode thread."""

    def __init__(
        self,
        model: Model,
        params: SamplingParams,
        history: list[int],
        *,
        grammar_step_budget_ms: float | None = None,
    ) -> None:
        """`grammar_step_budget_ms`: measure what the grammar adds to each token, refuse more."""
        self._budget_ms = grammar_step_budget_ms
        self._chain: Any = llama_cpp.llama_sampler_chain_init(
            llama_cpp.llama_sampler_chain_default_params()
        )
        # A grammar's output must also be valid UTF-8 byte for byte (see utf8_guard).
        self._utf8: Utf8Guard | None = None
        if params.grammar is not None:
            self._utf8 = Utf8Guard(utf8_tables(model), model.n_vocab)
        try:
            self._build(model, params, history)
        except BaseException:
            self.close()
            raise

    def _add(self, sampler: Any) -> None:
        llama_cpp.llama_sampler_chain_add(self._chain, sampler)

    def _build(self, model: Model, params: SamplingParams, history: list[int]) -> None:
        if params.grammar is not None:
            grammar = llama_cpp.llama_sampler_init_grammar(
                model.vocab, params.grammar.encode("utf-8"), b"root"
            )
            if not grammar:
                raise GrammarError("invalid GBNF grammar (llama.cpp could not parse it)")
            self._add(grammar)
            if self._budget_ms is not None:
                spent_ms = 1000 * _grammar_step_seconds(grammar, model)
                if spent_ms > self._budget_ms:  # measure again: a busy CPU is no verdict
                    spent_ms = min(spent_ms, 1000 * _grammar_step_seconds(grammar, model))
                if spent_ms > self._budget_ms:
                    raise GrammarError(
                        f"the grammar costs {spent_ms:.1f} ms per token, more than "
                        f"{self._budget_ms:.1f} ms ({JSON_COST_FACTOR:g} times what JSON mode "
                        "costs on this model, or --max-grammar-step-ms if that is more)",
                        code="grammar_too_expensive",
                    )
        if params.logit_bias:
            biases = (llama_cpp.llama_logit_bias * len(params.logit_bias))()
            for i, (token, bias) in enumerate(params.logit_bias.items()):
                biases[i].token = token  # type: ignore[assignment]
                biases[i].bias = bias
            self._add(llama_cpp.llama_sampler_init_logit_bias(model.n_vocab, len(biases), biases))
        if (
            params.repeat_penalty != 1.0
            or params.presence_penalty != 0.0
            or params.frequency_penalty != 0.0
        ):
            penalties = llama_cpp.llama_sampler_init_penalties(
                model.n_vocab,
                params.repeat_last_n,
                params.repeat_penalty,
                params.frequency_penalty,
                params.presence_penalty,
            )
            # Like llama-server, the prompt counts towards repetition penalties. Feed it to
            # this sampler alone: a grammar must only ever see generated tokens.
            for token in history[-params.repeat_last_n :] if params.repeat_last_n > 0 else []:
                llama_cpp.llama_sampler_accept(penalties, token)
            self._add(penalties)
        if params.temperature <= 0:
            self._add(llama_cpp.llama_sampler_init_greedy())
            return
        if params.top_k > 0:
            self._add(llama_cpp.llama_sampler_init_top_k(params.top_k))
        if params.typical_p < 1.0:
            self._add(llama_cpp.llama_sampler_init_typical(params.typical_p, 1))
        if params.top_p < 1.0:
            self._add(llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
        if params.min_p > 0.0:
            self._add(llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
        self._add(llama_cpp.llama_sampler_init_temp(params.temperature))
        seed = RANDOM_SEED if params.seed is None else params.seed & 0xFFFFFFFF
        self._add(llama_cpp.llama_sampler_init_dist(seed))

    def sample(self, context_handle: Any, index: int) -> int:
        """Pick (and accept) the next token from the logits at batch index `index`."""
        if self._utf8 is not None:
            self._utf8.mask(context_handle, index)
        token = int(llama_cpp.llama_sampler_sample(self._chain, context_handle, index))
        if self._utf8 is not None:
            self._utf8.accept(token)
        return token

    def close(self) -> None:
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None


# A grammar may cost this many times what `response_format: json_object` costs per token on
# the same model (its vocabulary sets both): a schema's grammar costs about as much as JSON
# mode; a 1,000-value enum about 40 times as much.
JSON_COST_FACTOR = 8.0


def grammar_step_budget_ms(model: Model, floor_ms: float) -> float:
    """Milliseconds per token a request's grammar may cost on this model."""
    baseline = model.caches.get("json_step_ms")
    if not isinstance(baseline, float):
        text = grammar_for_json_object().encode("utf-8")
        grammar = llama_cpp.llama_sampler_init_grammar(model.vocab, text, b"root")
        try:
            baseline = 1000 * min(_grammar_step_seconds(grammar, model) for _ in range(3))
        finally:
            llama_cpp.llama_sampler_free(grammar)
        model.caches["json_step_ms"] = baseline
    return max(floor_ms, JSON_COST_FACTOR * baseline)


def _grammar_step_seconds(grammar: Any, model: Model) -> float:
    """Time one grammar pass over the whole vocabulary: its cost on every generated token.

    The decode thread pays it per token and sequence, so a grammar that is cheap to parse
    but slow to apply (thousands of alternatives) still slows every neighbour down.
    """
    template = model.caches.get("token_data")
    if not isinstance(template, np.ndarray):
        # llama_token_data: {int32 id; float logit; float p}
        template = np.zeros(model.n_vocab, dtype=[("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
        template["id"] = np.arange(model.n_vocab, dtype=np.int32)
        model.caches["token_data"] = template
    scratch = template.copy()  # the grammar writes -inf into rejected tokens' logits
    candidates = llama_cpp.llama_token_data_array(
        data=scratch.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data)),
        size=model.n_vocab,
        selected=-1,
        sorted=False,
    )
    started = time.perf_counter()
    llama_cpp.llama_sampler_apply(grammar, ctypes.byref(candidates))
    return time.perf_counter() - started
