"""Glue for the store: opens the one `sticky_store` names at start, ticks it, closes it at exit.

A separate addon from routing (persistence is its own concern); it puts the open store into the
State, whose request path calls `claim()` / `changed()` on it, and gives the login refresher
the store's token share (Redis), so the share always follows the store. A store problem is
logged, never raised into mitmproxy: the proxy keeps routing from memory.
"""

from __future__ import annotations

import asyncio
import contextlib

from mitmproxy import ctx
from mitmproxy.utils.asyncio_utils import create_task

from stickyroute.config.settings import Settings
from stickyroute.core.health import Event
from stickyroute.log import get_logger
from stickyroute.state import State
from stickyroute.stores import make_store
from stickyroute.stores.base import Local, MemoryStore, Section, Store
from stickyroute.stores.share import HealthSync
from stickyroute.stores.snapshot import LedgerSection
from stickyroute.stores.tokenshare import share_for

logger = get_logger(__name__)

TICK = 1.0  # seconds between store ticks (the file store throttles its own snapshots)
OPTIONS = {"sticky_store", "sticky_store_prefix", "sticky_store_timeout", "confdir"}


class Persistence:
    def __init__(self, state: State) -> None:
        self.state = state
        self._opened: tuple[object, ...] | None = None  # what the open store was made from
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self.health_sync = HealthSync()

    def local(self) -> Local:
        st = self.state
        sections: dict[str, Section] = {"counters": LedgerSection(st.ledger),
                                        "chains": st.chains, "health": st.health,
                                        "logins": st.logins}
        return Local(st.pins, sections, [a.alias for a in st.accounts.accounts])

    def configure(self, updated: set[str]) -> None:
        if self._running and OPTIONS & updated and self._spec() != self._opened:
            # switched at run time: save to the old store, load the new one
            old = self.state.store
            create_task(self._close(old), name="stickyroute store close", keep_ref=True)
            self._open()

    def running(self) -> None:
        self._running = True
        self.state.health.on_change = self._health_changed
        self._open()
        self._task = create_task(self._ticks(), name="stickyroute store tick", keep_ref=True)

    async def done(self) -> None:
        self._running = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close(self.state.store)
        self.state.store = MemoryStore()
        self.state.refresher.share = None

    def _spec(self) -> tuple[object, ...]:
        s: Settings = self.state.settings
        return (s.store, s.store_prefix, s.store_timeout, ctx.options.confdir)

    def _open(self) -> None:
        s = self.state.settings
        self._opened = self._spec()
        try:
            store: Store = make_store(s.store, ctx.options.confdir, s.store_prefix,
                                      s.store_timeout)
            store.open(self.local(), self.state.clock())
        except Exception:
            logger.exception("store: cannot open %s; keeping pins in memory", s.store.kind)
            store = MemoryStore()
        self.state.store = store
        # logins refreshed from now on are shared through this store (Redis) or not
        self.state.refresher.share = share_for(store)

    async def _close(self, store: Store) -> None:
        try:
            await store.close(self.local(), self.state.clock())
        except Exception:
            logger.exception("store: final save failed")

    def _health_changed(self, alias: str, event: Event, now: float) -> None:
        try:
            self.health_sync.publish(self.state.health, self.state.store, alias, event, now)
        except Exception:  # called from the traffic path: never raise into it
            logger.exception("store: could not share a health change")

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                local, st = self.local(), self.state
                await st.store.tick(local, st.clock())
                await self.health_sync.pull(st.health, st.store, local.aliases, st.clock())
            except Exception:  # a background job must never die silently
                logger.exception("store: background save/sync failed")
