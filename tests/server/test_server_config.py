"""Command line and SIESTA_* environment variables (no model needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from siesta_server.config import ENVIRONMENT_VARIABLES, ConfigError, parse_config


def test_defaults() -> None:
    config = parse_config(["--model", "/models/m.gguf"], environ={})
    assert config.port == 8080
    assert config.model_id == "m.gguf"
    assert config.slot_context == config.ctx_size // config.parallel


def test_every_flag_has_an_environment_variable() -> None:
    environ = {
        "SIESTA_MODEL": "https://example.invalid/models/llama.gguf?download=1",
        "SIESTA_SHA256": "AB" * 32,
        "SIESTA_ALIAS": "llama",
        "SIESTA_HOST": "127.0.0.1",
        "SIESTA_PORT": "9000",
        "SIESTA_CTX_SIZE": "8192",
        "SIESTA_PARALLEL": "8",
        "SIESTA_GPU_LAYERS": "20",
        "SIESTA_CACHE_DIR": "/cache",
        "SIESTA_DRAIN_TIMEOUT": "12.5",
    }
    config = parse_config([], environ=environ)
    assert config.model == environ["SIESTA_MODEL"]
    assert config.sha256 == "ab" * 32
    assert (config.alias, config.host, config.port) == ("llama", "127.0.0.1", 9000)
    assert (config.ctx_size, config.parallel, config.gpu_layers) == (8192, 8, 20)
    assert config.cache_dir == Path("/cache")
    assert config.drain_timeout == 12.5
    assert set(environ) <= set(ENVIRONMENT_VARIABLES.values())


def test_flag_wins_over_environment() -> None:
    config = parse_config(
        ["--port", "7000"], environ={"SIESTA_MODEL": "m.gguf", "SIESTA_PORT": "9000"}
    )
    assert config.port == 7000


def test_model_name_from_uri() -> None:
    config = parse_config(["--model", "https://host/a/b/qwen.gguf?x=1"], environ={})
    assert config.model_id == "qwen.gguf"


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        ([], {}, "no model"),
        (["--model", "m"], {"SIESTA_PORT": "http"}, "SIESTA_PORT"),
        (["--model", "m", "--port", "70000"], {}, "out of range"),
        (["--model", "m", "--parallel", "0"], {}, "--parallel"),
        (["--model", "m", "--ctx-size", "32", "--parallel", "4"], {}, "too small"),
        (["--model", "m", "--sha256", "abc"], {}, "64 hexadecimal"),
        (["--model", "m", "--log-level", "loud"], {}, "log level"),
    ],
)
def test_invalid_configuration(argv: list[str], environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(argv, environ=environ)


def test_model_name_from_hf_uri_drops_the_revision() -> None:
    config = parse_config(["--model", "hf://acme/repo/dir/q4.gguf@refs/pr/1"], environ={})
    assert config.model_id == "q4.gguf"
    config = parse_config(["--model", "s3://bucket/models/m7.gguf"], environ={})
    assert config.model_id == "m7.gguf"


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["-ngl", "99"], "-ngl is --gpu-layers here"),
        (["--flash-attn"], "unknown argument(s) --flash-attn"),
        (["-c", "8192", "--mlock"], "-c is --ctx-size here"),
    ],
)
def test_unknown_flags_list_the_valid_ones(argv: list[str], hint: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(["--model", "m.gguf", *argv], environ={})
    message = str(raised.value)
    assert hint in message
    assert "not llama.cpp's" in message
    assert "Valid flags: --model --sha256 --alias" in message
    assert "--log-level" in message


def test_a_bad_value_is_a_config_error_not_an_exit() -> None:
    with pytest.raises(ConfigError, match="--port: invalid int value"):
        parse_config(["--model", "m.gguf", "--port", "eighty"], environ={})


@pytest.mark.llama
def test_llama_cpp_flags_in_extra_args_stop_the_pod_with_the_valid_ones(tmp_path: Path) -> None:
    """What a ModelDeployment with extraArgs: [-ngl, "99"] shows in its termination message."""
    message = tmp_path / "termination-log"
    result = subprocess.run(
        [sys.executable, "-m", "siesta_server", "--model", "/m.gguf", "-ngl", "99"],
        env={"SIESTA_TERMINATION_LOG": str(message), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    written = message.read_text()
    assert "-ngl is --gpu-layers here" in written
    assert "Valid flags: --model" in written
    assert written in result.stderr
