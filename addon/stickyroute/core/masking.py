"""What a stored flow shows instead of an account's credential.

Once a request has gone upstream, its account headers are replaced by `[stickyroute:ALIAS]`
(`Bearer [stickyroute:ALIAS]` for a bearer token), so mitmweb, `-w` flow files and exports
never hold a credential. A masked value is not a credential: it must never be sent anywhere, so
any header carrying one is dropped before a (replayed) request leaves the proxy.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import cast

from .headers import RawFields

MARK = "[stickyroute:"
_MARK_BYTES = MARK.encode()


def masked(alias: str, value: str) -> str:
    """The masked form of one credential header value of account `alias`."""
    scheme, sep, _ = value.partition(" ")
    prefix = f"{scheme} " if sep and scheme.lower() in ("bearer", "basic") else ""
    return f"{prefix}{MARK}{alias}]"


def is_masked(value: str) -> bool:
    return MARK in value


def mask_headers(headers: MutableMapping[str, str], names: Iterable[str], alias: str) -> int:
    """Replace the named headers by their masked form; returns how many were replaced."""
    fields = getattr(headers, "fields", None)  # mitmproxy's raw (name, value) byte pairs
    if isinstance(fields, tuple):
        new, count = _masked_fields(fields, names, alias)
        if count:
            cast(RawFields, headers).fields = new
        return count
    count = 0
    for name in names:
        value = headers.get(name)
        if value is not None and not is_masked(value):
            headers[name] = masked(alias, value)
            count += 1
    return count


def _masked_fields(fields: tuple[tuple[bytes, bytes], ...], names: Iterable[str], alias: str
                   ) -> tuple[tuple[tuple[bytes, bytes], ...], int]:
    """mask_headers on raw fields, with the result mitmproxy's get and set give: a name's
    values fold into one (", "), whose masked form replaces the first field, the others go."""
    wanted = {name.lower().encode("utf-8", "surrogateescape") for name in names}
    if all(value.find(_MARK_BYTES) != -1 for name, value in fields if name.lower() in wanted):
        return fields, 0  # all masked already (the answer's look, after the request's)
    folded: dict[bytes, list[bytes]] = {}
    for name, value in fields:
        if (low := name.lower()) in wanted:
            folded.setdefault(low, []).append(value)
    replace: dict[bytes, bytes] = {}
    for low, values in folded.items():
        text = b", ".join(values).decode("utf-8", "surrogateescape")
        if not is_masked(text):
            replace[low] = masked(alias, text).encode("utf-8", "surrogateescape")
    if not replace:
        return fields, 0
    out: list[tuple[bytes, bytes]] = []
    done: set[bytes] = set()
    for name, value in fields:
        low = name.lower()
        if low not in replace:
            out.append((name, value))
        elif low not in done:
            out.append((name, replace[low]))
            done.add(low)
    return tuple(out), len(replace)


def drop_masked(headers: MutableMapping[str, str]) -> list[str]:
    """Remove every header whose value is a masked credential; returns their names."""
    fields = getattr(headers, "fields", None)  # mitmproxy's raw (name, value) byte pairs
    if isinstance(fields, tuple) and b"\n".join([v for _, v in fields]).find(_MARK_BYTES) == -1:
        return []  # every request asks: one search of the raw values, not items() (a scan per
        # name); bytes.find, as `in` on bytes costs several times more
    names = [name for name, value in headers.items() if is_masked(value)]
    for name in names:
        if name in headers:
            del headers[name]
    return names
