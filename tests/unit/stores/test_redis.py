"""stores/redis.py without a server: an unreachable Redis never holds routing up.

Everything that needs a running redis-server is in tests/e2e/test_redis_*.py."""

import asyncio
import time

from stickyroute.core.pins import Pin, PinTable
from stickyroute.stores import redis
from stickyroute.stores.base import Local
from stickyroute.stores.redis import RedisStore


def local(aliases=("oa", "ob")):
    return Local(PinTable(idle_timeout=3600, max_age=86400), {}, list(aliases))


def run(coro):
    return asyncio.run(coro)


def test_unreachable_redis_at_start_never_blocks_routing(tmp_path):
    async def go():
        s = RedisStore("redis://127.0.0.1:9/0", "t:")  # nothing listens on port 9
        started = time.monotonic()
        for _ in range(redis.DOWN_AFTER):
            assert await s.claim(Pin("k", "oa", 1.0, 1.0)) is None  # None: route from memory
        assert not s.up  # from now on requests do not even try
        assert await s.claim(Pin("k2", "oa", 1.0, 1.0)) is None
        await s.tick(local(), 1.0)
        await s.close(local(), 1.0)
        # no wait anywhere near a socket timeout per request (each is bounded by HARD_TIMEOUT)
        assert time.monotonic() - started < redis.HARD_TIMEOUT
    run(go())
