"""Check a GBNF grammar before llama.cpp sees it: its syntax, size, nesting and rule count.

llama.cpp's grammar parser (llama-grammar.cpp) is recursive descent: one C++ frame per
nested group, so a grammar of 100,000 nested parentheses overflows a thread's stack and
kills the process. On a syntax error it prints the whole grammar to stderr. Its `{m,n}` with
n < m loops (almost) forever creating rules, and a repetition of a long literal multiplies
the literal's elements. This module walks the grammar the way llama.cpp's parser does, but
iteratively and counting, so every grammar it passes parses in llama.cpp without an error,
within the limits given; everything else is refused here with a short message.

It follows llama.cpp's parser line by line (parse_space, parse_name, parse_char,
parse_sequence, handle_repetitions, parse_rule, the undefined-rule check); keep the two in
step when llama-cpp-python is upgraded (tests/server/test_gbnf.py parses real grammars).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# llama-grammar.cpp's MAX_REPETITION_THRESHOLD.
MAX_REPETITION = 2000
_UINT32_MAX = 2**32 - 1
_UINT64_MAX = 2**64 - 1
_EXCERPT = 32  # characters of the grammar quoted in an error, at most
_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789")
_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")
_SIMPLE_ESCAPES = frozenset('trn\\"[]-')


class GrammarSyntaxError(ValueError):
    """llama.cpp would refuse this grammar (and print all of it to stderr)."""


class GrammarLimitError(ValueError):
    """The grammar is valid but larger than a configured limit."""

    def __init__(self, message: str, flag: str) -> None:
        super().__init__(message)
        self.flag = flag


@dataclass(frozen=True)
class GrammarLimits:
    max_depth: int  # nested groups
    max_rules: int  # rules llama.cpp creates: named, groups, and repetitions' helpers
    max_elements: int  # elements of all rules after repetitions are expanded


@dataclass(frozen=True)
class GrammarShape:
    depth: int
    rules: int
    elements: int


@dataclass
class _Frame:
    """One rule being parsed: a top-level rule or a parenthesized group."""

    rule_name: str
    rule_id: int
    nested: bool
    symbols_before: int = 0
    length: int = 0  # elements in the rule so far
    last_start: int = 0  # where the last symbol starts (llama.cpp's last_sym_start)
    prev_rules: int = 1  # llama.cpp's n_prev_rules


class _Checker:
    def __init__(
        self, text: str, limits: GrammarLimits, token_count: Callable[[str], int], n_vocab: int
    ) -> None:
        self.text = text
        self.limits = limits
        self.token_count = token_count
        self.n_vocab = n_vocab
        self.symbols: dict[str, int] = {}
        self.defined: set[int] = set()
        self.referenced: dict[int, str] = {}
        self.elements = 0
        self.depth = 0

    # -- characters ----------------------------------------------------------------------

    def at(self, i: int) -> str:
        return self.text[i] if i < len(self.text) else ""

    def fail(self, what: str, i: int) -> GrammarSyntaxError:
        near = self.text[i : i + _EXCERPT]
        return GrammarSyntaxError(
            f"invalid GBNF grammar at offset {i}: {what}" + (f" (near {near!r})" if near else "")
        )

    def space(self, i: int, newline_ok: bool) -> int:
        text = self.text
        while i < len(text):
            char = text[i]
            if char == "#":
                while i < len(text) and text[i] not in "\r\n":
                    i += 1
            elif char in " \t" or (newline_ok and char in "\r\n"):
                i += 1
            else:
                break
        return i

    def name(self, i: int) -> int:
        start = i
        while self.at(i) in _WORD and self.at(i):
            i += 1
        if i == start:
            raise self.fail("expecting a name", i)
        return i

    def integer(self, i: int) -> int:
        start = i
        while self.at(i) in _DIGITS and self.at(i):
            i += 1
        if i == start:
            raise self.fail("expecting an integer", i)
        if i - start > 20 or int(self.text[start:i]) > _UINT64_MAX:
            raise self.fail("integer too large", start)
        return i

    def char(self, i: int) -> int:
        if self.at(i) == "\\":
            kind = self.at(i + 1)
            size = {"x": 2, "u": 4, "U": 8}.get(kind)
            if size is not None:
                digits = self.text[i + 2 : i + 2 + size]
                if len(digits) != size or any(c not in _HEX for c in digits):
                    raise self.fail(f"expecting {size} hex digits", i)
                return i + 2 + size
            if kind and kind in _SIMPLE_ESCAPES:
                return i + 2
            raise self.fail("unknown escape", i)
        if self.at(i):
            return i + 1
        raise self.fail("unexpected end of input", i)

    def token(self, i: int) -> int:
        """`<[ID]>` or `<TEXT>` (one token of the model's vocabulary); i is at '<'."""
        start = i
        if self.at(i) != "<":
            raise self.fail("expecting '<'", i)
        i += 1
        if self.at(i) == "[":
            end = self.integer(i + 1)
            token_id = int(self.text[i + 1 : end])
            if token_id > _UINT32_MAX or token_id >= self.n_vocab:
                raise self.fail(f"token id {token_id} is not in the vocabulary", i)
            if self.at(end) != "]" or self.at(end + 1) != ">":
                raise self.fail("expecting ']>'", end)
            return end + 2
        end = self.text.find(">", i)
        if end < 0:
            raise self.fail("expecting '>'", i)
        if self.token_count(self.text[start : end + 1]) != 1:
            raise self.fail("not exactly one token of the vocabulary", start)
        return end + 1

    # -- symbols -------------------------------------------------------------------------

    def symbol(self, name: str) -> int:
        found = self.symbols.get(name)
        if found is None:
            found = self.symbols[name] = len(self.symbols)
            self.count_rules()
        return found

    def generated(self, base: str) -> int:
        next_id = len(self.symbols)
        self.symbols[f"{base}_{next_id}"] = next_id
        self.count_rules()
        return next_id

    def count_rules(self) -> None:
        if len(self.symbols) > self.limits.max_rules:
            raise GrammarLimitError(
                f"the grammar needs more than {self.limits.max_rules} rules "
                "(repetitions and groups count too)",
                "--max-grammar-rules",
            )

    def add_elements(self, count: int) -> None:
        self.elements += count
        if self.elements > self.limits.max_elements:
            raise GrammarLimitError(
                f"the grammar expands to more than {self.limits.max_elements} elements "
                "(a repetition copies what it repeats)",
                "--max-grammar-elements",
            )

    # -- structure -----------------------------------------------------------------------

    def repeat(self, frame: _Frame, low: int, high: int | None, i: int) -> None:
        """llama.cpp's handle_repetitions; high None: no upper bound."""
        if frame.last_start == frame.length:
            raise self.fail("expecting an item before */+/?/{", i)
        if high is not None and high < low:
            raise self.fail(f"repetition {{{low},{high}}}: the maximum is below the minimum", i)
        previous = frame.length - frame.last_start
        total = high if high is not None and high > 0 else (low if low > 0 else 1)
        if frame.prev_rules * total > MAX_REPETITION:
            raise self.fail(
                f"repetitions of repetitions exceed {MAX_REPETITION} (llama.cpp's limit)", i
            )
        if low == 0:
            self.add_elements(-previous)
            frame.length = frame.last_start
        else:
            self.add_elements((low - 1) * previous)
            frame.length += (low - 1) * previous
        optional = 1 if high is None else high - low
        for _ in range(optional):
            self.generated(frame.rule_name)
        self.add_elements(optional * (previous + 3))
        if optional > 0:
            frame.length += 1
            self.add_elements(1)
        frame.prev_rules *= total

    def push(self, frame: _Frame, count: int = 1) -> None:
        frame.last_start = frame.length
        frame.prev_rules = 1
        frame.length += count
        self.add_elements(count)

    def sequence(self, i: int, frame: _Frame) -> tuple[int, bool]:
        """Parse symbols until the sequence ends; (position, True) when a '(' opens a group."""
        nested = frame.nested
        while i < len(self.text):
            char = self.text[i]
            if char == '"':
                start, i, count = i, i + 1, 0
                while self.at(i) != '"':
                    if not self.at(i):
                        raise self.fail("unterminated string", start)
                    i = self.char(i)
                    count += 1
                self.push(frame, count)
                i = self.space(i + 1, nested)
            elif char == "[":
                start, i, count = i, i + 1, 0
                if self.at(i) == "^":
                    i += 1
                while self.at(i) != "]":
                    if not self.at(i):
                        raise self.fail("unterminated character class", start)
                    i = self.char(i)
                    count += 1
                    if self.at(i) == "-" and self.at(i + 1) != "]":
                        if not self.at(i + 1):
                            raise self.fail("unexpected end of input", i)
                        i = self.char(i + 1)
                        count += 1
                self.push(frame, count)
                i = self.space(i + 1, nested)
            elif char in "<!":
                i = self.token(i + 1 if char == "!" else i)
                self.push(frame)
                i = self.space(i, nested)
            elif char in _WORD:
                end = self.name(i)
                name = self.text[i:end]
                self.referenced.setdefault(self.symbol(name), name)
                self.push(frame)
                i = self.space(end, nested)
            elif char == "(":
                return self.space(i + 1, True), True
            elif char == ".":
                self.push(frame)
                i = self.space(i + 1, nested)
            elif char in "*+?":
                i = self.space(i + 1, nested)
                self.repeat(frame, 0 if char != "+" else 1, None if char != "?" else 1, i)
            elif char == "{":
                i = self.braces(i, frame)
            else:
                break
        return i, False

    def braces(self, i: int, frame: _Frame) -> int:
        start = i
        nested = frame.nested
        i = self.space(i + 1, nested)
        if not self.at(i) or self.at(i) not in _DIGITS:
            raise self.fail("expecting an integer", i)
        end = self.integer(i)
        low = int(self.text[i:end])
        i = self.space(end, nested)
        high: int | None
        if self.at(i) == "}":
            high = low
            i = self.space(i + 1, nested)
        elif self.at(i) == ",":
            i = self.space(i + 1, nested)
            high = None
            if self.at(i) and self.at(i) in _DIGITS:
                end = self.integer(i)
                high = int(self.text[i:end])
                i = self.space(end, nested)
            if self.at(i) != "}":
                raise self.fail("expecting '}'", i)
            i = self.space(i + 1, nested)
        else:
            raise self.fail("expecting ','", i)
        if low > MAX_REPETITION:
            raise self.fail(f"more than {MAX_REPETITION} repetitions (llama.cpp's limit)", start)
        if high is not None and high > MAX_REPETITION:
            high = None  # llama.cpp reads a larger maximum as "no maximum"
        self.repeat(frame, low, high, start)
        return i

    def alternates(self, i: int, rule_name: str, rule_id: int) -> int:
        """parse_alternates of a top-level rule, groups on an explicit stack."""
        stack = [_Frame(rule_name, rule_id, nested=False)]
        while True:
            frame = stack[-1]
            i, opened = self.sequence(i, frame)
            if opened:
                if len(stack) > self.limits.max_depth:
                    raise GrammarLimitError(
                        f"the grammar nests groups deeper than {self.limits.max_depth}",
                        "--max-grammar-depth",
                    )
                before = len(self.symbols)
                group = self.generated(frame.rule_name)
                stack.append(_Frame(frame.rule_name, group, nested=True, symbols_before=before))
                self.depth = max(self.depth, len(stack) - 1)
                continue
            if self.at(i) == "|":
                frame.length += 1
                self.add_elements(1)
                frame.last_start, frame.prev_rules = frame.length, 1
                i = self.space(i + 1, True)
                continue
            self.add_elements(1)  # END
            self.defined.add(frame.rule_id)
            stack.pop()
            if not stack:
                return i
            parent = stack[-1]
            made = len(self.symbols) - frame.symbols_before
            self.push(parent)
            parent.prev_rules = max(1, made)
            if self.at(i) != ")":
                raise self.fail("expecting ')'", i)
            i = self.space(i + 1, parent.nested)

    def rule(self, i: int) -> int:
        end = self.name(i)
        name = self.text[i:end]
        rule_id = self.symbol(name)
        i = self.space(end, False)
        if self.text[i : i + 3] != "::=":
            raise self.fail("expecting '::='", i)
        i = self.alternates(self.space(i + 3, True), name, rule_id)
        if self.at(i) == "\r":
            i += 2 if self.at(i + 1) == "\n" else 1
        elif self.at(i) == "\n":
            i += 1
        elif self.at(i):
            raise self.fail("expecting a newline or the end", i)
        return self.space(i, True)

    def run(self) -> GrammarShape:
        i = self.space(0, True)
        while i < len(self.text):
            i = self.rule(i)
        for symbol_id, name in self.referenced.items():
            if symbol_id not in self.defined:
                raise GrammarSyntaxError(
                    f"invalid GBNF grammar: the rule {name[:_EXCERPT]!r} is used but not defined"
                )
        if self.symbols.get("root") not in self.defined:
            raise GrammarSyntaxError("invalid GBNF grammar: no 'root' rule")
        return GrammarShape(depth=self.depth, rules=len(self.symbols), elements=self.elements)


def check_gbnf(
    text: str,
    limits: GrammarLimits,
    *,
    n_vocab: int,
    token_count: Callable[[str], int],
) -> GrammarShape:
    """The grammar's shape, or GrammarSyntaxError / GrammarLimitError.

    `token_count` tokenizes a `<...>` token reference (special tokens parsed), as llama.cpp
    does to resolve it; it must be exactly one token.
    """
    if "\x00" in text:
        # llama.cpp reads the grammar as a C string: it would silently end there.
        raise GrammarSyntaxError("invalid GBNF grammar: it contains a NUL character")
    return _Checker(text, limits, token_count, n_vocab).run()
