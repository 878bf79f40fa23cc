"""Test-only mitmproxy addon: keeps mitmdump stopping for a while, the way a slow addon does.

mitmproxy keeps serving while the addons' `done` hooks run (the listening socket and every
open connection stay up until the last `done` returns), so anything another addon awaits in its
`done` is a window in which traffic still flows. This addon makes that window deterministic:
its `done` waits until the file named by `slow_stop_file` exists (at most
`slow_stop_timeout` seconds). It logs "slow-stop: the proxy is stopping" the moment the
shutdown starts, so a test knows when to act. Load it after addon/sticky.py. Never use it
outside tests.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from mitmproxy import ctx

logger = logging.getLogger(__name__)


class SlowStop:
    def __init__(self) -> None:
        self._watch: asyncio.Task[None] | None = None

    def load(self, loader: Any) -> None:
        loader.add_option("slow_stop_file", str, "",
                          "Test only: `done` waits until this file exists (empty: no wait).")
        loader.add_option("slow_stop_timeout", float, 30.0,
                          "Test only: the longest `done` waits for slow_stop_file, in seconds.")

    def running(self) -> None:
        self._watch = asyncio.ensure_future(self._announce())

    async def _announce(self) -> None:
        await ctx.master.should_exit.wait()
        logger.warning("slow-stop: the proxy is stopping")

    async def done(self) -> None:
        path = ctx.options.slow_stop_file
        if not path:
            return
        deadline = time.monotonic() + ctx.options.slow_stop_timeout
        while not os.path.exists(path) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        logger.warning("slow-stop: done")


addons = [SlowStop()]
