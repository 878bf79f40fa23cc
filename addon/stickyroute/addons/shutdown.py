"""Glue for a stop of the proxy (SIGINT, SIGTERM, mitmweb's quit): nothing new goes upstream,
requests already upstream get a grace period, and the final save comes after all of them.

mitmproxy 12 has no hook before `done`. The first sign of a stop is `ctx.master.should_exit`
(the asyncio.Event Master.shutdown sets; mitmdump's SIGINT and SIGTERM handlers call it), and
it stays set to the end. Meanwhile mitmproxy keeps serving: the listening socket and every
connection stay open while the addons' `done` hooks run, and only after the last one does
asyncio cancel what is left (whose error hooks then run after every `done`). So this addon
sits before the route addon (its request hook answers first) and before Persistence (its
`done` runs before the final save):
- from should_exit on, a request for an account host is answered 503 here: nothing is routed,
  pinned or sent upstream after the stop began;
- `done` waits up to sticky_stop_grace seconds for the requests already upstream, closes the
  upstream connections still open after that (their error hooks run now, as stopped by
  shutdown), then seals: Persistence's final save is the last word.
It must never raise into mitmproxy and never cut anything while the proxy keeps running.
"""

from __future__ import annotations

import asyncio
import time

from mitmproxy import ctx, http
from mitmproxy.utils.asyncio_utils import create_task

from stickyroute.core.ledger import Ledger
from stickyroute.core.stop import Step, refusal
from stickyroute.keys import META, RefusedMeta
from stickyroute.log import get_logger
from stickyroute.state import State

logger = get_logger(__name__)

POLL = 0.05  # seconds between looks at the in-flight count while draining
AFTER_CUT = 1.0  # seconds the error hooks of closed connections get to run before the save


def shutting_down() -> bool:
    """Has mitmproxy started to shut down? (False outside a running master: unit tests.)"""
    master = getattr(ctx, "master", None)
    should_exit = getattr(master, "should_exit", None)
    return isinstance(should_exit, asyncio.Event) and should_exit.is_set()


def stopping(state: State) -> bool:
    """Is the proxy stopping? Notices it even before the watcher task has woken up."""
    if not state.stop.stopping and shutting_down() and state.stop.begin(state.clock()):
        logger.info("stopping: %d requests upstream get up to %d s to finish; new requests are "
                    "answered 503 until the restart", inflight(state.ledger),
                    state.settings.stop_grace)
    return state.stop.stopping


def inflight(ledger: Ledger) -> int:
    return sum(stats.inflight for stats in ledger.accounts.values())


def cut_upstream() -> int:
    """Close every upstream connection mitmproxy's proxy server still has open; the flows on
    them end in mitmproxy's error hook at once. Returns how many were closed."""
    server = ctx.master.addons.get("proxyserver")
    closed = 0
    for handler in list(getattr(server, "connections", {}).values()):
        for conn, io in list(handler.transports.items()):
            if conn is not handler.client and io.handler is not None and not io.handler.done():
                io.handler.cancel("the proxy is stopping")
                closed += 1
    return closed


class Shutdown:
    def __init__(self, state: State) -> None:
        self.state = state
        self._watch: asyncio.Task[None] | None = None

    def running(self) -> None:
        self._watch = create_task(self._wait_for_stop(), name="stickyroute stop watch",
                                  keep_ref=True)

    async def _wait_for_stop(self) -> None:
        await ctx.master.should_exit.wait()
        stopping(self.state)

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live or not stopping(self.state):
            return
        req = flow.request
        provider = self.state.accounts.provider_for_host(req.host.lower()) if (
            req.scheme == "https") else None
        if provider is None:
            return  # not an account host: mitmproxy's business, as always
        e = refusal(provider)
        flow.response = http.Response.make(e.status, e.body(),
                                           {**e.headers(), "connection": "close"})
        flow.metadata[META] = RefusedMeta(error=e.code, message=e.message)
        logger.info("%s %s -> %d: the proxy is stopping", provider, req.path, e.status)

    async def done(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if not shutting_down():
            return  # the script is reloaded or removed: the proxy goes on serving
        try:
            await self._drain()
        except Exception:  # the final save must happen whatever went wrong here
            logger.exception("stopping: could not wait for the requests upstream")
        self.state.stop.seal(self.state.clock())

    async def _drain(self) -> None:
        r = self.state
        stopping(r)
        while (step := r.stop.next_step(inflight(r.ledger), r.settings.stop_grace,
                                        r.clock())) is Step.WAIT:
            await asyncio.sleep(POLL)
        if step is Step.CUT:
            closed = cut_upstream()
            logger.warning("stopping: closed %d upstream connections still open after %d s; "
                           "their clients get an error and retry after the restart", closed,
                           r.settings.stop_grace)
            deadline = time.monotonic() + AFTER_CUT
            while inflight(r.ledger) and time.monotonic() < deadline:
                await asyncio.sleep(POLL)
        left = inflight(r.ledger)
        logger.info("stopping: saving the state%s",
                    f"; {left} requests still upstream are not in it" if left else "")
