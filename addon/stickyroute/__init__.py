"""stickyroute: pin every LLM conversation to one account (a mitmproxy addon)."""

from __future__ import annotations

from typing import Any


def make_addons() -> list[Any]:
    """The addons `addon/sticky.py` hands to mitmproxy, in hook order."""
    from .addon import StickyRoute
    from .admin import StickyAdmin
    from .follow import Follow
    from .persist import Persistence

    route = StickyRoute()
    return [route, Follow(route), Persistence(route), StickyAdmin(route)]
