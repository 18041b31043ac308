"""A GPU pod never computes on the CPU: with --require-gpu (SIESTA_REQUIRE_GPU=1, which the
operator sets for GPU models) a real server process on this GPU-less machine exits 1 before
any download, with one line saying what it found; without it the same model serves on the
CPU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import llama_cpp
import pytest

if TYPE_CHECKING:
    from conftest import ServerProcess

pytestmark = pytest.mark.llama

Launcher = Callable[..., "ServerProcess"]
FileServer = Callable[..., Any]


def run_to_exit(launch: Launcher, tmp_path: Path, *args: str, **kwargs: Any) -> tuple[int, str]:
    message = tmp_path / "termination-log"
    message.write_text("")
    server = launch(*args, "--termination-log", str(message), wait=False, **kwargs)
    code = server.process.wait(120)
    text = message.read_text()
    assert text.count("\n") == 1, f"not one line: {text!r}"
    return code, text.strip()


def expected_refusal() -> str:
    """What this machine's llama.cpp build lacks: the backend (CPU build) or a device."""
    if not llama_cpp.llama_supports_gpu_offload():
        return (
            "GPU required (--require-gpu) but this siesta-server's llama.cpp has no GPU "
            "backend (built with: CPU): use the CUDA image (siesta-server:<version>-cuda)"
        )
    return "GPU required (--require-gpu) but CUDA sees no GPU: NVIDIA_VISIBLE_DEVICES=<unset>"


def test_required_gpu_refuses_before_downloading(
    launch_server: Launcher, tmp_path: Path, file_server: FileServer, tiny_model: Path
) -> None:
    source = file_server(tiny_model.read_bytes())
    code, message = run_to_exit(
        launch_server,
        tmp_path,
        "--model",
        source.url,
        env={"SIESTA_REQUIRE_GPU": "1"},
    )
    assert code == 1
    assert message.startswith(expected_refusal()), message
    assert source.range_headers == [], "a GPU-required server downloaded a model it cannot run"


def test_the_flag_refuses_too_and_the_same_model_serves_on_the_cpu_without_it(
    launch_server: Launcher, tmp_path: Path, tiny_model: Path
) -> None:
    code, message = run_to_exit(
        launch_server, tmp_path, "--model", str(tiny_model), "--require-gpu"
    )
    assert code == 1
    assert message.startswith(expected_refusal()), message
    server = launch_server("--model", str(tiny_model))  # a laptop: CPU is fine
    assert server.health().status_code == 200
    gpus = "none visible" if not llama_cpp.llama_supports_gpu_offload() else ""
    assert f"GPUs: {gpus}" in server.log()  # what it found, said at start
    server.stop()


def test_required_gpu_with_no_layers_offloaded_is_a_usage_error(
    launch_server: Launcher, tmp_path: Path, tiny_model: Path
) -> None:
    code, message = run_to_exit(
        launch_server, tmp_path, "--model", str(tiny_model), "--require-gpu", "--gpu-layers", "0"
    )
    assert code == 2
    assert message == "--require-gpu with --gpu-layers 0 would run the model on the CPU"
