"""Glue for the store: opens the one `sticky_store` names at start, ticks it, closes it at exit.

A separate addon from StickyRoute (persistence is its own concern); it hands the open store to
StickyRoute, whose request path calls `claim()` / `changed()` on it. A store problem is logged,
never raised into mitmproxy: the proxy keeps routing from memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from mitmproxy import ctx

from stickyroute.core.health import Event, Health
from stickyroute.stores.base import Local, MemoryStore, Section, Store, make_store
from stickyroute.stores.share import HealthSync
from stickyroute.stores.snapshot import LedgerSection

logger = logging.getLogger("stickyroute")

TICK = 1.0  # seconds between store ticks (the file store throttles its own snapshots)
SECTIONS = ("chains", "health")  # StickyRoute attributes saved when they implement Section


class Persistence:
    def __init__(self, sticky: Any) -> None:
        self.sticky = sticky
        self._spec: tuple[str, str, str, float] | None = None
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self.health_sync = HealthSync()

    def _health_changed(self, alias: str, event: Event, now: float) -> None:
        try:
            self.health_sync.publish(self.sticky.health, self.sticky.store, alias, event, now)
        except Exception:  # called from the traffic path: never raise into it
            logger.exception("stickyroute: store: could not share a health change")

    def local(self) -> Local:
        s = self.sticky
        sections: dict[str, Section] = {"counters": LedgerSection(s.ledger)}
        for name in SECTIONS:
            part = getattr(s, name, None)
            if isinstance(part, Section):
                sections[name] = part
        return Local(s.pins, sections, [a.alias for a in s.accounts.accounts])

    def configure(self, updated: set[str]) -> None:
        if not {"sticky_store", "sticky_store_prefix", "sticky_store_timeout", "confdir"} & updated:
            return
        spec = (ctx.options.sticky_store, ctx.options.confdir, ctx.options.sticky_store_prefix,
                ctx.options.sticky_store_timeout / 1000)
        if spec != self._spec:
            self._spec = spec
            if self._running:  # switched at run time: save to the old store, load the new one
                old = self.sticky.store
                asyncio.ensure_future(self._close(old))
                self._open()

    def running(self) -> None:
        self._running = True
        health = getattr(self.sticky, "health", None)
        if isinstance(health, Health):
            health.on_change = self._health_changed
        self._open()
        self._task = asyncio.ensure_future(self._ticks())

    async def done(self) -> None:
        self._running = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close(self.sticky.store)
        self.sticky.store = MemoryStore()

    def _open(self) -> None:
        spec, confdir, prefix, timeout = self._spec or ("", "~/.mitmproxy", "stickyroute:", 0.1)
        try:
            store: Store = make_store(spec, confdir, prefix, timeout)
            store.open(self.local(), self.sticky.clock())
        except Exception:
            logger.exception("stickyroute: store: cannot open %r; keeping pins in memory", spec)
            store = MemoryStore()
        self.sticky.store = store

    async def _close(self, store: Store) -> None:
        try:
            await store.close(self.local(), self.sticky.clock())
        except Exception:
            logger.exception("stickyroute: store: final save failed")

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                local = self.local()
                await self.sticky.store.tick(local, self.sticky.clock())
                if isinstance(getattr(self.sticky, "health", None), Health):
                    await self.health_sync.pull(self.sticky.health, self.sticky.store,
                                                local.aliases, self.sticky.clock())
            except Exception:  # a background job must never die silently
                logger.exception("stickyroute: store: background save/sync failed")
