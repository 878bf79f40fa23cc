"""Step 4: make a request the chosen account's — headers always, OpenAI bodies only to add fields.

Never rewrites an Anthropic body (Claude Code may sign it). Body edits splice the new fields in
after the opening brace so every other byte stays as the client wrote it; a body that is not a
JSON object is never touched. Works on decoded bytes: the caller keeps the content encoding.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, MutableMapping
from typing import Any, cast

from .headers import RawFields

# Every header a client may authenticate itself with: none of them may reach the provider.
CLIENT_CREDENTIALS = (
    "authorization",
    "x-api-key",
    "api-key",
    "chatgpt-account-id",
    "openai-organization",
    "openai-project",
    "anthropic-api-key",
    "proxy-authorization",
    "cookie",
    "x-sticky-session",
)
_CREDENTIAL_BYTES = frozenset(name.encode() for name in CLIENT_CREDENTIALS)
ENCRYPTED_REASONING = "reasoning.encrypted_content"


def set_credentials(headers: MutableMapping[str, str],
                    credentials: Iterable[tuple[str, str]]) -> None:
    """Drop every client credential header, then set the account's."""
    fields = getattr(headers, "fields", None)  # mitmproxy's raw (name, value) byte pairs
    if isinstance(fields, tuple):
        cast(RawFields, headers).fields = _signed(fields, credentials)
        return
    present = {name.lower() for name in headers}
    for name in CLIENT_CREDENTIALS:
        if name in present:
            del headers[name]
    for name, value in credentials:
        headers[name] = value


def _signed(fields: tuple[tuple[bytes, bytes], ...], credentials: Iterable[tuple[str, str]]
            ) -> tuple[tuple[bytes, bytes], ...]:
    """set_credentials on raw fields in one pass, with the result mitmproxy's del and set give
    (each of which scans and rebuilds them): a credential that stays is set where the client
    had it, the others come last."""
    wanted = {name.lower().encode("utf-8", "surrogateescape"):
              (name.encode("utf-8", "surrogateescape"), value.encode("utf-8", "surrogateescape"))
              for name, value in credentials}
    out: list[tuple[bytes, bytes]] = []
    placed: set[bytes] = set()
    for name, value in fields:
        low = name.lower()
        if low in _CREDENTIAL_BYTES or low in placed:
            continue
        if low in wanted:
            out.append((name, wanted[low][1]))
            placed.add(low)
        else:
            out.append((name, value))
    out += [field for low, field in wanted.items() if low not in placed]
    return tuple(out)


def cache_key_for(session_key: str) -> str:
    """A prompt_cache_key derived from the session key: the same after a restart, on every proxy."""
    return "sr-" + hashlib.sha256(session_key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def wanted_fields(body: dict[str, Any], cache_key: str | None,
                  inject_include: bool) -> dict[str, Any]:
    """The fields to add to an OpenAI Responses body (empty: leave it as it is)."""
    add: dict[str, Any] = {}
    if cache_key and "prompt_cache_key" not in body:
        add["prompt_cache_key"] = cache_key
    if inject_include and body.get("reasoning") is not None and body.get("store") is False:
        include = body.get("include")
        if include is None:
            add["include"] = [ENCRYPTED_REASONING]
        elif isinstance(include, list) and ENCRYPTED_REASONING not in include:
            add["include"] = [*include, ENCRYPTED_REASONING]
    return add


def add_fields(raw: bytes, body: dict[str, Any], add: dict[str, Any]) -> bytes:
    """`raw` (the JSON object `body` was parsed from) with `add` merged in."""
    if "include" in add and "include" in body:
        return _dump({**body, **add})
    start = raw.index(b"{") + 1
    fields = b",".join(_dump(k) + b":" + _dump(v) for k, v in add.items())
    sep = b"," if body else b""
    return raw[:start] + fields + sep + raw[start:]


def parse_object(raw: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None for anything else (which then passes untouched).

    Only UTF-8: json.loads would also read UTF-16/32, where splicing UTF-8 bytes in would
    corrupt the body.
    """
    stripped = raw.lstrip()
    if not stripped.startswith(b"{"):
        return None
    try:
        value = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return value if isinstance(value, dict) else None


def _dump(value: Any) -> bytes:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:  # a lone surrogate (a valid \ud800 escape): keep it escaped
        return json.dumps(value, separators=(",", ":")).encode()


def state_is_portable(body: dict[str, Any] | None) -> bool:
    """True when the only account-bound state in an OpenAI Responses body is encrypted reasoning.

    Such a conversation can move to another account once those items are dropped (cold cache,
    no reasoning carried over); server-side state (previous_response_id, conversation, item
    references, reasoning items without their encrypted copy) cannot.
    """
    if body is None or body.get("previous_response_id") or body.get("conversation"):
        return False
    items = body.get("input")
    if not isinstance(items, list):
        return True
    for item in items:
        if isinstance(item, dict) and (
                item.get("type") == "item_reference"
                or (item.get("type") == "reasoning" and not item.get("encrypted_content"))):
            return False
    return True


def reasoning_key(item: dict[str, Any]) -> str:
    """What identifies a reasoning item across turns: its id, else its encrypted blob's hash."""
    rid = item.get("id")
    if isinstance(rid, str):
        return rid
    return "sha256:" + hashlib.sha256(str(item.get("encrypted_content")).encode()).hexdigest()


def drop_encrypted_reasoning(body: dict[str, Any], only: Collection[str] | None = None
                             ) -> tuple[dict[str, Any], list[str]]:
    """`body` without its encrypted reasoning items (all, or those whose key is in `only`),
    and the keys of the items dropped."""
    items = body.get("input")
    if not isinstance(items, list):
        return body, []
    kept, gone = [], []
    for item in items:
        if (isinstance(item, dict) and item.get("type") == "reasoning"
                and item.get("encrypted_content")
                and (only is None or reasoning_key(item) in only)):
            gone.append(reasoning_key(item))
        else:
            kept.append(item)
    return ({**body, "input": kept} if gone else body), gone
