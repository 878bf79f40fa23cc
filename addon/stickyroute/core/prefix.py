"""Warm prompt prefixes: which account's prompt cache holds a prompt's leading blocks, until when.

A new conversation that starts with a system prompt / instructions and tools another
conversation already sent is cheaper on the account that served that one: its cache holds the
prefix. `prefix_of` hashes those leading blocks (OpenAI: model + instructions + tools + leading
system/developer messages; Anthropic: model + tools + system blocks up to the last cache
breakpoint among them) and says how long the provider keeps them (`cache_ttl`); `WarmPrefixes`
remembers, per account, the prefixes it served for that long.

Pure: `now` is passed in. Memory is bounded (least recently used entries go first) and the work
per request is one hash of the prefix plus dict operations, never a pass over the table. It
reads request bodies the caller already parsed and must never raise on what they hold; it keeps
hashes only, never prompt text.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from .identify import VOLATILE_PREFIXES

ANTHROPIC_TTL = 300.0  # Anthropic's default cache lifetime ("5m")
ANTHROPIC_LONG_TTL = 3600.0  # every cache_control asks ttl "1h"
OPENAI_TTL = 600.0  # sticky_openai_cache_ttl's default: OpenAI keeps prefixes 5-10 min idle
RETENTION_24H = 86400.0  # a request's prompt_cache_retention: "24h"
MIN_PREFIX_CHARS = 4096  # ~1024 tokens: providers cache nothing shorter
MAX_ENTRIES = 50_000  # (prefix, account) pairs remembered; ~10 MB at most


class Prefix(NamedTuple):
    key: str  # a hash of the provider, model and leading blocks
    ttl: float  # seconds the provider keeps it after a use


def cache_ttl(provider: str, body: Mapping[str, Any] | None, openai_ttl: float = OPENAI_TTL
              ) -> float:
    """How long the provider keeps this request's cached prefix after the request."""
    if not isinstance(body, Mapping):
        return ANTHROPIC_TTL if provider == "anthropic" else openai_ttl
    if provider == "anthropic":
        ttls = [m.get("ttl") for m in _cache_markers(body)]
        return ANTHROPIC_LONG_TTL if ttls and all(t == "1h" for t in ttls) else ANTHROPIC_TTL
    if body.get("prompt_cache_retention") == "24h":
        return max(openai_ttl, RETENTION_24H)
    return openai_ttl


def prefix_of(provider: str, body: Mapping[str, Any] | None, openai_ttl: float = OPENAI_TTL,
              min_chars: int = MIN_PREFIX_CHARS) -> Prefix | None:
    """The request's cacheable leading blocks as a Prefix; None when too short to be cached
    (or, for Anthropic, when nothing asks for caching)."""
    if not isinstance(body, Mapping):
        return None
    try:
        blocks = (_anthropic_blocks(body) if provider == "anthropic" else _openai_blocks(body))
    except (TypeError, ValueError, RecursionError):  # a body no provider would accept
        return None
    if blocks is None or sum(len(b) for b in blocks) < min_chars:
        return None
    model = body.get("model")
    h = hashlib.blake2b(digest_size=16)
    for part in (provider, model if isinstance(model, str) else "", *blocks):
        h.update(part.encode("utf-8", "replace"))
        h.update(b"\x1e")
    return Prefix(h.hexdigest(), cache_ttl(provider, body, openai_ttl))


def _openai_blocks(body: Mapping[str, Any]) -> list[str]:
    """Instructions, tools, then the system/developer messages the input or messages start with
    (Responses and Chat Completions alike: OpenAI caches the longest common prefix)."""
    blocks: list[str] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        blocks.append(instructions)
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        blocks.append(_canonical(tools))
    items = body.get("input") if "input" in body else body.get("messages")
    if isinstance(items, list):
        for item in items:
            if not isinstance(item, Mapping) or item.get("role") not in ("system", "developer"):
                break
            blocks.append(_canonical(item.get("content")))
    return blocks


