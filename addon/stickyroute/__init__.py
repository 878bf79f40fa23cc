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

    route = StickyRoute()
    # The guard's gate runs before routing; it masks credentials once a request is sent.
    # Failover stays last: its response hooks see the answer after every other addon did.
    return [Guard(route), route, Follow(route), Persistence(route), StickyAdmin(route),
            StickyCommands(route), Failover(route)]
