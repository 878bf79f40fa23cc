"""addons/sweep.py: idle pins expire, and a big sweep yields to the event loop between slices."""

import asyncio

from stickyroute.addons import sweep
from tests.helpers import flow


def test_idle_pin_expires_and_sweep(addon_ctx):
    addon, tctx, clock = addon_ctx
    tctx.configure(addon.options, sticky_idle_timeout=60)
    addon.route.request(flow(body={"input": "x"}, headers=[("session-id", "s")]))
    assert len(addon.state.pins) == 1
    clock.t += 61
    assert addon.sweeper.sweep() == 1 and len(addon.state.pins) == 0


def test_sweep_in_slices_yields_to_the_loop(addon_ctx, monkeypatch):
    addon, _, clock = addon_ctx
    monkeypatch.setattr(sweep, "SWEEP_SLICE", 10)
    for i in range(35):
        addon.state.pins.put(f"s{i}", "oa", clock.t)
    addon.state.pins.put("live", "oa", clock.t + 3000)
    clock.t += 3600
    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    async def run() -> int:
        task = asyncio.ensure_future(other_work())
        gone = await addon.sweeper.sweep_in_slices()
        task.cancel()
        return gone

    assert asyncio.run(run()) == 35
    assert len(addon.state.pins) == 1 and turns >= 3  # 4 slices: the loop ran in between
    assert addon.state.sweeps.count == 1 and addon.state.sweeps.removed == 35
