"""Glue for subscription logins: keeps their access tokens fresh in the background, and lets
none of their refreshes be cut when mitmproxy stops.

One task sleeps until the next login falls due (sticky_refresh_margin seconds before its
access token expires, at most LONGEST_SLEEP), refreshes what is due (stores/refresher.py: one
refresh per login at a time, saved before use, shared through Redis), looks for new logins of
dead accounts, and takes the outcome into account health (State.sync_logins). A request never
waits for this task: it refreshes only when the token it would send has expired (route.py) or
the provider refused it (failover.py). `done` lets refreshes in flight finish, before
Persistence closes the store they publish to. Never raises into mitmproxy; never logs a token.
"""

from __future__ import annotations

import asyncio
import contextlib

from mitmproxy.utils.asyncio_utils import create_task

from stickyroute.log import get_logger
from stickyroute.state import State

logger = get_logger(__name__)

LONGEST_SLEEP = 30.0  # seconds: also how soon an expiry read from a changed file is noticed
DEAD_POLL = 5.0  # seconds between looks for a new login while one is dead or missing
SHORTEST_SLEEP = 0.5  # a pass that keeps failing must not spin


class LoginRefresh:
    def __init__(self, state: State) -> None:
        self.state = state
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def configure(self, updated: set[str]) -> None:
        if {"sticky_refresh_margin", "sticky_accounts"} & updated:
            self._wake.set()  # a new margin or new logins: plan the next pass again

    def running(self) -> None:
        self._task = create_task(self._keep_fresh(), name="stickyroute login refresh",
                                 keep_ref=True)

    async def done(self) -> None:
        if self._task is not None:
            self._task.cancel()  # its refreshes run in tasks of their own and go on
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.state.refresher.drain()
        except Exception:
            logger.exception("could not wait for the login refreshes in flight")

    def pause(self) -> float:
        """Seconds until the next pass."""
        st = self.state
        now = st.clock()
        at = st.logins.next_due(now, st.settings.refresh_margin)
        longest = DEAD_POLL if self._dead() else LONGEST_SLEEP
        return min(max(SHORTEST_SLEEP, (at if at is not None else now + longest) - now),
                   longest)

    def _dead(self) -> bool:
        logins = self.state.logins
        return any(a.oauth is not None and ((login := logins.get(a.alias)) is None
                                            or login.revoked is not None)
                   for a in self.state.accounts.accounts)

    async def _keep_fresh(self) -> None:
        await asyncio.sleep(SHORTEST_SLEEP)  # the first pass after Persistence opened the store
        while True:
            try:
                await self.refresh_once()
            except Exception:  # a background job must never die silently
                logger.exception("login refresh pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.pause())
            self._wake.clear()

    async def refresh_once(self) -> None:
        """One pass: refresh what is due, revive dead logins that have a new one, sync health."""
        st = self.state
        if st.logins:
            await st.refresher.refresh_due(st.settings.refresh_margin)
        if self._dead():
            await st.refresher.revive(st.accounts.accounts)
        st.sync_logins()
