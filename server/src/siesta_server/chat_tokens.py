"""Chat messages -> prompt tokens, where message content is always text, never control tokens.

The chat template writes the turn markers (`<|im_start|>`, `</s>`, ...) and those must
become the model's control tokens. A user who types the same marker into a message must not
be able to end their turn and write the assistant's: their content is tokenized with
special tokens off, as text.

Most requests contain no control-token text at all; they are rendered and tokenized in one
piece, exactly as before. Only when some message contains such text is the template
rendered with a random marker around each message, and the rendered text split at the
markers: template text tokenized with special tokens on, message text with them off.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import llama_cpp

from siesta_server.chat import ChatTemplate, ChatTemplateError
from siesta_server.native import Model

_SPECIAL_ATTRS = (
    llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
    | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
    | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
)


def special_texts(model: Model) -> re.Pattern[str] | None:
    """A pattern of every text llama.cpp parses as a special token (cached per model)."""
    if "special_texts" not in model.caches:
        model.caches["special_texts"] = _special_pattern(model)
    cached = model.caches["special_texts"]
    return cached if isinstance(cached, re.Pattern) else None


def _special_pattern(model: Model) -> re.Pattern[str] | None:
    texts = {
        model.token_text(token)
        for token in range(model.n_vocab)
        if llama_cpp.llama_vocab_get_attr(model.vocab, token) & _SPECIAL_ATTRS
    }
    texts.discard("")
    if not texts:
        return None
    return re.compile("|".join(re.escape(t) for t in sorted(texts, key=len, reverse=True)))


def chat_tokens(model: Model, template: ChatTemplate, messages: list[dict[str, Any]]) -> list[int]:
    specials = special_texts(model)
    if specials is None or not any(specials.search(m["content"]) for m in messages):
        return _tokenize_template(model, template.render(messages))
    nonce = secrets.token_hex(8)
    opening, closing = f"\ue000{nonce}\ue001", f"\ue002{nonce}\ue003"
    marked = [{**m, "content": f"{opening}{m['content']}{closing}"} for m in messages]
    rendered = template.render(marked)
    pieces = rendered.split(opening)
    tokens = _tokenize_template(model, _template_text(pieces[0], nonce))
    for piece in pieces[1:]:
        content, found, rest = piece.partition(closing)
        if not found:
            raise _mangled()
        tokens += model.tokenize(content, add_special=False, parse_special=False)
        tokens += model.tokenize(_template_text(rest, nonce), add_special=False, parse_special=True)
    return tokens


def _mangled() -> ChatTemplateError:
    return ChatTemplateError(
        "a message contains control-token text, and this model's chat template changes "
        "message content so it cannot be kept as text; remove the markup"
    )


def _template_text(text: str, nonce: str) -> str:
    """Text the template wrote; a marker's remains in it mean content was cut or rewritten."""
    if nonce in text.lower() or any(mark in text for mark in "\ue000\ue001\ue002\ue003"):
        raise _mangled()
    return text


def _tokenize_template(model: Model, text: str) -> list[int]:
    # Templates usually write the BOS token themselves; add it only if they did not.
    bos_text = model.token_text(model.bos_token)
    add_special = model.add_bos and not (bos_text and text.startswith(bos_text))
    return model.tokenize(text, add_special=add_special, parse_special=True)
