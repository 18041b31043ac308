"""Keep grammar-constrained output valid UTF-8, byte for byte.

llama.cpp's grammar matches code points that it decodes from token bytes leniently. It
refuses some malformed sequences itself (C0/C1 leads, E0 80, E0 81), but lets others through:
E0 9F BF passes as U+07FF and F0 8F BF BF as U+FFFF, both overlong. Decoded strictly (as the
server and every client do), each such byte becomes U+FFFD, so a string the grammar counted
as 6 characters arrives as 8 and breaks `maxLength`. The guard masks, before each draw, the
tokens that would start such a sequence: bytes that never occur in UTF-8 (C0, C1, F5-FF),
and after the lead bytes E0, ED, F0 and F4 the continuation bytes that would make an
overlong form, a surrogate or a code point above U+10FFFF.
"""

from __future__ import annotations

import ctypes
import itertools
from dataclasses import dataclass
from typing import Any

import llama_cpp
import numpy as np

from siesta_server.native import Model

# Lead byte -> continuation bytes that must not follow it (RFC 3629's table, inverted).
_FORBIDDEN_AFTER = {
    0xE0: range(0x80, 0xA0),  # overlong 3-byte forms
    0xED: range(0xA0, 0xC0),  # UTF-16 surrogates
    0xF0: range(0x80, 0x90),  # overlong 4-byte forms
    0xF4: range(0x90, 0xC0),  # above U+10FFFF
}
_NEVER = frozenset({0xC0, 0xC1, *range(0xF5, 0x100)})


@dataclass(frozen=True)
class Utf8Tables:
    never: np.ndarray  # token ids that are invalid wherever they appear
    after: dict[int, np.ndarray]  # pending lead byte -> token ids that may not follow it
    ends_with_lead: dict[int, int]  # token id -> the lead byte it ends with


def utf8_tables(model: Model) -> Utf8Tables:
    """Classify every token of the vocabulary once per model."""
    cached = model.caches.get("utf8")
    if isinstance(cached, Utf8Tables):
        return cached
    never: list[int] = []
    after: dict[int, list[int]] = {lead: [] for lead in _FORBIDDEN_AFTER}
    ends_with_lead: dict[int, int] = {}
    for token in range(model.n_vocab):
        piece = model.piece(token)
        if not piece:
            continue
        if any(b in _NEVER for b in piece) or any(
            a in _FORBIDDEN_AFTER and b in _FORBIDDEN_AFTER[a] for a, b in itertools.pairwise(piece)
        ):
            never.append(token)
            continue
        for lead, forbidden in _FORBIDDEN_AFTER.items():
            if piece[0] in forbidden:
                after[lead].append(token)
        if piece[-1] in _FORBIDDEN_AFTER:
            ends_with_lead[token] = piece[-1]
    tables = Utf8Tables(
        never=np.array(never, dtype=np.int64),
        after={lead: np.array(ids, dtype=np.int64) for lead, ids in after.items()},
        ends_with_lead=ends_with_lead,
    )
    model.caches["utf8"] = tables
    return tables


class Utf8Guard:
    """One sequence's state: the lead byte its output currently ends with, if any."""

    def __init__(self, tables: Utf8Tables, n_vocab: int) -> None:
        self._tables = tables
        self._n_vocab = n_vocab
        self._pending: int | None = None

    def mask(self, context_handle: Any, index: int) -> None:
        """Set the logits of forbidden tokens to -inf before the sampler chain reads them."""
        pointer = llama_cpp.llama_get_logits_ith(context_handle, index)
        if not pointer:
            return
        logits = np.ctypeslib.as_array(
            ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(self._n_vocab,)
        )
        logits[self._tables.never] = -np.inf
        if self._pending is not None:
            logits[self._tables.after[self._pending]] = -np.inf

    def accept(self, token: int) -> None:
        self._pending = self._tables.ends_with_lead.get(token)
