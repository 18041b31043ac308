"""Build llama.cpp's native `llama-server` from the sources vendored in the llama-cpp-python
sdist (same kernels as the Python binding), cached under
${SIESTA_CACHE:-~/.cache/siesta}/llama-server/<version>/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

LLAMA_CPP_PYTHON_VERSION = "0.3.36"


def cache_root() -> Path:
    return Path(os.environ.get("SIESTA_CACHE", "~/.cache/siesta")).expanduser()


def native_server(version: str = LLAMA_CPP_PYTHON_VERSION, *, log: Path | None = None) -> Path:
    """Path to a llama-server binary built from llama-cpp-python==`version`'s sources."""
    target = cache_root() / "llama-server" / version / "llama-server"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="llama-server-build-") as scratch:
        work = Path(scratch)
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-binary",
                ":all:",
                "--no-deps",
                "--quiet",
                f"llama-cpp-python=={version}",
                "-d",
                str(work),
            ],
            log,
        )
        sdist = next(work.glob("llama_cpp_python-*.tar.gz"))
        with tarfile.open(sdist) as archive:
            archive.extractall(work, filter="data")
        source = work / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"
        build = work / "build"
        _run(
            [
                "cmake",
                "-S",
                str(source),
                "-B",
                str(build),
                "-DCMAKE_BUILD_TYPE=Release",
                "-DLLAMA_BUILD_SERVER=ON",
                "-DLLAMA_BUILD_TOOLS=ON",
                "-DLLAMA_BUILD_COMMON=ON",
                "-DLLAMA_BUILD_TESTS=OFF",
                "-DLLAMA_BUILD_EXAMPLES=OFF",
                # No network at build time: no prebuilt web UI download, no npm build.
                "-DLLAMA_USE_PREBUILT_UI=OFF",
                "-DLLAMA_BUILD_UI=OFF",
                "-DLLAMA_OPENSSL=OFF",
                "-DBUILD_SHARED_LIBS=OFF",
            ],
            log,
        )
        _run(
            [
                "cmake",
                "--build",
                str(build),
                "--target",
                "llama-server",
                "--parallel",
                str(os.cpu_count() or 2),
            ],
            log,
        )
        built = build / "bin" / "llama-server"
        partial = target.with_suffix(".part")
        shutil.copy2(built, partial)
        partial.replace(target)  # atomic: an interrupted build never leaves a broken binary
    return target


def _run(command: list[str], log: Path | None) -> None:
    if log is None:
        subprocess.run(command, check=True)
        return
    with log.open("ab") as out:
        subprocess.run(command, check=True, stdout=out, stderr=subprocess.STDOUT)


if __name__ == "__main__":
    print(native_server())
