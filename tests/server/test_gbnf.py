"""siesta_server.gbnf follows llama.cpp's GBNF parser: what it passes, llama.cpp parses.

Checked against the real parser (llama_sampler_init_grammar on the tiny model's vocabulary):
a grammar the checker accepts must never make llama.cpp print "error parsing grammar", and a
syntax error the checker reports must be one llama.cpp reports too. Limits are checked on
grammars that would crash or hang llama.cpp, which is therefore never given them.
"""

from __future__ import annotations

import llama_cpp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siesta_server.gbnf import (
    GrammarLimitError,
    GrammarLimits,
    GrammarSyntaxError,
    check_gbnf,
)
from siesta_server.native import Model

pytestmark = pytest.mark.llama

LIMITS = GrammarLimits(max_depth=64, max_rules=4096, max_elements=256 * 1024)


def check(model: Model, text: str, limits: GrammarLimits = LIMITS) -> None:
    check_gbnf(
        text,
        limits,
        n_vocab=model.n_vocab,
        token_count=lambda piece: len(model.tokenize(piece, add_special=False, parse_special=True)),
    )


def llama_cpp_grammar(model: Model, text: str, capfd: pytest.CaptureFixture[str]) -> bool:
    """Whether llama.cpp makes a grammar sampler of `text`; fails if its parser printed it."""
    capfd.readouterr()
    sampler = llama_cpp.llama_sampler_init_grammar(model.vocab, text.encode(), b"root")
    if sampler:
        llama_cpp.llama_sampler_free(sampler)
    return bool(sampler)


def llama_parses(model: Model, text: str, capfd: pytest.CaptureFixture[str]) -> bool:
    """Whether llama.cpp's parser accepts `text` (a missing root or left recursion is
    refused after parsing, with a one-line log)."""
    llama_cpp_grammar(model, text, capfd)
    return "error parsing grammar" not in capfd.readouterr().err


VALID = [
    'root ::= "a"',
    'root ::= ("a" | "b")* "c"',
    "root ::= [a-z]{2,5}",
    'root ::= x\nx ::= "y"',
    'root ::= "a"{0} "b"',
    '# comment\nroot ::= "a" # trailing\n\n',
    "root ::= <[5]> !<[6]>",
    "root ::= <s> .",
    r'root ::= [\x41-\u005A\]\-] "\t\"\\"',
    'root ::= "a"? "b"+ "c"{3,} "d"{2000}',
    'root ::=\n  "a" |\n  "b"',
    'root ::= ( "a"\n | "b" )',
    'root ::= "a"{1,3000}',
    "root ::= [^\\n]*",
    'root ::= "é" [à-ü]',
]

INVALID = [
    "root ::= (",
    'root ::= "a',
    "root ::= x",
    'rot ::= "a"',
    'root ::= "a" {2',
    "root ::= *",
    r'root ::= "\q"',
    "root ::= [a-",
    'root ::= "a"{2001}',
    'root := "a"',
    'root ::= "a" )',
    'root ::= "a" | *',
    "root ::= <nosuchtoken>",
    r'root ::= "\x4"',
    'root ::= "a"{,3}',
    'root ::= ("a"{0,100}){0,100}',
    'root ::= "a"\n  | "b"',
]


@pytest.mark.parametrize("text", VALID)
def test_valid_grammars_pass_and_llama_cpp_parses_them(
    model: Model, text: str, capfd: pytest.CaptureFixture[str]
) -> None:
    check(model, text)
    assert llama_cpp_grammar(model, text, capfd)
    assert "error parsing grammar" not in capfd.readouterr().err


@pytest.mark.parametrize("text", INVALID)
def test_syntax_errors_are_llama_cpp_errors_too(
    model: Model, text: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(GrammarSyntaxError):
        check(model, text)
    assert not llama_cpp_grammar(model, text, capfd)


# Each of these would crash, hang or blow up llama.cpp: they never go near it.
def test_deep_nesting_is_refused_without_recursion(model: Model) -> None:
    deep = "root ::= " + "(" * 100_000 + '"a"' + ")" * 100_000
    with pytest.raises(GrammarLimitError) as error:
        check(model, deep)
    assert error.value.flag == "--max-grammar-depth"


def test_reversed_repetition_bounds_are_refused(model: Model) -> None:
    # llama.cpp computes max - min unsigned: 2**64 rules.
    with pytest.raises(GrammarSyntaxError, match="below the minimum"):
        check(model, 'root ::= "a"{5,2}')


def test_rule_chains_are_counted(model: Model) -> None:
    chain = "\n".join(f'r{i} ::= r{i + 1} "a" | "b"' for i in range(5000))
    grammar = f'root ::= r0\n{chain}\nr5000 ::= "c"'
    with pytest.raises(GrammarLimitError) as error:
        check(model, grammar)
    assert error.value.flag == "--max-grammar-rules"


def test_repeated_long_literals_are_counted(model: Model) -> None:
    grammar = 'root ::= "' + "a" * 1000 + '"{2000}'
    with pytest.raises(GrammarLimitError) as error:
        check(model, grammar)
    assert error.value.flag == "--max-grammar-elements"


def test_nul_and_out_of_vocabulary_tokens_are_refused(model: Model) -> None:
    with pytest.raises(GrammarSyntaxError, match="NUL"):
        check(model, 'root ::= "a"\x00garbage')
    with pytest.raises(GrammarSyntaxError, match="vocabulary"):
        check(model, f"root ::= <[{model.n_vocab}]>")


def test_errors_quote_a_bounded_excerpt(model: Model) -> None:
    grammar = "root ::= (" + "x" * 10_000 + " ]"
    with pytest.raises(GrammarSyntaxError) as error:
        check(model, grammar)
    assert len(str(error.value)) < 200


PIECES = ["root", " ::= ", '"a"', "(", ")", "|", "*", "+", "?", "{1,2}", "{2}", "[a-z]", "x"]
PIECES += ["\n", "\nx ::= ", ".", "# c\n", " ", "[^", "]", '"', "\\", "{", ",", "}", "<s>"]


@settings(
    derandomize=True,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=12))
def test_whatever_passes_the_checker_llama_cpp_parses(
    model: Model, capfd: pytest.CaptureFixture[str], pieces: list[str]
) -> None:
    text = "root ::= " + "".join(pieces)
    try:
        check(model, text)
    except (GrammarSyntaxError, GrammarLimitError):
        return
    assert llama_parses(model, text, capfd), text
