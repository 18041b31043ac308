"""Command line and environment: every flag can also come from a SIESTA_* variable.

The operator configures pods through environment variables; people use flags. A flag wins
over its variable, and the variable over the default.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

DEFAULT_PORT = 8080
DEFAULT_CACHE_DIR = "~/.cache/siesta/models"
# Adapter names are OpenAI model names and, in a cluster, unique names across the gateway:
# DNS labels, like ModelDeployment names.
ADAPTER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class LoraSpec:
    """One `--lora NAME=PATH_OR_URI[@SCALE]`: a LoRA adapter served as model `name`."""

    name: str
    uri: str
    scale: float = 1.0
    sha256: str | None = None


def parse_lora(text: str) -> LoraSpec:
    """`NAME=PATH_OR_URI[@SCALE]`; a trailing `@...` is a scale only if it is a number."""
    name, sep, rest = text.strip().partition("=")
    if not sep or not name or not rest:
        raise ConfigError(f"--lora {text!r}: expected NAME=PATH_OR_URI[@SCALE]")
    if not ADAPTER_NAME.match(name):
        raise ConfigError(
            f"--lora {text!r}: the name {name!r} must be a DNS label (lower-case letters, "
            "digits and '-', at most 63 characters)"
        )
    uri, at, tail = rest.rpartition("@")
    scale = 1.0
    if at:
        try:
            scale = float(tail)
        except ValueError:
            uri = rest  # an '@' inside the URI (user@host), not a scale
        else:
            if not math.isfinite(scale):
                raise ConfigError(f"--lora {text!r}: the scale must be a finite number")
    else:
        uri = rest
    return LoraSpec(name=name, uri=uri, scale=scale)


@dataclass(frozen=True)
class ServerConfig:
    model: str
    sha256: str | None = None
    alias: str | None = None
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    metrics_port: int = 0
    """A second port that serves only /metrics (0: none); /metrics stays on `port` too."""
    ctx_size: int = 4096
    parallel: int = 4
    gpu_layers: int = -1
    require_gpu: bool = False
    """Refuse to start unless the model runs on a GPU (the operator sets it for GPU models)."""
    cache_dir: Path = field(default_factory=lambda: Path(DEFAULT_CACHE_DIR).expanduser())
    threads: int = 0
    batch_size: int = 2048
    max_queue: int = 64
    drain_timeout: float = 30.0
    max_body_bytes: int = 8 * 1024 * 1024
    log_level: str = "info"
    cache_keep: int = 1
    fetch_connections: int = 8  # parallel ranged reads of a remote model (source/ranged.py)
    termination_log: Path | None = None
    loras: tuple[LoraSpec, ...] = ()
    api_key_file: Path | None = None
    # Request limits (docs/server.md, "Limits"): each refuses with a 400 naming its flag.
    max_grammar_bytes: int = 64 * 1024
    max_grammar_depth: int = 64
    max_grammar_rules: int = 4096
    max_grammar_elements: int = 256 * 1024
    max_schema_depth: int = 32
    max_schema_enum: int = 1000
    grammar_timeout: float = 2.0
    max_grammar_step_ms: float = 20.0
    max_messages: int = 2048
    max_prompts: int = 16
    max_embedding_inputs: int = 512
    # HTTP limits (docs/server.md, "Limits").
    max_header_bytes: int = 32 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    max_connections: int = 1024

    @property
    def model_id(self) -> str:
        """The name clients use in the `model` field (llama.cpp uses the file name)."""
        if self.alias:
            return self.alias
        model = self.model
        if model.startswith("hf://") and "@" in model:
            model = model.rsplit("@", 1)[0]  # hf://ORG/REPO/FILE@REVISION
        tail = model.rstrip("/").rsplit("/", 1)[-1]
        return tail.split("?", 1)[0] or self.model

    @property
    def slot_context(self) -> int:
        """Tokens per parallel slot, as llama.cpp splits `--ctx-size` over `--parallel`."""
        return self.ctx_size // self.parallel


def switch(text: str) -> bool:
    """An on/off value: 1/true/yes/on or 0/false/no/off."""
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(text)


# flag, environment variable, type, help. Order is the order of `--help`.
_OPTIONS: list[tuple[str, str, Callable[[str], object], str]] = [
    (
        "--model",
        "SIESTA_MODEL",
        str,
        "GGUF to serve: a path, file://, http(s)://, s3://BUCKET/KEY or hf://ORG/REPO/FILE[@REV]",
    ),
    ("--sha256", "SIESTA_SHA256", str, "expected SHA-256 of the GGUF (hex); checked before use"),
    ("--alias", "SIESTA_ALIAS", str, "model name in the API (default: the file name)"),
    ("--host", "SIESTA_HOST", str, "address to listen on (default 0.0.0.0)"),
    ("--port", "SIESTA_PORT", int, f"port to listen on (default {DEFAULT_PORT})"),
    (
        "--metrics-port",
        "SIESTA_METRICS_PORT",
        int,
        "also serve /metrics alone on this port, for a scraper kept off the API port (0: off)",
    ),
    ("--ctx-size", "SIESTA_CTX_SIZE", int, "total context in tokens, split over slots"),
    ("--parallel", "SIESTA_PARALLEL", int, "sequences decoded together (slots, default 4)"),
    ("--gpu-layers", "SIESTA_GPU_LAYERS", int, "layers to offload to the GPU (-1: all)"),
    (
        "--require-gpu",
        "SIESTA_REQUIRE_GPU",
        switch,
        "exit 1 instead of running on the CPU: no GPU backend or device, too few layers "
        "offloaded, or not enough free GPU memory (default off)",
    ),
    ("--cache-dir", "SIESTA_CACHE_DIR", str, f"where downloads go (default {DEFAULT_CACHE_DIR})"),
    ("--threads", "SIESTA_THREADS", int, "CPU threads for decoding (0: all cores)"),
    ("--batch-size", "SIESTA_BATCH_SIZE", int, "most tokens per decode call (default 2048)"),
    ("--max-queue", "SIESTA_MAX_QUEUE", int, "requests waiting for a slot before 503 (64)"),
    ("--drain-timeout", "SIESTA_DRAIN_TIMEOUT", float, "seconds to finish requests on SIGTERM"),
    ("--max-body-bytes", "SIESTA_MAX_BODY_BYTES", int, "largest request body accepted (8 MiB)"),
    ("--log-level", "SIESTA_LOG_LEVEL", str, "debug, info, warning or error"),
    ("--cache-keep", "SIESTA_CACHE_KEEP", int, "other model versions kept in the cache (1)"),
    (
        "--fetch-connections",
        "SIESTA_FETCH_CONNECTIONS",
        int,
        "connections a download uses, each reading its own byte ranges (8; 1: one stream)",
    ),
    (
        "--termination-log",
        "SIESTA_TERMINATION_LOG",
        str,
        "file for the cause of a fatal exit (default /dev/termination-log if it exists)",
    ),
    (
        "--api-key-file",
        "SIESTA_API_KEY_FILE",
        str,
        "file of API keys, one a line: /v1 needs 'Authorization: Bearer KEY' (default: open)",
    ),
    ("--max-grammar-bytes", "SIESTA_MAX_GRAMMAR_BYTES", int, "largest grammar (65536)"),
    ("--max-grammar-depth", "SIESTA_MAX_GRAMMAR_DEPTH", int, "most nested grammar groups (64)"),
    ("--max-grammar-rules", "SIESTA_MAX_GRAMMAR_RULES", int, "most rules in a grammar (4096)"),
    (
        "--max-grammar-elements",
        "SIESTA_MAX_GRAMMAR_ELEMENTS",
        int,
        "most grammar elements once repetitions are expanded (262144)",
    ),
    ("--max-schema-depth", "SIESTA_MAX_SCHEMA_DEPTH", int, "most nesting in a JSON schema (32)"),
    ("--max-schema-enum", "SIESTA_MAX_SCHEMA_ENUM", int, "most enum values in a schema (1000)"),
    (
        "--grammar-timeout",
        "SIESTA_GRAMMAR_TIMEOUT",
        float,
        "seconds to compile a request's grammar before a 400 (2)",
    ),
    (
        "--max-grammar-step-ms",
        "SIESTA_MAX_GRAMMAR_STEP_MS",
        float,
        "milliseconds per token a grammar may always cost, measured; more is allowed up to 8x "
        "what JSON mode costs on the model (20)",
    ),
    ("--max-messages", "SIESTA_MAX_MESSAGES", int, "most messages in a chat request (2048)"),
    ("--max-prompts", "SIESTA_MAX_PROMPTS", int, "most prompts in a completions list (16)"),
    (
        "--max-embedding-inputs",
        "SIESTA_MAX_EMBEDDING_INPUTS",
        int,
        "most inputs in an embeddings request (512)",
    ),
    (
        "--max-header-bytes",
        "SIESTA_MAX_HEADER_BYTES",
        int,
        "largest request line and headers; more is a 431 (32768)",
    ),
    (
        "--header-timeout",
        "SIESTA_HEADER_TIMEOUT",
        float,
        "seconds for a request's headers to arrive (10)",
    ),
    ("--body-timeout", "SIESTA_BODY_TIMEOUT", float, "seconds for a request's body to arrive (30)"),
    (
        "--keep-alive-timeout",
        "SIESTA_KEEP_ALIVE_TIMEOUT",
        float,
        "seconds an idle connection stays open (5)",
    ),
    (
        "--max-connections",
        "SIESTA_MAX_CONNECTIONS",
        int,
        "open connections before new requests get a 503 (1024)",
    ),
]

# Repeatable flags; their variables hold several values separated by whitespace.
_LIST_OPTIONS: list[tuple[str, str, str]] = [
    (
        "--lora",
        "SIESTA_LORA",
        "serve a LoRA adapter of the model as NAME=PATH_OR_URI[@SCALE] (repeatable; the URI "
        "is fetched and cached like --model)",
    ),
    (
        "--lora-sha256",
        "SIESTA_LORA_SHA256",
        "expected SHA-256 of an adapter as NAME=HEX (repeatable)",
    ),
]

ENVIRONMENT_VARIABLES = {flag: env for flag, env, _, _ in _OPTIONS} | {
    flag: env for flag, env, _ in _LIST_OPTIONS
}


class ConfigError(ValueError):
    """The command line or environment does not describe a runnable server."""


# llama.cpp's llama-server spellings people pass in extraArgs, and what siesta-server calls them.
_LLAMA_CPP_FLAGS = {
    "-m": "--model",
    "-a": "--alias",
    "-c": "--ctx-size",
    "-np": "--parallel",
    "-ngl": "--gpu-layers",
    "--n-gpu-layers": "--gpu-layers",
    "-t": "--threads",
    "-b": "--batch-size",
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is a ConfigError naming the valid flags instead of an exit."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def unknown_flags_message(unknown: Sequence[str]) -> str:
    given = [arg for arg in unknown if arg.startswith("-")] or list(unknown)
    hints = [
        f"{arg} is {_LLAMA_CPP_FLAGS[arg.split('=', 1)[0]]} here"
        for arg in given
        if arg.split("=", 1)[0] in _LLAMA_CPP_FLAGS
    ]
    valid = " ".join([*(flag for flag, _, _, _ in _OPTIONS), *(f for f, _, _ in _LIST_OPTIONS)])
    return (
        f"unknown argument(s) {' '.join(unknown)}: siesta-server takes only its own flags "
        f"(not llama.cpp's){'; ' + ', '.join(hints) if hints else ''}. Valid flags: {valid}"
    )


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="siesta-server",
        description="OpenAI-compatible llama.cpp server with /health and Prometheus /metrics.",
        epilog="Every flag can also be set with the environment variable shown in brackets.",
    )
    for flag, env, kind, help_text in _OPTIONS:
        if kind is switch:  # `--flag` alone turns it on; `--flag=0` off
            parser.add_argument(
                flag, type=kind, nargs="?", const=True, default=None, help=f"{help_text} [{env}]"
            )
            continue
        parser.add_argument(flag, type=kind, default=None, help=f"{help_text} [{env}]")
    for flag, env, help_text in _LIST_OPTIONS:
        parser.add_argument(flag, action="append", default=None, help=f"{help_text} [{env}]")
    return parser


def parse_config(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> ServerConfig:
    """Build the configuration from flags, then SIESTA_* variables, then defaults."""
    environ = os.environ if environ is None else environ
    known, unknown = _parser().parse_known_args(argv)
    if unknown:
        raise ConfigError(unknown_flags_message(unknown))
    args = vars(known)
    values: dict[str, object] = {}
    for flag, env, kind, _ in _OPTIONS:
        field = flag.removeprefix("--").replace("-", "_")
        value = args[field]
        if value is None and environ.get(env, "").strip():
            raw = environ[env].strip()
            try:
                value = kind(raw)
            except ValueError:
                kind_name = getattr(kind, "__name__", "value")
                raise ConfigError(f"{env}={raw!r} is not a valid {kind_name}") from None
        if value is not None:
            values[field] = value
    values["loras"] = _loras(args, environ)
    if "model" not in values:
        raise ConfigError("no model: pass --model or set SIESTA_MODEL")
    for path_field in ("cache_dir", "termination_log", "api_key_file"):
        if path_field in values:
            values[path_field] = Path(str(values[path_field])).expanduser()
    if isinstance(values.get("sha256"), str):
        values["sha256"] = str(values["sha256"]).lower()
    config = ServerConfig(**values)  # type: ignore[arg-type]
    _validate(config)
    return config


def _list_option(args: dict[str, object], environ: Mapping[str, str], flag: str) -> list[str]:
    given = args[flag.removeprefix("--").replace("-", "_")]
    if isinstance(given, list):
        return [str(item) for item in given]
    return environ.get(ENVIRONMENT_VARIABLES[flag], "").split()


def _loras(args: dict[str, object], environ: Mapping[str, str]) -> tuple[LoraSpec, ...]:
    loras = [parse_lora(text) for text in _list_option(args, environ, "--lora")]
    names = [lora.name for lora in loras]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"--lora: the name(s) {', '.join(duplicates)} appear more than once")
    digests: dict[str, str] = {}
    for text in _list_option(args, environ, "--lora-sha256"):
        name, _, digest = text.partition("=")
        digest = digest.strip().lower()
        if name not in names:
            raise ConfigError(f"--lora-sha256 {text!r}: no --lora is named {name!r}")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigError(f"--lora-sha256 {text!r}: expected NAME=<64 hexadecimal characters>")
        digests[name] = digest
    return tuple(
        LoraSpec(lora.name, lora.uri, lora.scale, digests.get(lora.name)) for lora in loras
    )


def _validate(config: ServerConfig) -> None:
    if not 0 < config.port < 65536:
        raise ConfigError(f"port {config.port} is out of range")
    if not 0 <= config.metrics_port < 65536 or config.metrics_port == config.port:
        raise ConfigError(f"--metrics-port {config.metrics_port}: 0, or a port other than --port")
    if config.parallel < 1:
        raise ConfigError("--parallel must be at least 1")
    if config.ctx_size < 16 * config.parallel:
        raise ConfigError(
            f"--ctx-size {config.ctx_size} is too small for --parallel {config.parallel} "
            "(each slot needs at least 16 tokens)"
        )
    if config.batch_size < 1 or config.max_queue < 0 or config.drain_timeout < 0:
        raise ConfigError("--batch-size, --max-queue and --drain-timeout must be positive")
    if config.require_gpu and config.gpu_layers == 0:
        raise ConfigError("--require-gpu with --gpu-layers 0 would run the model on the CPU")
    if config.cache_keep < 0:
        raise ConfigError("--cache-keep must be 0 or more")
    if not 1 <= config.fetch_connections <= 64:
        raise ConfigError("--fetch-connections must be between 1 and 64")
    _validate_limits(config)
    if config.sha256 is not None:
        digest = config.sha256
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigError("--sha256 must be 64 hexadecimal characters")
    if config.api_key_file is not None and not config.api_key_file.is_file():
        raise ConfigError(f"--api-key-file {config.api_key_file}: no such file")
    if config.log_level.lower() not in {"debug", "info", "warning", "error"}:
        raise ConfigError(f"unknown log level {config.log_level!r}")
    for lora in config.loras:
        if lora.name in {config.model_id, config.model}:
            raise ConfigError(f"--lora {lora.name}: the name is the base model's own name")


_POSITIVE_LIMITS = (
    "max_grammar_bytes",
    "max_grammar_depth",
    "max_grammar_rules",
    "max_grammar_elements",
    "max_schema_depth",
    "max_schema_enum",
    "grammar_timeout",
    "max_grammar_step_ms",
    "max_messages",
    "max_prompts",
    "max_embedding_inputs",
    "max_header_bytes",
    "header_timeout",
    "body_timeout",
    "keep_alive_timeout",
    "max_connections",
)


def _validate_limits(config: ServerConfig) -> None:
    for name in _POSITIVE_LIMITS:
        value = getattr(config, name)
        if not (value > 0 and math.isfinite(value)):
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive number")
