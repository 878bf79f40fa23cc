"""Glue: the one addon object mitmproxy sees for stickyroute, each hook once, calling our
addons' hooks in build() order.

mitmproxy walks every addon for every event, eight events a request (four hooks, each
followed by `update`), asks each for the hook by name and builds the hook's arguments again
for each one that has it: across our ten addons that walk cost the proxy about as much CPU as
the hooks' own work (docs/bench.md). Here it is done once, at load: each hook name mitmproxy
knows maps to the bound methods that implement it, in order. Calls keep mitmproxy's
semantics: one after the other, an awaitable awaited before the next runs; a hook declared
`async` makes the combined hook `async` (mitmproxy then refuses it in a synchronous event,
as it would have refused the addon's own). As between mitmproxy's addons, an exception in one
of ours is logged and the next one still runs (AddonHalt and OptionsError go on to mitmproxy,
which handles them). The commands are carried over for mitmproxy to find. Never adds
behaviour of its own.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from mitmproxy import exceptions, hooks

from stickyroute.log import get_logger

if TYPE_CHECKING:
    from stickyroute import Addons

Hook = Callable[..., Any]
logger = get_logger(__name__)


class Dispatch:
    """`parts`: the addons (build()'s Addons); mitmproxy must not walk into them, so the
    attribute is not called `addons`."""

    name = "stickyroute"  # mitmproxy's lookup name: ctx.master.addons.get("stickyroute")

    def __init__(self, parts: Addons) -> None:
        self.parts = parts
        for event in hooks.all_hooks:
            found = [f for part in parts if callable(f := getattr(part, event, None))]
            if found:
                setattr(self, event, found[0] if len(found) == 1 else combined(found))
        for part in parts:
            for attr in dir(type(part)):  # the class: no instance property is evaluated
                if hasattr(getattr(type(part), attr, None), "command_name"):  # @command.command
                    setattr(self, attr, getattr(part, attr))


def combined(found: Sequence[Hook]) -> Hook:
    """One hook calling `found` in order, as mitmproxy's invoke_addon calls them one by one."""
    if any(inspect.iscoroutinefunction(f) for f in found):
        async def all_async(*args: Any) -> None:
            await _each(found, args)
        return all_async

    def all_sync(*args: Any) -> Awaitable[None] | None:
        for i, f in enumerate(found):
            try:
                result = f(*args)
            except _PASSED_ON:
                raise
            except Exception:
                _failed(f)
                continue
            if result is not None and inspect.isawaitable(result):
                return _rest(result, found[i + 1:], args)  # awaited by mitmproxy
        return None
    return all_sync


_PASSED_ON = (exceptions.AddonHalt, exceptions.OptionsError)


def _failed(f: object) -> None:
    """What mitmproxy does with an addon's exception: say so, and go on with the next one."""
    logger.exception("%s failed", getattr(f, "__qualname__", f))


async def _each(hooks_: Sequence[Hook], args: tuple[Any, ...]) -> None:
    for f in hooks_:
        try:
            result = f(*args)
            if result is not None and inspect.isawaitable(result):
                await result
        except _PASSED_ON:
            raise
        except Exception:
            _failed(f)


async def _rest(first: Awaitable[Any], rest: Sequence[Hook], args: tuple[Any, ...]) -> None:
    try:
        await first
    except _PASSED_ON:
        raise
    except Exception:
        _failed(first)
    await _each(rest, args)
