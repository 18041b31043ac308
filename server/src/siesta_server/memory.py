"""How much memory is free where the model will go: GPUs (through ggml) and the host.

Host: the smaller of the kernel's MemAvailable and what the container's cgroup still
allows (a pod's memory limit is what the OOM killer enforces, not the node's RAM).
GPUs: ggml's device registry, the same one llama.cpp allocates from; call after
`native.init_backend`.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
from pathlib import Path

from siesta_server.fit import Free

log = logging.getLogger(__name__)

GGML_BACKEND_DEVICE_TYPE_GPU = 1
_CGROUP_V2 = Path("/sys/fs/cgroup")
_CGROUP_V1 = Path("/sys/fs/cgroup/memory")


def _read_int(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        text = path.read_text().strip()
        return None if text == "max" else int(text)
    return None


def _mem_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def _cgroup_room() -> tuple[int, int] | None:
    """(limit, limit - usage) of this process's memory cgroup, if it has a limit."""
    for limit_file, usage_file in (
        (_CGROUP_V2 / "memory.max", _CGROUP_V2 / "memory.current"),
        (_CGROUP_V1 / "memory.limit_in_bytes", _CGROUP_V1 / "memory.usage_in_bytes"),
    ):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        # cgroup v1 reports "no limit" as a huge number near 2**63.
        if limit is not None and usage is not None and limit < 2**60:
            return limit, max(limit - usage, 0)
    return None


def host_free() -> Free | None:
    available = _mem_available()
    room = _cgroup_room()
    if room is not None and (available is None or room[1] < available):
        return Free("the container (memory limit)", room[1], room[0])
    if available is None:
        return None
    return Free("the host", available)


def ggml_library() -> ctypes.CDLL | None:
    """llama-cpp-python's libggml (the device registry), if it can be loaded."""
    try:
        import llama_cpp

        lib_dir = Path(llama_cpp.__file__).parent / "lib"
        for name in ("libggml.so", "libggml.dylib", "ggml.dll"):
            if (lib_dir / name).exists():
                return ctypes.CDLL(str(lib_dir / name))
    except (ImportError, OSError) as error:
        log.debug("ggml device registry unavailable: %s", error)
    return None


def gpu_devices() -> list[tuple[str, int, int]]:
    """(description, free bytes, total bytes) of each GPU ggml sees; [] when none."""
    lib = ggml_library()
    if lib is None:
        return []
    try:
        lib.ggml_backend_dev_count.restype = ctypes.c_size_t
        lib.ggml_backend_dev_get.restype = ctypes.c_void_p
        lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
        lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
        lib.ggml_backend_dev_type.restype = ctypes.c_int
        lib.ggml_backend_dev_description.argtypes = [ctypes.c_void_p]
        lib.ggml_backend_dev_description.restype = ctypes.c_char_p
        lib.ggml_backend_dev_memory.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_size_t),
            ctypes.POINTER(ctypes.c_size_t),
        ]
        devices = []
        for index in range(lib.ggml_backend_dev_count()):
            device = lib.ggml_backend_dev_get(index)
            if lib.ggml_backend_dev_type(device) != GGML_BACKEND_DEVICE_TYPE_GPU:
                continue
            free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
            lib.ggml_backend_dev_memory(device, ctypes.byref(free), ctypes.byref(total))
            name = (lib.ggml_backend_dev_description(device) or b"GPU").decode()
            devices.append((name, free.value, total.value))
    except (AttributeError, OSError) as error:
        log.warning("cannot read GPU memory through ggml: %s", error)
        return []
    return devices


def gpu_free() -> Free | None:
    """Free memory of all GPUs together (llama.cpp splits layers over them); None: no GPU."""
    devices = gpu_devices()
    if not devices:
        return None
    names = [name for name, _, _ in devices]
    free_total = sum(free for _, free, _ in devices)
    total_total = sum(total for _, _, total in devices)
    label = names[0] if len(names) == 1 else f"{len(names)} GPUs ({', '.join(names)})"
    return Free(f"the GPU {label}" if len(names) == 1 else label, free_total, total_total)
