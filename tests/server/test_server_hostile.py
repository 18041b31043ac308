"""Hostile input never takes the server down: each class of bad request from issue 21.

Real siesta-server processes on the tiny GGUF. Every request here once crashed, stalled or
grew a server (segfaulting GBNF parser, quadratic grammars, 8 GiB sampler buffers, minutes
of event-loop work, unbounded headers); each now gets a 4xx/431/503 in OpenAI's shape, the
server answers /health right afterwards, and its resident memory stays within a budget.
The reproducers are small (the point is the refusal, not recreating a 23 GB blowup).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

if TYPE_CHECKING:
    from conftest import Launcher, ServerProcess

pytestmark = pytest.mark.llama

CHAT = "/v1/chat/completions"
TEXT = "/v1/completions"
EMBED = "/v1/embeddings"
# What the whole module may add to a server's resident memory (the reproducers
# added 1.7 GB to 23 GB; the tiny model itself needs a few MB).
RSS_BUDGET_BYTES = 150 * 1024 * 1024


def rss_bytes(server: ServerProcess) -> int:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server(launch_server: Launcher, tiny_model: Path) -> Iterator[ServerProcess]:
    """One server for the module: its memory is measured across every hostile request."""
    process = launch_server(
        "--model", str(tiny_model), "--alias", "tiny", "--parallel", "2", "--ctx-size", "1024"
    )
    chat(process, max_tokens=1)  # first-request allocations are not growth
    before = rss_bytes(process)
    yield process
    assert process.process.poll() is None, process.log()
    grown = rss_bytes(process) - before
    assert grown < RSS_BUDGET_BYTES, f"the server grew by {grown / 2**20:.0f} MiB"


def post(server: ServerProcess, path: str, body: Any, timeout: float = 60) -> httpx.Response:
    if isinstance(body, bytes):
        return httpx.post(
            server.url + path,
            content=body,
            headers={"Content-Type": "application/json"},
            timeout=timeout,
        )
    return httpx.post(server.url + path, json=body, timeout=timeout)


def chat(server: ServerProcess, **fields: Any) -> httpx.Response:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}, *()], **fields}
    body.setdefault("max_tokens", 2)
    return post(server, CHAT, body)


def assert_refused(
    response: httpx.Response, status: int = 400, code: str | None = None, mentions: str = ""
) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if code is not None:
        assert error["code"] == code, error
    assert mentions in error["message"], error
    return error


def assert_healthy(server: ServerProcess) -> None:
    assert server.process.poll() is None, server.log()
    assert server.health().status_code == 200
    assert chat(server, max_tokens=1).status_code == 200


@contextlib.contextmanager
def health_stays_fast(server: ServerProcess, limit: float = 1.0) -> Iterator[None]:
    """/health answers within `limit` seconds the whole time: the event loop is free."""
    worst = [0.0]
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            started = time.monotonic()
            server.health()
            worst[0] = max(worst[0], time.monotonic() - started)
            time.sleep(0.05)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        yield
    finally:
        stop.set()
        prober.join()
    assert worst[0] < limit, f"/health took {worst[0]:.2f}s: the event loop was blocked"


# -- grammars -------------------------------------------------------------------------------


def test_deeply_nested_grammar_is_refused_not_a_segfault(server: ServerProcess) -> None:
    # 200 KB of nested groups: llama.cpp's recursive parser overflows its thread's stack.
    deep = "root ::= " + "(" * 100_000 + '"a"' + ")" * 100_000
    assert_refused(chat(server, grammar=deep), code="grammar_too_large", mentions="bytes")
    # Within the size limit, the nesting limit.
    nested = "root ::= " + "(" * 5_000 + '"a"' + ")" * 5_000
    assert_refused(
        chat(server, grammar=nested), code="grammar_too_large", mentions="--max-grammar-depth"
    )
    assert_healthy(server)


def test_grammars_that_hang_or_blow_up_llama_cpp_are_refused(server: ServerProcess) -> None:
    # {5,2}: llama.cpp computes 2 - 5 unsigned and creates rules until memory runs out.
    assert_refused(chat(server, grammar='root ::= "a"{5,2}'), mentions="below the minimum")
    # A 1,000-character literal repeated 2,000 times: 2 million elements from 1 KB.
    repeated = 'root ::= "' + "a" * 1000 + '"{2000}'
    assert_refused(chat(server, grammar=repeated), mentions="--max-grammar-elements")
    # A chain of rules costs memory quadratic in its length in llama.cpp.
    chain = "\n".join(f'r{i} ::= r{i + 1} "a" | "b"' for i in range(10_000))
    assert_refused(chat(server, grammar=f'root ::= r0\n{chain}\nr10000 ::= "c"'))
    assert_refused(chat(server, grammar='root ::= "a"\x00'), mentions="NUL")
    assert_healthy(server)


def test_rejected_grammars_are_not_logged(server: ServerProcess) -> None:
    marker = "QXZV" * 4_000  # a 16 KB grammar llama.cpp would print whole to stderr
    assert_refused(chat(server, grammar=f'root ::= "a" ) {marker}'))
    assert_refused(chat(server, grammar=f'root ::= "{marker}'))
    assert "QXZV" * 10 not in server.log()


def test_rule_count_limit(launch_server: Launcher, tiny_model: Path) -> None:
    small = launch_server(
        "--model", str(tiny_model), "--alias", "tiny", "--max-grammar-rules", "100"
    )
    chain = "\n".join(f'r{i} ::= r{i + 1} "a" | "b"' for i in range(200))
    grammar = f'root ::= r0\n{chain}\nr200 ::= "c"'
    error = assert_refused(chat(small, grammar=grammar), mentions="--max-grammar-rules")
    assert error["param"] == "grammar"
    assert chat(small, grammar='root ::= "a" | "b"').status_code == 200


def test_grammar_cost_and_compile_deadline(launch_server: Launcher, tiny_model: Path) -> None:
    # No floor: a grammar may cost 8 times what JSON mode costs on this vocabulary. A
    # 1,000-value enum costs about 40 times as much per token (the 50,000 took
    # 0.8 s per token on a 32k vocabulary).
    strict = launch_server(
        "--model", str(tiny_model), "--max-grammar-step-ms", "0.000001", "--alias", "tiny"
    )
    assert chat(strict, response_format={"type": "json_object"}).status_code == 200
    enum = {"enum": [f"value{i}" for i in range(1000)]}
    expensive = {"type": "json_schema", "json_schema": {"schema": enum}}
    assert_refused(
        chat(strict, response_format=expensive),
        code="grammar_too_expensive",
        mentions="times what JSON mode costs",
    )
    assert chat(strict).status_code == 200  # no grammar, no cost
    # A deadline no compile meets.
    hurried = launch_server(
        "--model", str(tiny_model), "--grammar-timeout", "0.000001", "--alias", "tiny"
    )
    chain = "\n".join(f'r{i} ::= r{i + 1} "a" | "b"' for i in range(1_000))
    response = chat(hurried, grammar=f'root ::= r0\n{chain}\nr1000 ::= "c"')
    assert response.status_code in (400, 503), response.text
    if response.status_code == 400:
        assert_refused(response, code="grammar_too_expensive", mentions="--grammar-timeout")
    assert_healthy(hurried)


def test_schema_limits(server: ServerProcess) -> None:
    def schema_format(schema: dict[str, Any]) -> dict[str, Any]:
        return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}

    # 50k enum values compiled for 6 s and then cost 0.8 s per token.
    huge_enum = {"enum": [f"v{i}" for i in range(50_000)]}
    assert_refused(
        chat(server, response_format=schema_format(huge_enum)), mentions="--max-schema-enum"
    )
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(40):
        deep = {"type": "array", "items": deep}
    assert_refused(chat(server, response_format=schema_format(deep)), mentions="--max-schema-depth")
    # A string longer than llama.cpp's repetition limit would be silently unbounded.
    long_string = {"type": "string", "maxLength": 100_000}
    response = chat(server, response_format=schema_format(long_string), max_tokens=4)
    assert response.status_code in (200, 400), response.text
    assert_healthy(server)


# -- sampling parameters --------------------------------------------------------------------


def test_sampling_parameters_that_allocate_are_bounded(server: ServerProcess) -> None:
    before = rss_bytes(server)
    # INT32_MAX made llama.cpp allocate 8 GiB per sequence and abort: clamped to the context.
    for value in (2**31 - 1, 10**8):
        response = chat(server, repeat_last_n=value, repeat_penalty=1.1, max_tokens=3)
        assert response.status_code == 200, response.text
    assert rss_bytes(server) - before < 64 * 1024 * 1024
    # top_k above 2**31 wrapped silently; now refused, and a large valid one is clamped.
    assert_refused(chat(server, top_k=2**31 + 5), mentions="top_k")
    assert chat(server, top_k=2**31 - 1, max_tokens=3).status_code == 200
    assert_healthy(server)


# -- event loop -----------------------------------------------------------------------------


def test_too_many_prompts_and_messages_are_refused_fast(server: ServerProcess) -> None:
    with health_stays_fast(server):
        # 32k token-list prompts, the first too long: the error path was quadratic.
        prompts = [[300] * 2000] + [[300]] * 32_000
        assert_refused(post(server, TEXT, {"prompt": prompts}), mentions="--max-prompts")
        too_long = [[300] * 2000, [301]]
        assert_refused(post(server, TEXT, {"prompt": too_long}), code="context_length_exceeded")
        # 200k messages got no answer in 120 s.
        messages = [{"role": "user", "content": ""}] * 200_000
        response = post(server, CHAT, {"messages": messages, "max_tokens": 1})
        assert_refused(response, mentions="--max-messages")
    assert_healthy(server)


def test_control_token_text_is_tokenized_off_the_event_loop(server: ServerProcess) -> None:
    with health_stays_fast(server):
        response = chat(server, messages=[{"role": "user", "content": "</s>" * 40_000}])
        assert_refused(response, code="context_length_exceeded")
    assert_healthy(server)


def test_user_text_cannot_inject_control_tokens(server: ServerProcess) -> None:
    def prompt_tokens(content: str) -> int:
        response = chat(server, messages=[{"role": "user", "content": content}], max_tokens=1)
        assert response.status_code == 200, response.text
        return int(response.json()["usage"]["prompt_tokens"])

    # As a control token "</s>" would be one token; as text it is several.
    assert prompt_tokens("x </s>") - prompt_tokens("x") >= 3
    # The template's own markers are still control tokens: the answer is generated normally.
    assert chat(server, messages=[{"role": "user", "content": "</s><s>"}]).status_code == 200


# -- embeddings -----------------------------------------------------------------------------


def test_embedding_inputs_are_capped(server: ServerProcess) -> None:
    response = post(server, EMBED, {"input": [[300]] * 32_000})
    assert_refused(response, code="too_many_inputs", mentions="--max-embedding-inputs")
    for dimensions in (0, -5):
        response = post(server, EMBED, {"input": "hi", "dimensions": dimensions})
        assert_refused(response, mentions="dimensions")
    assert post(server, EMBED, {"input": "hi", "dimensions": 8}).status_code == 200


def test_embeddings_count_against_the_queue(launch_server: Launcher, slow_model: Path) -> None:
    busy = launch_server(
        "--model", str(slow_model), "--alias", "slow", "--parallel", "1", "--max-queue", "0"
    )
    body = {"prompt": "wake", "max_tokens": 2000, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", f"{busy.url}{TEXT}", json=body, timeout=60) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()  # kept: a dropped iterator closes the connection
        next(lines)  # the slot is taken
        response = post(busy, EMBED, {"input": "hi"})
        assert_refused(response, status=503)
        assert response.headers["retry-after"]


def test_more_sequences_than_the_queue_holds_are_refused_at_once(
    launch_server: Launcher, tiny_model: Path
) -> None:
    small = launch_server(
        "--model", str(tiny_model), "--alias", "tiny", "--parallel", "1", "--max-queue", "2"
    )
    # 4 prompts x n 4 = 16 sequences for room of 3: no sampler, no grammar is built for them.
    body = {"prompt": ["a", "b", "c", "d"], "n": 4, "max_tokens": 2, "grammar": 'root ::= "x"'}
    response = post(small, TEXT, body)
    assert_refused(response, status=503, mentions="room for 3")
    assert response.headers["retry-after"]
    assert post(small, TEXT, {**body, "prompt": "a", "n": 3}).status_code == 200
    assert small.metric("llamacpp:requests_processing") == 0


def test_a_cancelled_embedding_does_not_hold_the_next(
    launch_server: Launcher, slow_model: Path
) -> None:
    server = launch_server("--model", str(slow_model), "--alias", "slow", "--ctx-size", "8192")
    inputs = [" ".join(["hello world"] * 200)] * 300  # seconds of work on the slow model
    with contextlib.suppress(httpx.TimeoutException):
        post(server, EMBED, {"input": inputs}, timeout=1.0)
    started = time.monotonic()
    assert post(server, EMBED, {"input": "hi"}).status_code == 200
    waited = time.monotonic() - started
    assert waited < 5, f"the next embedding waited {waited:.1f}s behind a cancelled one"


# -- bad input answers -------------------------------------------------------------------------

NESTED_1000 = b'{"model": "tiny", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}"
NESTED_100K = b'{"model": "tiny", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
OK_MESSAGES = [{"role": "user", "content": "hi"}]


def surrogate_body(path: str) -> bytes:
    """Bodies with a lone surrogate escape in some text field (json.dumps keeps them)."""
    lone = "\ud800"
    bodies = {
        "content": {"messages": [{"role": "user", "content": f"a{lone}"}]},
        "stop": {"messages": OK_MESSAGES, "stop": [lone]},
        "model": {"messages": OK_MESSAGES, "model": lone},
        "grammar": {"messages": OK_MESSAGES, "grammar": f'root ::= "{lone}"'},
        "schema": {
            "messages": OK_MESSAGES,
            "response_format": {"type": "json_schema", "json_schema": {"schema": {"const": lone}}},
        },
        "key": {"messages": OK_MESSAGES, "logit_bias": {lone: 1}},
    }
    return json.dumps(bodies[path]).encode()


BAD_INPUT: list[tuple[str, str, bytes | dict[str, Any]]] = [
    ("logit-bias-double-minus", CHAT, {"messages": OK_MESSAGES, "logit_bias": {"--5": 1}}),
    ("logit-bias-superscript", CHAT, {"messages": OK_MESSAGES, "logit_bias": {"²": 1}}),
    ("logit-bias-huge-number", CHAT, {"messages": OK_MESSAGES, "logit_bias": {"9" * 5000: 1}}),
    ("nested-1000", CHAT, NESTED_1000),
    ("nested-100k", CHAT, NESTED_100K),
    ("surrogate-bytes", CHAT, b'{"messages": [{"role": "user", "content": "\xed\xa0\x80"}]}'),
    *[(f"surrogate-{p}", CHAT, surrogate_body(p)) for p in ("content", "stop", "model")],
    *[(f"surrogate-{p}", CHAT, surrogate_body(p)) for p in ("grammar", "schema", "key")],
    ("surrogate-prompt", TEXT, b'{"prompt": "\\udfff"}'),
    ("surrogate-input", EMBED, b'{"input": ["ok", "\\ud83d"]}'),
    ("stop-string-too-long", CHAT, {"messages": OK_MESSAGES, "stop": ["a" * 10_000]}),
    ("stop-too-many", CHAT, {"messages": OK_MESSAGES, "stop": ["a"] * 100_000}),
    ("max-tokens-zero", CHAT, {"messages": OK_MESSAGES, "max_tokens": 0}),
    ("n-negative", CHAT, {"messages": OK_MESSAGES, "n": -1}),
    ("repeat-last-n-negative", CHAT, {"messages": OK_MESSAGES, "repeat_last_n": -1}),
    (
        "min-length-negative",
        CHAT,
        {
            "messages": OK_MESSAGES,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"schema": {"type": "string", "minLength": -1}},
            },
        },
    ),
]


@pytest.mark.parametrize(("path", "body"), [pytest.param(*c[1:], id=c[0]) for c in BAD_INPUT])
def test_bad_input_is_a_400_in_openai_shape(
    server: ServerProcess, path: str, body: bytes | dict[str, Any]
) -> None:
    assert_refused(post(server, path, body))
    assert server.process.poll() is None


def test_a_valid_surrogate_pair_is_text(server: ServerProcess) -> None:
    body = b'{"messages": [{"role": "user", "content": "\\ud83d\\ude00"}], "max_tokens": 1}'
    assert post(server, CHAT, body).status_code == 200


# -- HTTP ----------------------------------------------------------------------------------------


def raw_exchange(server: ServerProcess, data: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(data)
        return read_until_closed(sock)


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def test_huge_headers_are_a_431(server: ServerProcess) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1024 * 1024) + b"\r\n\r\n"
    answer = raw_exchange(server, head)
    assert status_of(answer) == 431, answer[:200]
    assert b'"code": "request_header_fields_too_large"' in answer
    many = b"GET /health HTTP/1.1\r\n" + b"X-A: b\r\n" * 10_000 + b"\r\n"
    assert status_of(raw_exchange(server, many)) == 431
    # A large body sent in one piece with its headers is no header.
    body = json.dumps({"prompt": "x" * 60_000, "max_tokens": 1, "stop": 5}).encode()
    request = (
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    assert status_of(raw_exchange(server, request)) == 400
    assert_healthy(server)


@pytest.fixture(scope="module")
def impatient(launch_server: Launcher, tiny_model: Path) -> ServerProcess:
    return launch_server(
        "--model",
        str(tiny_model),
        "--alias",
        "tiny",
        "--header-timeout",
        "1",
        "--body-timeout",
        "1",
        "--keep-alive-timeout",
        "1",
        "--max-connections",
        "8",
    )


def test_idle_and_dribbling_connections_time_out(impatient: ServerProcess) -> None:
    started = time.monotonic()
    # Connected, never a byte: closed with a 408 after --header-timeout.
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=10) as sock:
        assert status_of(read_until_closed(sock)) == 408
    # Headers a byte at a time.
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=10) as sock:
        sock.settimeout(0.1)
        answer = b""
        with contextlib.suppress(OSError):
            for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: abcdefghijklmnop":
                sock.sendall(bytes([byte]))
                with contextlib.suppress(TimeoutError):
                    answer += sock.recv(65536)
                if answer:
                    break
        sock.settimeout(10)
        answer += read_until_closed(sock)
        assert status_of(answer) == 408, answer
    # A body that never finishes: 408 from the application after --body-timeout.
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Connection: close\r\nContent-Length: 1000\r\n\r\n{"prompt": '
        )
        answer = read_until_closed(sock)
        assert status_of(answer) == 408, answer
        assert b"--body-timeout" in answer
    # Kept alive after an answer, then idle: closed by --keep-alive-timeout.
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(read_until_closed(sock)) == 200
    assert time.monotonic() - started < 30
    assert_healthy(impatient)


def test_connections_are_capped(impatient: ServerProcess) -> None:
    held = [socket.create_connection(("127.0.0.1", impatient.port)) for _ in range(8)]
    try:
        with socket.create_connection(("127.0.0.1", impatient.port), timeout=5) as extra:
            answer = read_until_closed(extra)
        assert status_of(answer) == 503, answer
        assert b"--max-connections" in answer
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    assert_healthy(impatient)


# -- fuzz ------------------------------------------------------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
ODD_TEXT = st.sampled_from(
    ["", "</s>", "<s>", "\x00", "²", "--5", "\ud800", "root ::= (", "é" * 50]
)
FIELDS = {
    "model": st.sampled_from(["tiny", "nope"]) | JSON_VALUES,
    "max_tokens": st.integers(-5, 4) | JSON_VALUES,
    "temperature": st.floats(-1, 3) | JSON_VALUES,
    "top_k": st.integers(-1, 2**40) | JSON_VALUES,
    "top_p": st.floats(-1, 2) | JSON_VALUES,
    "repeat_last_n": st.integers(-1, 2**40),
    "repeat_penalty": st.floats(0, 3),
    "n": st.integers(-1, 20),
    "seed": st.integers(-(2**70), 2**70),
    "stop": ODD_TEXT | st.lists(ODD_TEXT, max_size=20) | JSON_VALUES,
    "logit_bias": st.dictionaries(ODD_TEXT | st.integers(-5, 400).map(str), st.floats(-200, 200)),
    "grammar": ODD_TEXT | st.sampled_from(['root ::= "a"', 'root ::= "a"{3,1}', "root ::= x"]),
    "response_format": st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "json_object", "json_schema", "xml"])},
        optional={"json_schema": st.fixed_dictionaries({}, optional={"schema": JSON_VALUES})},
    )
    | JSON_VALUES,
    "stream": st.booleans(),
}
MESSAGES = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant", "wizard"])},
        optional={"content": ODD_TEXT | JSON_VALUES},
    ),
    max_size=4,
)


@settings(
    derandomize=True,
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    kind=st.sampled_from([CHAT, TEXT, EMBED]),
    messages=MESSAGES,
    prompt=ODD_TEXT | JSON_VALUES | st.lists(st.integers(-5, 400), max_size=5),
    fields=st.fixed_dictionaries({}, optional=FIELDS),
)
def test_fuzzed_requests_never_get_a_5xx(
    server: ServerProcess, kind: str, messages: Any, prompt: Any, fields: dict[str, Any]
) -> None:
    body = dict(fields)
    if kind == CHAT:
        body["messages"] = messages
    elif kind == TEXT:
        body["prompt"] = prompt
    else:
        body = {"input": prompt, **{k: v for k, v in fields.items() if k == "model"}}
    if isinstance(body.get("max_tokens"), int) or "max_tokens" not in body:
        body["max_tokens"] = min(int(body.get("max_tokens", 2)), 4)
    response = post(server, kind, json.dumps(body, allow_nan=True).encode())
    assert response.status_code < 500, (body, response.text[:300])
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert server.process.poll() is None, server.log()
