"""The request and HTTP limit flags: safe defaults, set by flag or SIESTA_* variable, and a
limit of zero or less (which would refuse everything, or nothing) is a usage error."""

from __future__ import annotations

import pytest

from siesta_server.config import ConfigError, parse_config

LIMIT_FLAGS = {
    "--max-grammar-bytes": ("max_grammar_bytes", 65536),
    "--max-grammar-depth": ("max_grammar_depth", 64),
    "--max-grammar-rules": ("max_grammar_rules", 4096),
    "--max-grammar-elements": ("max_grammar_elements", 262144),
    "--max-schema-depth": ("max_schema_depth", 32),
    "--max-schema-enum": ("max_schema_enum", 1000),
    "--grammar-timeout": ("grammar_timeout", 2.0),
    "--max-grammar-step-ms": ("max_grammar_step_ms", 20.0),
    "--max-messages": ("max_messages", 2048),
    "--max-prompts": ("max_prompts", 16),
    "--max-embedding-inputs": ("max_embedding_inputs", 512),
    "--max-header-bytes": ("max_header_bytes", 32768),
    "--header-timeout": ("header_timeout", 10.0),
    "--body-timeout": ("body_timeout", 30.0),
    "--keep-alive-timeout": ("keep_alive_timeout", 5.0),
    "--max-connections": ("max_connections", 1024),
}


def test_every_limit_has_its_documented_default() -> None:
    config = parse_config(["--model", "m.gguf"], environ={})
    for field, default in LIMIT_FLAGS.values():
        assert getattr(config, field) == default, field


@pytest.mark.parametrize("flag", sorted(LIMIT_FLAGS))
def test_a_limit_is_set_by_flag_or_variable(flag: str) -> None:
    field, _ = LIMIT_FLAGS[flag]
    by_flag = parse_config(["--model", "m.gguf", flag, "7"], environ={})
    variable = "SIESTA_" + flag.removeprefix("--").replace("-", "_").upper()
    by_variable = parse_config(["--model", "m.gguf"], environ={variable: "9"})
    assert getattr(by_flag, field) == 7
    assert getattr(by_variable, field) == 9


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_a_limit_must_be_positive_and_finite(value: str) -> None:
    with pytest.raises(ConfigError, match="--max-grammar-step-ms"):
        parse_config(["--model", "m.gguf", "--max-grammar-step-ms", value], environ={})
    if value.lstrip("-").isdigit():
        with pytest.raises(ConfigError, match="--max-connections"):
            parse_config(["--model", "m.gguf", "--max-connections", value], environ={})
