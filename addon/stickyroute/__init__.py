"""stickyroute: pin every LLM conversation to one account (a mitmproxy addon)."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # the addons import mitmproxy: only load them when asked to build them
    from .addons.admin import StickyAdmin
    from .addons.commands import StickyCommands
    from .addons.failover import Failover
    from .addons.follow import Follow
    from .addons.guard import Guard
    from .addons.logins import LoginRefresh
    from .addons.options import StickyOptions
    from .addons.persist import Persistence
    from .addons.route import StickyRoute
    from .addons.shutdown import Shutdown
    from .addons.sweep import Sweeper
    from .state import State


class Addons(NamedTuple):
    """stickyroute's addons in hook order, all sharing one State."""

    options: StickyOptions  # first: they configure the state
    guard: Guard  # the client gate runs before routing; masks credentials once sent
    shutdown: Shutdown  # answers requests while the proxy stops; its done() drains before
    #                     Persistence's done() makes the final save
    route: StickyRoute
    follow: Follow
    logins: LoginRefresh  # its done() lets login refreshes finish before the store closes
    persist: Persistence
    sweeper: Sweeper
    admin: StickyAdmin
    commands: StickyCommands
    failover: Failover  # last: its response hooks see the answer after every other addon

    @property
    def state(self) -> State:
        return self.route.state


def build(state: State | None = None) -> Addons:
    """The addons around one State (a fresh one by default)."""
    from mitmproxy import http

    from .addons.admin import StickyAdmin
    from .addons.commands import StickyCommands
    from .addons.failover import Failover
    from .addons.follow import Follow
    from .addons.guard import Guard
    from .addons.logins import LoginRefresh
    from .addons.options import StickyOptions
    from .addons.persist import Persistence
    from .addons.route import StickyRoute
    from .addons.shutdown import Shutdown
    from .addons.sweep import Sweeper
    from .state import Kept, State

    state = state or State()
    kept = Kept[http.Request]()  # the client's own requests, for failover's retries
    return Addons(StickyOptions(state), Guard(state), Shutdown(state), StickyRoute(state, kept),
                  Follow(state), LoginRefresh(state),
                  Persistence(state), Sweeper(state), StickyAdmin(state),
                  StickyCommands(state), Failover(state, kept))


def make_addons() -> list[object]:
    """What `addon/sticky.py` hands to mitmproxy: build()'s addons behind one Dispatch (each
    hook looked up once, not per addon and event; addons/dispatch.py)."""
    from .addons.dispatch import Dispatch

    return [Dispatch(build())]
