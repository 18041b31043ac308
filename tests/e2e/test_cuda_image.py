"""The CUDA server image (`make images VARIANT=cuda`) on this GPU-less machine: it starts,
says that llama.cpp has the CUDA backend and sees no GPU, and serves on the CPU; with
--require-gpu (what the operator sets for GPU models) it exits 1 with that reason instead.

Its compile takes long on 2 cores, so neither `make test` nor .ci/run builds it: this test
is skipped until it has been built here (`nice -n 19 make images VARIANT=cuda`).
"""

from __future__ import annotations

import contextlib
import resource
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from localworld.procs import free_port
from localworld.tiny_gguf import write_tiny_llama

pytestmark = pytest.mark.e2e

IMAGE = "localhost/siesta-server:dev-cuda"
# As scripts/images.sh runs containers on this kind of host: runc, cgroupfs, and open-file
# limits no higher than this process's hard limit (no CAP_SYS_RESOURCE to raise them).
NOFILE = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
PODMAN_RUN = [
    "podman", "run", "--rm", "--runtime", "runc", "--cgroup-manager", "cgroupfs",
    "--ulimit", f"nofile={NOFILE}:{NOFILE}", "--ulimit", "nproc=4096:4096",
]  # fmt: skip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if subprocess.run(["podman", "image", "exists", IMAGE], check=False).returncode != 0:
        pytest.skip(f"{IMAGE} is not built: run `nice -n 19 make images VARIANT=cuda`")
    folder = tmp_path_factory.mktemp("cuda-image")
    write_tiny_llama(folder / "tiny.gguf")
    folder.chmod(0o755)
    (folder / "out").mkdir(mode=0o777)
    (folder / "out").chmod(0o777)  # the image runs as UID 10001
    return folder


@contextlib.contextmanager
def container(model_dir: Path, *args: str) -> Iterator[tuple[str, int]]:
    name = f"siesta-cuda-image-{free_port()}"
    port = free_port()
    subprocess.run(
        [*PODMAN_RUN, "-d", "--name", name, "--network", "host", "-v", f"{model_dir}:/m",
         IMAGE, "--model", "/m/tiny.gguf", "--host", "127.0.0.1", "--port", str(port), *args],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield name, port
    finally:
        subprocess.run(["podman", "rm", "-f", name], check=False, capture_output=True)


def logs(name: str) -> str:
    result = subprocess.run(["podman", "logs", name], capture_output=True, text=True, check=False)
    return result.stdout + result.stderr


def test_the_cuda_image_serves_on_the_cpu_and_says_it_sees_no_gpu(model_dir: Path) -> None:
    with container(model_dir) as (name, port):
        deadline = time.monotonic() + 120
        status = 0
        while time.monotonic() < deadline and status != 200:
            with contextlib.suppress(httpx.HTTPError):
                status = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code
            time.sleep(0.2)
        assert status == 200, logs(name)
        # ggml registers its GPU backend before the CPU one.
        assert "llama.cpp backends: CUDA, CPU; GPUs: none visible" in logs(name)


def test_the_cuda_image_refuses_when_a_gpu_is_required(model_dir: Path) -> None:
    message = model_dir / "out" / "termination-log"
    result = subprocess.run(
        [*PODMAN_RUN, "--network", "none", "-v", f"{model_dir}:/m", IMAGE,
         "--model", "/m/tiny.gguf", "--require-gpu", "--termination-log", "/m/out/termination-log"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    text = message.read_text().strip()
    assert text.startswith(
        "GPU required (--require-gpu) but CUDA sees no GPU: NVIDIA_VISIBLE_DEVICES=<unset>, "
        "CUDA_VISIBLE_DEVICES=<unset>, no NVIDIA driver (no /proc/driver/nvidia/version)"
    ), text
