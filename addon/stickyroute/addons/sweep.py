"""Expiring pins and chain links off the hot path, and the loop that runs background jobs.

A sweep must never hold the event loop (every flow) for long: a large expiry runs
SWEEP_SLICE pins per loop turn. A background job must never die silently.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable

from stickyroute.core.chains import ChainMap
from stickyroute.core.ledger import SweepStats
from stickyroute.core.pins import PinTable

logger = logging.getLogger("stickyroute")

SWEEP_SLICE = 500  # pins per event-loop turn: well under 1 ms of work


def expire_all(pins: PinTable, chains: ChainMap, stats: SweepStats,
               clock: Callable[[], float]) -> int:
    """Expire everything due in one go; returns how many pins went."""
    t0 = time.perf_counter()
    now = clock()
    gone = pins.expire(now)
    chains.expire(now)
    stats.add(time.perf_counter() - t0, len(gone))
    if gone:
        logger.debug("stickyroute: swept %d expired pins", len(gone))
    return len(gone)


async def expire_in_slices(pins: PinTable, chains: ChainMap, stats: SweepStats,
                          clock: Callable[[], float]) -> int:
    """expire_all(), SWEEP_SLICE pins at a time, letting requests run in between.

    Expiring 100 k pins in one call holds the event loop (every flow) for ~100 ms.
    """
    t0 = time.perf_counter()
    chains.expire(clock())  # not sliced yet: links expire a day after learning
    total, busy = 0, time.perf_counter() - t0
    while True:
        t0 = time.perf_counter()
        now = clock()
        total += len(pins.expire(now, limit=SWEEP_SLICE))
        pending = pins.expire_pending(now)
        busy += time.perf_counter() - t0  # the metric counts work, not the yields
        if not pending:
            break
        await asyncio.sleep(0)
    stats.add(busy, total)
    if total:
        logger.debug("stickyroute: swept %d expired pins", total)
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
            logger.exception("stickyroute: background job failed")
