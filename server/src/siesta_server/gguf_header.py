"""Read a GGUF file's header (metadata only) without loading the model.

Enough to say "this is not a GGUF file" and to estimate the memory a model needs before
llama.cpp tries to allocate it (see `fit`). Format: magic `GGUF`, version, tensor count,
key-value count, then typed key-value pairs (github.com/ggml-org/ggml docs/gguf.md).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAGIC = b"GGUF"
# A header bigger than this is not a model header (tokenizer vocabularies are a few MB).
MAX_STRING_BYTES = 64 * 1024 * 1024
MAX_ARRAY_ITEMS = 16 * 1024 * 1024

Value = int | float | bool | str | list["Value"]

_SCALARS: dict[int, tuple[str, int]] = {
    0: ("<B", 1),
    1: ("<b", 1),
    2: ("<H", 2),
    3: ("<h", 2),
    4: ("<I", 4),
    5: ("<i", 4),
    6: ("<f", 4),
    7: ("<?", 1),
    10: ("<Q", 8),
    11: ("<q", 8),
    12: ("<d", 8),
}
_STRING, _ARRAY = 8, 9


class NotGGUFError(ValueError):
    """The file is not a GGUF model (or its header is damaged)."""


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    tensor_count: int
    metadata: dict[str, Value]
    file_size: int

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def arch_value(self, key: str) -> Value | None:
        """`<architecture>.<key>`, e.g. `block_count` -> `llama.block_count`."""
        return self.metadata.get(f"{self.architecture}.{key}")


def _read(handle: BinaryIO, size: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise NotGGUFError("the file ends inside its header")
    return data


def _string(handle: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", _read(handle, 8))
    if length > MAX_STRING_BYTES:
        raise NotGGUFError(f"a header string claims {length} bytes")
    return _read(handle, length).decode("utf-8", errors="replace")


def _value(handle: BinaryIO, kind: int, keep: bool) -> Value:
    if kind in _SCALARS:
        fmt, size = _SCALARS[kind]
        return struct.unpack(fmt, _read(handle, size))[0]  # type: ignore[no-any-return]
    if kind == _STRING:
        return _string(handle)
    if kind == _ARRAY:
        item_kind, count = struct.unpack("<IQ", _read(handle, 12))
        if count > MAX_ARRAY_ITEMS:
            raise NotGGUFError(f"a header array claims {count} items")
        if item_kind in _SCALARS and not keep:
            handle.seek(_SCALARS[item_kind][1] * count, 1)  # vocabularies: skip, fast
            return []
        items = [_value(handle, item_kind, keep) for _ in range(count)]
        return items if keep else []
    raise NotGGUFError(f"unknown metadata value type {kind}")


def read_header(path: Path) -> GGUFHeader:
    """The header's metadata (arrays of strings and big scalar arrays are skipped)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        magic = handle.read(4)
        if magic != MAGIC:
            shown = magic.hex() if magic else "an empty file"
            raise NotGGUFError(f"{path} is not a GGUF model (starts with {shown}, not 'GGUF')")
        (version,) = struct.unpack("<I", _read(handle, 4))
        if version < 2:
            raise NotGGUFError(f"{path} is GGUF version {version}; llama.cpp needs 2 or later")
        tensor_count, kv_count = struct.unpack("<QQ", _read(handle, 16))
        metadata: dict[str, Value] = {}
        for _ in range(kv_count):
            key = _string(handle)
            (kind,) = struct.unpack("<I", _read(handle, 4))
            # Per-layer arrays (e.g. head_count_kv) matter; token lists do not.
            keep = not key.startswith("tokenizer.")
            metadata[key] = _value(handle, kind, keep)
    return GGUFHeader(version, tensor_count, metadata, size)
