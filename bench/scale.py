"""Table scale: the pin table at 10 k / 100 k / 1 M pins, driven directly (no proxy).

Memory per pin (tracemalloc), lookup (get + touch), the request hook's time at that table
size, sweep time for ~10% of the table expiring at once, and the longest event-loop stall the
addon's sweep causes while requests keep flowing (a ticker task measures loop lag in thread
CPU time, so preemption by other processes on a busy machine does not count).
"""

from __future__ import annotations

import asyncio
import gc
import random
import statistics
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

from stickyroute.core.pins import PinTable

IDLE = 3600.0
EXPIRING = 0.10  # share of the table that goes idle at once


@dataclass
class ScaleResult:
    pins: int
    bytes_per_pin: float
    table_mb: float
    lookup_us: float  # get + touch
    hook_us: float  # the addon's request hook, pinned session, header id
    sweep_ms: float  # one unsliced expire() of ~10%
    stall_unsliced_ms: float  # longest loop lag: expire() in one call (as before slicing)
    stall_sliced_ms: float  # longest loop lag: the addon's sweep_in_slices


def session_key(i: int) -> str:
    return f"openai/3f9a0c1d2e4b/{i:08x}-5c1e-4b7a-9d2f-{i:012x}"


def build(n: int) -> PinTable:
    """n pins over 3 aliases; the first 10% created an hour before the rest."""
    table = PinTable(idle_timeout=IDLE, max_age=10 * IDLE, max_size=2 * n)
    aliases = ("acct-0", "acct-1", "acct-2")
    old = int(n * EXPIRING)
    for i in range(n):
        table.put(session_key(i), aliases[i % 3], 0.0 if i < old else IDLE / 2)
    return table


def measure_memory(n: int) -> float:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    table = build(n)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del table
    return used / n


def measure_lookup(table: PinTable, n: int, now: float, samples: int = 20_000) -> float:
    rng = random.Random(1)
    keys = [session_key(rng.randrange(int(n * EXPIRING), n)) for _ in range(samples)]
    t0 = time.perf_counter()
    for key in keys:
        pin = table.get(key, now)
        if pin is not None:
            table.touch(pin, now)
    return (time.perf_counter() - t0) / samples * 1e6


def measure_hook(table: PinTable, now: float, accounts: Path, samples: int = 500) -> float:
    """Median µs of the route addon's request hook on a header-identified Responses request."""
    from mitmproxy.test import taddons, tflow, tutils

    from stickyroute import build as build_addons
    from stickyroute.state import State

    addon = build_addons(State(clock=lambda: now))
    body = (b'{"model":"gpt-5-codex","input":[{"type":"message","role":"user","content":"hi"}],'
            b'"prompt_cache_key":"t","store":false,"reasoning":{"effort":"low"},'
            b'"include":["reasoning.encrypted_content"]}')
    times = []
    with taddons.context(*addon) as tctx:
        tctx.configure(addon.options, sticky_accounts=str(accounts))
        addon.state.pins = table
        for i in range(samples):
            req = tutils.treq(host="api.openai.com", port=443, scheme=b"https",
                              path=b"/v1/responses", method=b"POST", content=body)
            req.headers["authorization"] = "Bearer sk-client"
            req.headers["session-id"] = f"hook-{i % 100}"
            flow = tflow.tflow(req=req)
            t0 = time.perf_counter()
            addon.route.request(flow)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


async def _stall(table: PinTable, now: float, sliced: bool) -> float:
    """Longest loop lag while requests flow and the sweep runs the way the sweeper runs it."""
    from stickyroute import build as build_addons
    from stickyroute.state import State

    addon = build_addons(State(clock=lambda: now))
    addon.state.pins = table
    worst = 0.0
    stop = False

    async def ticker() -> None:
        nonlocal worst
        # Thread CPU time, not wall time: a busy machine preempting this process is not a
        # stall the sweep causes.
        while not stop:
            t0 = time.thread_time()
            await asyncio.sleep(0)
            worst = max(worst, time.thread_time() - t0)

    async def requests() -> None:
        i = 0
        while not stop:  # a lookup per loop turn, like flows arriving
            pin = table.get(session_key(len(table) - 1 - i % 1000), now)
            if pin is not None:
                table.touch(pin, now)
            i += 1
            await asyncio.sleep(0)

    tasks = [asyncio.ensure_future(ticker()), asyncio.ensure_future(requests())]
    await asyncio.sleep(0.01)
    worst = 0.0
    if sliced:
        await addon.sweeper.sweep_in_slices()
    else:
        addon.sweeper.sweep()
    await asyncio.sleep(0.01)
    stop = True
    await asyncio.gather(*tasks)
    return worst * 1e3


def measure(n: int, accounts: Path, with_memory: bool = True) -> ScaleResult:
    per_pin = measure_memory(n) if with_memory else float("nan")
    table = build(n)
    now = IDLE / 2
    lookup = measure_lookup(table, n, now)
    hook = measure_hook(table, now, accounts)
    expire_at = IDLE + 1  # the first 10% are idle for an hour, the rest for half
    t0 = time.perf_counter()
    gone = table.expire(expire_at)
    sweep = (time.perf_counter() - t0) * 1e3
    assert len(gone) == int(n * EXPIRING), len(gone)
    stalls = []
    for sliced in (False, True):
        table = build(n)
        stalls.append(asyncio.run(_stall(table, expire_at, sliced)))
        assert len(table) == n - int(n * EXPIRING)
    del table
    gc.collect()
    return ScaleResult(n, per_pin, per_pin * n / 1e6, lookup, hook, sweep, *stalls)


def run(sizes: list[int], accounts: Path) -> list[ScaleResult]:
    return [measure(n, accounts) for n in sizes]
