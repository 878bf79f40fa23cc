"""stickyroute: pin every LLM conversation to one account (a mitmproxy addon)."""

from __future__ import annotations

from typing import Any


def make_addons() -> list[Any]:
    """The addons `addon/sticky.py` hands to mitmproxy, in hook order."""
    from .addons.admin import StickyAdmin
    from .addons.commands import StickyCommands
    from .addons.failover import Failover
    from .addons.follow import Follow
    from .addons.guard import Guard
    from .addons.persist import Persistence
    from .addons.route import StickyRoute
    from .addons.shutdown import Shutdown

    route = StickyRoute()
    # The guard's gate runs before routing; it masks credentials once a request is sent.
    # Shutdown answers requests that come while the proxy stops (before routing), and its
    # `done` waits for the requests upstream before Persistence's `done` makes the final save.
    # Failover stays last: its response hooks see the answer after every other addon did.
    return [Guard(route), Shutdown(route), route, Follow(route), Persistence(route),
            StickyAdmin(route), StickyCommands(route), Failover(route)]
