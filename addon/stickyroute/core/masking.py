"""What a stored flow shows instead of an account's credential.

Once a request has gone upstream, its account headers are replaced by `[stickyroute:ALIAS]`
(`Bearer [stickyroute:ALIAS]` for a bearer token), so mitmweb, `-w` flow files and exports
never hold a credential. A masked value is not a credential: it must never be sent anywhere, so
any header carrying one is dropped before a (replayed) request leaves the proxy.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping

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
        # One pass over the raw fields (asked after the request went upstream and again when
        # the answer is complete, when there is nothing left to mask).
        wanted = {name.lower().encode() for name in names}
        if not any(field[0].lower() in wanted and field[1].find(_MARK_BYTES) == -1
                   for field in fields):
            return 0
    count = 0
    for name in names:
        value = headers.get(name)
        if value is not None and not is_masked(value):
            headers[name] = masked(alias, value)
            count += 1
    return count


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
