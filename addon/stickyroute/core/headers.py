"""Header fields read cheaply: all at once into a plain dict with lower-cased names (for code
that asks many), or one name in a plain pass.

mitmproxy's `Headers.get` scans every field and case-folds each name through a method call
per field (a missing name also costs an exception inside `Mapping.get`); identifying one
request asks for up to a dozen names. Repeated fields fold into one value joined by ", ", as
`Headers.get` folds them. Never raises, whatever the bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class RawFields(Protocol):
    """mitmproxy's Headers: `fields`, its documented raw (name, value) byte pairs (code that
    rewrites several fields sets them at once instead of scanning once per name)."""

    fields: tuple[tuple[bytes, bytes], ...]


def lowered(headers: Mapping[str, str], only: tuple[str, ...] = ()) -> dict[str, str]:
    """Every field of `headers` by lower-cased name, read in one pass (mitmproxy's raw
    `fields` when it has them); `only`: just the names that start with one of these
    lower-case prefixes (the rest is not even decoded)."""
    out: dict[str, str] = {}
    fields = getattr(headers, "fields", None)  # mitmproxy's (name, value) byte pairs
    if isinstance(fields, tuple):
        if only:  # (apart: the loop every request takes stays as lean as it was)
            prefixes = tuple(p.encode() for p in only)
            fields = [(n, v) for n, v in fields if n.lower().startswith(prefixes)]
        for name, value in fields:
            # bytes.lower() folds ASCII only, as Headers does; the rest decodes as it does
            key = name.lower().decode("utf-8", "surrogateescape")
            text = value.decode("utf-8", "surrogateescape")
            out[key] = f"{out[key]}, {text}" if key in out else text
        return out
    for name, text in headers.items():
        key = name.lower()
        if only and not key.startswith(only):
            continue
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


def field(headers: Mapping[str, str], name: str) -> str | None:
    """`headers.get(name)` for a lower-case `name`, in one plain pass over mitmproxy's raw
    fields (about a quarter of Headers.get's cost)."""
    fields = getattr(headers, "fields", None)
    if not isinstance(fields, tuple):
        return lowered(headers).get(name)
    key = name.encode("utf-8", "surrogateescape")
    found = [value for n, value in fields if n.lower() == key]
    if not found:
        return None
    return b", ".join(found).decode("utf-8", "surrogateescape")
