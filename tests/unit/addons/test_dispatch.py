"""Dispatch: mitmproxy sees one addon; every hook of our addons runs once, in order, with
mitmproxy's awaiting semantics; the commands are still there."""

import asyncio
from typing import Any

import pytest
from mitmproxy import exceptions, hooks
from mitmproxy.proxy.layers.http._hooks import HttpRequestHook, HttpResponseHook
from mitmproxy.test import taddons, tflow

from stickyroute import make_addons
from stickyroute.addons.dispatch import Dispatch, combined
from tests.helpers import addons


class Part:
    def __init__(self, name: str, seen: list[str]) -> None:
        self.name, self.seen = name, seen

    def request(self, flow: Any) -> None:
        self.seen.append(f"{self.name}.request")


class Waits(Part):
    def request(self, flow: Any) -> Any:  # like the route addon: an awaitable only sometimes
        self.seen.append(f"{self.name}.request")

        async def later() -> None:
            await asyncio.sleep(0)
            self.seen.append(f"{self.name}.request done")
        return later()

    async def response(self, flow: Any) -> None:
        await asyncio.sleep(0)
        self.seen.append(f"{self.name}.response")


def test_each_hook_once_in_order_awaiting_as_mitmproxy_does() -> None:
    seen: list[str] = []
    parts = [Part("a", seen), Waits("b", seen), Part("c", seen)]

    async def run() -> None:
        with taddons.context(Dispatch(parts)) as tctx:  # type: ignore[arg-type]
            f = tflow.tflow()
            await tctx.master.addons.handle_lifecycle(HttpRequestHook(f))
            await tctx.master.addons.handle_lifecycle(HttpResponseHook(f))

    asyncio.run(run())
    assert seen == ["a.request", "b.request", "b.request done", "c.request", "b.response"]


def test_a_combined_hook_is_sync_unless_a_part_is_async() -> None:
    seen: list[str] = []
    assert combined([Part("a", seen).request, Part("b", seen).request])(None) is None
    assert seen == ["a.request", "b.request"]
    hook = combined([Part("a", seen).request, Waits("b", seen).response])
    assert asyncio.iscoroutinefunction(hook)
    with taddons.context() as tctx, pytest.raises(exceptions.AddonManagerError):
        tctx.master.addons.invoke_addon_sync(
            type("A", (), {"response": staticmethod(hook)})(), HttpResponseHook(tflow.tflow()))


def test_stickyroute_behind_dispatch_has_every_hook_and_command_of_its_addons() -> None:
    (dispatch,) = make_addons()
    assert isinstance(dispatch, Dispatch) and not hasattr(dispatch, "addons")
    parts = dispatch.parts
    for event in hooks.all_hooks:
        if any(hasattr(p, event) for p in parts):
            assert hasattr(dispatch, event), event
        else:
            assert not hasattr(dispatch, event), event
    with taddons.context(dispatch) as tctx:
        assert {"sticky.sessions", "sticky.accounts", "sticky.evict",
                "sticky.evict.account"} <= set(tctx.master.commands.commands)
        assert tctx.master.addons.get("stickyroute") is dispatch
        assert tctx.master.commands.execute("sticky.sessions") == []


def test_a_single_implementation_is_the_addons_own_method() -> None:
    parts = addons()
    dispatch = Dispatch(parts)
    assert dispatch.load == parts.options.load  # only the options addon loads
    assert dispatch.websocket_message == parts.follow.websocket_message


class Breaks(Part):
    def request(self, flow: Any) -> None:
        self.seen.append(f"{self.name}.request")
        raise RuntimeError("a bug")

    async def response(self, flow: Any) -> None:
        raise RuntimeError("another bug")


class Refuses(Part):
    def configure(self, updated: set[str]) -> None:
        raise exceptions.OptionsError("Cannot parse sticky_x option: no")


def test_one_part_failing_is_logged_and_the_next_still_runs(caplog: pytest.LogCaptureFixture
                                                             ) -> None:
    seen: list[str] = []
    parts = [Breaks("a", seen), Waits("b", seen), Breaks("c", seen), Part("d", seen)]
    sync = combined([p.request for p in parts])
    pending = sync(None)  # a raised, b handed back an awaitable: the rest run after it
    assert pending is not None
    asyncio.run(pending)
    assert seen == ["a.request", "b.request", "b.request done", "c.request", "d.request"]
    asyncio.run(combined([Breaks("x", seen).response, Waits("y", seen).response])(None))
    assert seen[-1] == "y.response"
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 3 and all(r.exc_info for r in failures)


def test_options_errors_and_halts_still_reach_mitmproxy() -> None:
    seen: list[str] = []
    with pytest.raises(exceptions.OptionsError):
        combined([Part("a", seen).request, Refuses("b", seen).configure])(set())
