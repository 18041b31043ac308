"""The GPU requirement's decisions (siesta_server.gpu), pure: what a GPU-required server
says for each thing it can find, and that each sentence fits `kubectl get md`."""

from __future__ import annotations

from pathlib import Path

from siesta_server.gpu import (
    GpuProbe,
    describe,
    offload_refusal,
    offloaded_layers,
    read_driver_version,
    refusal,
)

UNSET = {"NVIDIA_VISIBLE_DEVICES": None, "CUDA_VISIBLE_DEVICES": None}
NO_DEVICE = "ggml_cuda_init: failed to initialize CUDA: no CUDA-capable device is detected"


def test_a_build_without_gpu_backend_is_refused() -> None:
    probe = GpuProbe(backends=("CPU",), devices=(), visibility=UNSET, driver="580.65.06")
    assert refusal(probe) == (
        "GPU required (--require-gpu) but this siesta-server's llama.cpp has no GPU backend "
        "(built with: CPU): use the CUDA image (siesta-server:<version>-cuda)"
    )


def test_a_visible_gpu_is_accepted() -> None:
    probe = GpuProbe(
        backends=("CPU", "CUDA"), devices=("Tesla T4",), visibility=UNSET, driver="580.65.06"
    )
    assert refusal(probe) is None


def test_no_device_says_what_the_variables_and_the_driver_said() -> None:
    probe = GpuProbe(
        backends=("CPU", "CUDA"),
        devices=(),
        visibility={"NVIDIA_VISIBLE_DEVICES": "void", "CUDA_VISIBLE_DEVICES": ""},
        driver=None,
        cuda_major=13,
        backend_said=NO_DEVICE,
    )
    assert refusal(probe) == (
        "GPU required (--require-gpu) but CUDA sees no GPU: NVIDIA_VISIBLE_DEVICES='void', "
        "CUDA_VISIBLE_DEVICES='', no NVIDIA driver (no /proc/driver/nvidia/version); "
        f"{NO_DEVICE}; not on a GPU node, or the pod got no nvidia.com/gpu"
    )


def test_an_old_driver_for_a_cuda_13_build_is_named() -> None:
    probe = GpuProbe(
        backends=("CPU", "CUDA"),
        devices=(),
        visibility={"NVIDIA_VISIBLE_DEVICES": "GPU-1234", "CUDA_VISIBLE_DEVICES": None},
        driver="535.230.02",
        cuda_major=13,
        backend_said="ggml_cuda_init: failed to initialize CUDA: CUDA driver version is "
        "insufficient for CUDA runtime version",
    )
    text = refusal(probe)
    assert text is not None
    assert "NVIDIA_VISIBLE_DEVICES='GPU-1234', CUDA_VISIBLE_DEVICES=<unset>" in text
    assert "NVIDIA driver 535.230.02" in text
    assert text.endswith("; CUDA 13 needs driver >= 580")
    # The same driver is enough for a CUDA 12 build: no such hint.
    cuda12 = refusal(GpuProbe(**{**probe.__dict__, "cuda_major": 12}))
    assert cuda12 is not None
    assert "needs driver" not in cuda12


def test_every_refusal_fits_the_status_line() -> None:
    worst = GpuProbe(
        backends=("CPU", "CUDA"),
        devices=(),
        visibility={"NVIDIA_VISIBLE_DEVICES": "GPU-" + "f" * 36, "CUDA_VISIBLE_DEVICES": "0,1"},
        driver="470.256.02",
        cuda_major=13,
        backend_said="ggml_cuda_init: " + "x" * 300,
    )
    text = refusal(worst)
    assert text is not None
    assert len(text) < 400


def test_fewer_layers_than_asked_is_refused() -> None:
    assert offload_refusal(-1, 33, 33) is None
    assert offload_refusal(20, 20, 33) is None
    assert offload_refusal(99, 33, 33) is None
    assert offload_refusal(-1, 0, 33) == (
        "GPU required (--require-gpu) but llama.cpp offloaded only 0 of 33 layers to the GPU "
        "(asked: all); the rest would run on the CPU"
    )
    assert offload_refusal(20, 12, 33) is not None


def test_llama_cpps_offload_line_is_read() -> None:
    lines = ["load_tensors: loading model tensors", "load_tensors: offloaded 29/33 layers to GPU"]
    assert offloaded_layers(lines) == (29, 33)
    assert offloaded_layers(["nothing about layers"]) is None


def test_driver_version_file(tmp_path: Path) -> None:
    version = tmp_path / "version"
    version.write_text(
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  Release Build  "
        "(dvs-builder@U22-I3-AE18-23-3)  Tue Sep 23 09:55:41 UTC 2025\n"
        "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14+deb12u1)\n"
    )
    assert read_driver_version(version) == "580.95.05"
    version.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.230.02  Wed Jan\n")
    assert read_driver_version(version) == "535.230.02"
    assert read_driver_version(tmp_path / "absent") is None


def test_the_start_line_names_backends_and_gpus() -> None:
    cuda_without_device = GpuProbe(
        backends=("CPU", "CUDA"), devices=(), visibility=UNSET, driver=None
    )
    assert describe(cuda_without_device) == "llama.cpp backends: CPU, CUDA; GPUs: none visible"
    h100 = GpuProbe(
        backends=("CPU", "CUDA"), devices=("NVIDIA H100",), visibility=UNSET, driver="580.95.05"
    )
    assert describe(h100) == (
        "llama.cpp backends: CPU, CUDA; GPUs: NVIDIA H100, NVIDIA driver 580.95.05"
    )
