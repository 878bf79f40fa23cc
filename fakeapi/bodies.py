"""Request body decoding: Content-Encoding (the Codex CLI sends zstd) and lenient JSON."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any


def decode(raw: bytes, encoding: str) -> bytes:
    for enc in reversed([e.strip().lower() for e in encoding.split(",") if e.strip()]):
        if enc in ("gzip", "x-gzip"):
            raw = _wrap(gzip.decompress, raw)
        elif enc == "deflate":
            raw = _wrap(zlib.decompress, raw)
        elif enc == "zstd":
            import zstandard

            raw = _wrap(lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b), raw)
        elif enc != "identity":
            raise ValueError(f"unsupported content-encoding {enc}")
    return raw


def _wrap(fn: Any, raw: bytes) -> bytes:
    try:
        return fn(raw)  # type: ignore[no-any-return]
    except Exception as exc:  # every codec has its own error type
        raise ValueError(str(exc)) from exc


def json_or_none(data: bytes) -> Any:
    try:
        return json.loads(data) if data else None
    except ValueError:
        return None
