"""A new session's claim on a shared store: one claim per session key at a time.

Concurrent first requests of one conversation in this proxy must not each claim (they could
win different accounts locally); the first claims, the others await its answer. Across
proxies the store itself decides (first writer wins). No mitmproxy import.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from stickyroute.core.choose import Chooser
from stickyroute.core.pins import Pin, PinTable

from .base import Store

logger = logging.getLogger("stickyroute")


class Claims:
    def __init__(self) -> None:
        self._pending: dict[str, asyncio.Future[str | None]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    async def settle(self, key: str, candidates: Sequence[Any], chooser: Chooser,
                     pins: PinTable, store: Store, now: float) -> str | None:
        """The alias this new session goes to (None: no candidate, or the claim failed)."""
        pending = self._pending.get(key)
        if pending is not None:
            return await pending
        pending = self._pending[key] = asyncio.get_running_loop().create_future()
        alias = None
        try:
            alias = await _claim(key, candidates, chooser, pins, store, now)
        except Exception:
            logger.exception("stickyroute: store: claim failed; routing locally")
        finally:
            del self._pending[key]
            pending.set_result(alias)
        return alias


async def _claim(key: str, candidates: Sequence[Any], chooser: Chooser, pins: PinTable,
                 store: Store, now: float) -> str | None:
    shared: Mapping[str, int] | None = store.shared_sessions()
    account = chooser.choose(candidates,
                             shared if shared is not None else pins.sessions_per_alias())
    if account is None:
        return None
    result = await store.claim(Pin(key, account.alias, created=now, last_used=now))
    if result is None:
        return str(account.alias)  # the store did not answer in time: route from memory
    pin, ours = result
    if not ours:
        pins.put(key, pin.alias, now)  # another proxy was first: follow it
    return pin.alias
