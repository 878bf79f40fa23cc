"""Waiting on Redis within a time budget that does not count the event loop's own lag.

A request waits about `timeout` (sticky_store_timeout) for Redis. Time the event loop itself
spent elsewhere (a burst of TLS handshakes can hold it for 100+ ms) is not held against Redis,
up to HARD_TIMEOUT. No mitmproxy import.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

TIMEOUT = 0.1
HARD_TIMEOUT = 0.5


async def within[T](job: Awaitable[T], timeout: float = TIMEOUT) -> T:
    """`job` within `timeout` of Redis time: while our own timer fires late (the loop was busy),
    the wait is extended, never past HARD_TIMEOUT."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(job)
    hard = loop.time() + HARD_TIMEOUT
    while True:
        started = loop.time()
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if done:
            return task.result()
        now = loop.time()
        if now - started - timeout < timeout / 2 or now >= hard:
            task.cancel()
            raise TimeoutError("redis did not answer in time")
