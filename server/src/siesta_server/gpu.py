"""Must this server run on a GPU, and can it? (`--require-gpu`, set by the operator for GPU models.)

A GPU pod whose llama.cpp quietly falls back to the CPU holds an expensive node while
answering at CPU speed. With `--require-gpu` the server refuses instead, in one line that
says what it found: the ggml backends compiled in, the GPUs they see, what
NVIDIA_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES and the driver say, and (after loading) how
many layers llama.cpp put on the GPU. `probe()` gathers the facts; `refusal()` and
`offload_refusal()` decide, without I/O.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from siesta_server import memory

VISIBILITY_VARIABLES = ("NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")
DRIVER_VERSION_FILE = Path("/proc/driver/nvidia/version")
# The oldest driver each CUDA major version runs on (NVIDIA's compatibility table).
MIN_DRIVER_FOR_CUDA = {12: 525, 13: 580}
_GPU_BACKENDS = ("CUDA", "HIP", "ROCm", "Vulkan", "Metal", "SYCL", "MUSA", "CANN", "OpenCL")
_OFFLOADED = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")


@dataclass(frozen=True)
class GpuProbe:
    """What this process can see of GPUs."""

    backends: tuple[str, ...]
    """ggml backends compiled in, e.g. ("CPU",) or ("CPU", "CUDA")."""
    devices: tuple[str, ...]
    """GPUs those backends found, e.g. ("NVIDIA A10G",)."""
    visibility: Mapping[str, str | None]
    """NVIDIA_VISIBLE_DEVICES and CUDA_VISIBLE_DEVICES as set (None: unset)."""
    driver: str | None
    """The NVIDIA kernel driver's version (/proc/driver/nvidia/version); None: no driver."""
    cuda_major: int | None = None
    """The CUDA runtime's major version the build links (libcudart.so.N), if loaded."""
    backend_said: str = ""
    """The GPU backend's own last error line (e.g. ggml_cuda_init: ... no CUDA-capable device)."""


def _gpu_backends(backends: tuple[str, ...]) -> list[str]:
    return [name for name in backends if name.upper() in {b.upper() for b in _GPU_BACKENDS}]


def _driver_major(driver: str | None) -> int | None:
    match = re.match(r"(\d+)\.", driver or "")
    return int(match.group(1)) if match else None


def refusal(probe: GpuProbe) -> str | None:
    """Why a GPU-required server must not start (None: a GPU is there to use)."""
    if not _gpu_backends(probe.backends):
        return (
            "GPU required (--require-gpu) but this siesta-server's llama.cpp has no GPU backend "
            f"(built with: {', '.join(probe.backends) or 'none'}): use the CUDA image "
            "(siesta-server:<version>-cuda)"
        )
    if probe.devices:
        return None
    visible = ", ".join(
        f"{name}={'<unset>' if value is None else repr(value)}"
        for name, value in probe.visibility.items()
    )
    driver = (
        f"NVIDIA driver {probe.driver}"
        if probe.driver
        else f"no NVIDIA driver (no {DRIVER_VERSION_FILE})"
    )
    hints = []
    needed = MIN_DRIVER_FOR_CUDA.get(probe.cuda_major or 0)
    major = _driver_major(probe.driver)
    if needed is not None and major is not None and major < needed:
        hints.append(f"CUDA {probe.cuda_major} needs driver >= {needed}")
    if probe.driver is None:
        hints.append("not on a GPU node, or the pod got no nvidia.com/gpu")
    said = f"; {probe.backend_said[:160]}" if probe.backend_said else ""
    return (
        f"GPU required (--require-gpu) but {'/'.join(_gpu_backends(probe.backends))} sees no "
        f"GPU: {visible}, {driver}{said}" + "".join(f"; {hint}" for hint in hints)
    )


def describe(probe: GpuProbe) -> str:
    """One log line: the backends compiled in and the GPUs they see."""
    gpus = ", ".join(probe.devices) or "none visible"
    driver = f", NVIDIA driver {probe.driver}" if probe.driver else ""
    return f"llama.cpp backends: {', '.join(probe.backends) or 'none'}; GPUs: {gpus}{driver}"


def offload_refusal(asked: int, offloaded: int, total: int) -> str | None:
    """Why a GPU-required server must not serve a model llama.cpp only partly offloaded.

    `asked` is --gpu-layers (-1: all); `offloaded/total` is llama.cpp's own count (its
    output layer included)."""
    wanted = total if asked < 0 else min(asked, total)
    if offloaded >= wanted:
        return None
    return (
        f"GPU required (--require-gpu) but llama.cpp offloaded only {offloaded} of {total} "
        f"layers to the GPU (asked: {'all' if asked < 0 else asked}); the rest would run on "
        "the CPU"
    )


def offloaded_layers(log_lines: list[str]) -> tuple[int, int] | None:
    """(offloaded, total) from llama.cpp's "offloaded N/M layers to GPU" line, if it said so."""
    for line in reversed(log_lines):
        match = _OFFLOADED.search(line)
        if match:
            return int(match.group(1)), int(match.group(2))
    return None


# --- gathering the facts (I/O) ---------------------------------------------------------------
def read_driver_version(path: Path = DRIVER_VERSION_FILE) -> str | None:
    """ "580.65.06" from "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06  ..."."""
    with contextlib.suppress(OSError):
        match = re.search(r"Kernel Module\s+(?:for \S+\s+)?([0-9][0-9.]+)", path.read_text())
        return match.group(1) if match else "unknown version"
    return None


def _cuda_major(maps: Path = Path("/proc/self/maps")) -> int | None:
    with contextlib.suppress(OSError):
        match = re.search(r"libcudart\.so\.(\d+)", maps.read_text())
        return int(match.group(1)) if match else None
    return None


def _backends(lib: ctypes.CDLL) -> tuple[str, ...]:
    lib.ggml_backend_reg_count.restype = ctypes.c_size_t
    lib.ggml_backend_reg_get.restype = ctypes.c_void_p
    lib.ggml_backend_reg_get.argtypes = [ctypes.c_size_t]
    lib.ggml_backend_reg_name.restype = ctypes.c_char_p
    lib.ggml_backend_reg_name.argtypes = [ctypes.c_void_p]
    names = []
    for index in range(lib.ggml_backend_reg_count()):
        name = lib.ggml_backend_reg_name(lib.ggml_backend_reg_get(index))
        names.append((name or b"?").decode())
    return tuple(names)


def probe(environ: Mapping[str, str], backend_errors: list[str]) -> GpuProbe:
    """The facts, after `native.init_backend` (so ggml's registry and its log are set up)."""
    lib = memory.ggml_library()
    backends: tuple[str, ...] = ()
    if lib is not None:
        with contextlib.suppress(AttributeError, OSError):
            backends = _backends(lib)
    devices = memory.gpu_devices()
    said = next(
        (line for line in reversed(backend_errors) if "cuda" in line.lower()),
        "",
    )
    return GpuProbe(
        backends=backends,
        devices=tuple(name for name, _, _ in devices),
        visibility={name: environ.get(name) for name in VISIBILITY_VARIABLES},
        driver=read_driver_version(),
        cuda_major=_cuda_major(),
        backend_said=said,
    )
