"""Glue: expires pins, chain links and warm prompt prefixes off the hot path, and the loop
background jobs run in.

A sweep must never hold the event loop (every flow) for long: a large expiry runs SWEEP_SLICE
pins per loop turn. A background job must never die silently.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable

from mitmproxy.utils.asyncio_utils import create_task

from stickyroute.log import get_logger
from stickyroute.state import State

logger = get_logger(__name__)

SWEEP_SLICE = 500  # pins per event-loop turn: well under 1 ms of work


class Sweeper:
    def __init__(self, state: State) -> None:
        self.state = state
        self._task: asyncio.Task[None] | None = None

    def running(self) -> None:
        self._task = create_task(every(lambda: self.state.settings.sweep_interval,
                                       self.sweep_in_slices),
                                 name="stickyroute sweep", keep_ref=True)

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def sweep(self) -> int:
        """Expire everything due in one go; returns how many pins went."""
        st = self.state
        t0 = time.perf_counter()
        now = st.clock()
        gone = st.pins.expire(now)
        st.chains.expire(now)
        st.warm.expire(now)
        st.sweeps.add(time.perf_counter() - t0, len(gone))
        if gone:
            logger.debug("swept %d expired pins", len(gone))
        return len(gone)

    async def sweep_in_slices(self) -> int:
        """sweep(), SWEEP_SLICE pins at a time, letting requests run in between.

        Expiring 100 k pins in one call holds the event loop (every flow) for ~100 ms.
        """
        st = self.state
        t0 = time.perf_counter()
        st.chains.expire(st.clock())  # not sliced: links expire a day after learning
        total, busy = 0, time.perf_counter() - t0
        while True:
            t0 = time.perf_counter()
            now = st.clock()
            total += len(st.pins.expire(now, limit=SWEEP_SLICE))
            # a full slice of prefixes: maybe more are due (the front holds the oldest)
            warm_pending = st.warm.expire(now, limit=SWEEP_SLICE) == SWEEP_SLICE
            pending = st.pins.expire_pending(now) or warm_pending
            busy += time.perf_counter() - t0  # the metric counts work, not the yields
            if not pending:
                break
            await asyncio.sleep(0)
        st.sweeps.add(busy, total)
        if total:
            logger.debug("swept %d expired pins", total)
        return total


async def every(interval: Callable[[], float], job: Callable[[], object]) -> None:
    """Run job (sync or async) forever, interval() seconds apart; log its failures."""
    while True:
        await asyncio.sleep(interval())
        try:
            result = job()
            if inspect.isawaitable(result):
                await result
        except Exception:  # a background job must never die silently
            logger.exception("background job failed")