def _anthropic_blocks(body: Mapping[str, Any]) -> list[str] | None:
    """Tools then system blocks (Anthropic's cache order), up to the last breakpoint among
    them; all of them when the breakpoints are in the messages; None when there are none."""
    tools = body.get("tools")
    system = body.get("system")
    items: list[Any] = list(tools) if isinstance(tools, list) else []
    if isinstance(system, str):
        items.append({"type": "text", "text": system})
    elif isinstance(system, list):
        items.extend(system)
    last = max((i for i, b in enumerate(items)
                if isinstance(b, Mapping) and isinstance(b.get("cache_control"), Mapping)),
               default=None)
    if last is None:
        if not any(True for _ in _message_markers(body)):
            return None  # Anthropic caches only what a cache_control asks for
        last = len(items) - 1
    return [_canonical(b) for b in items[:last + 1] if not _volatile(b)]


def _volatile(block: Any) -> bool:
    """Claude Code's per-request billing line (as identify skips it): never cached."""
    text = block.get("text") if isinstance(block, Mapping) else block
    return isinstance(text, str) and text.startswith(VOLATILE_PREFIXES)


def _canonical(value: Any) -> str:
    """Stable text of a block: its text, or its JSON without the cache marker."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        if value.get("type") == "text" and isinstance(value.get("text"), str):
            return str(value["text"])
        value = {k: v for k, v in value.items() if k != "cache_control"}
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _cache_markers(body: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    for name in ("tools", "system"):
        blocks = body.get(name)
        if isinstance(blocks, list):
            for b in blocks:
                if isinstance(b, Mapping) and isinstance(b.get("cache_control"), Mapping):
                    yield b["cache_control"]
    yield from _message_markers(body)


def _message_markers(body: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return
    for m in messages:
        content = m.get("content") if isinstance(m, Mapping) else None
        if isinstance(content, list):
            for b in content:
                if isinstance(b, Mapping) and isinstance(b.get("cache_control"), Mapping):
                    yield b["cache_control"]


class WarmPrefixes:
    """(prefix, account) -> until when that account's cache holds it.

    Entries are ordered by last use, so the least recently used go first when the bound is
    reached and a sweep pops expired ones from the front. Lifetimes differ (5 min to 24 h), so
    an expired entry may sit behind a live one: reads skip it, and the bound or a later sweep
    removes it.
    """

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._by_prefix: dict[str, dict[str, float]] = {}
        self._per_alias: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def touch(self, alias: str, prefix: Prefix, now: float) -> None:
        """This account just served a request starting with this prefix."""
        entry = (prefix.key, alias)
        until = now + prefix.ttl
        if entry in self._entries:
            self._entries.move_to_end(entry)
        else:
            self._per_alias[alias] = self._per_alias.get(alias, 0) + 1
        self._entries[entry] = until
        self._by_prefix.setdefault(prefix.key, {})[alias] = until
        while len(self._entries) > self.max_entries:
            self._drop(*self._entries.popitem(last=False)[0])

    def warm(self, key: str, now: float) -> dict[str, float]:
        """The accounts whose cache holds this prefix now, with until when."""
        held = self._by_prefix.get(key)
        return {a: t for a, t in held.items() if t > now} if held else {}

    def count(self, alias: str) -> int:
        """Prefixes remembered for an account (expired ones count until swept)."""
        return self._per_alias.get(alias, 0)

    def expire(self, now: float, limit: int | None = None) -> int:
        """Drop expired entries from the front; returns how many went."""
        gone = 0
        while self._entries and gone != limit:
            entry, until = next(iter(self._entries.items()))
            if until > now:
                break
            del self._entries[entry]
            self._drop(*entry)
            gone += 1
        return gone

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the prefixes of accounts no longer in the file (costs the table size)."""
        keep = set(keep)
        for entry in [e for e in self._entries if e[1] not in keep]:
            del self._entries[entry]
            self._drop(*entry)

    def _drop(self, key: str, alias: str) -> None:
        held = self._by_prefix.get(key)
        if held is not None:
            held.pop(alias, None)
            if not held:
                del self._by_prefix[key]
        n = self._per_alias.get(alias, 0) - 1
        if n > 0:
            self._per_alias[alias] = n
        else:
            self._per_alias.pop(alias, None)
