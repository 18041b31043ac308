"""A slot larger than the model's trained context is served, with a warning at start: past
the trained length most models' answers degrade, and nothing else would say so."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from siesta_server.fit import trained_context_warning

if TYPE_CHECKING:
    from conftest import ServerProcess

Launcher = Callable[..., "ServerProcess"]


def test_a_slot_within_the_trained_context_says_nothing() -> None:
    assert trained_context_warning(4096, 4096, 1) is None
    assert trained_context_warning(1024, 4096, 4) is None


def test_a_model_without_a_trained_length_says_nothing() -> None:
    assert trained_context_warning(8192, 0, 1) is None


def test_a_slot_past_the_trained_context_is_named_with_the_numbers() -> None:
    assert trained_context_warning(8192, 4096, 2) == (
        "each of the 2 slots holds 8192 tokens but the model was trained on 4096: answers "
        "degrade past 4096 tokens; lower server.contextSize or raise server.parallel"
    )


@pytest.mark.llama
def test_the_server_warns_once_at_start_and_serves(
    launch_server: Launcher, tiny_model: Path, shared_server: ServerProcess
) -> None:
    """The tiny model is trained on 512 tokens; the shared server's slots hold exactly 512."""
    server = launch_server("--model", str(tiny_model), "--ctx-size", "2048", "--parallel", "1")
    assert server.health().status_code == 200
    warning = "each of the 1 slots holds 2048 tokens but the model was trained on 512"
    assert server.log().count(warning) == 1
    assert "was trained on" not in shared_server.log()
