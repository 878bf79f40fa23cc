"""Chains and account health shared through a shared store (Redis), beside the pins.

Chains: every chain id this proxy learns is also noted in the store (batched, never awaited);
a request whose previous_response_id this proxy does not know asks the store once, within the
store's timeout, and follows what another proxy learned. Requests without an unknown
previous_response_id never wait for the store.

Health: every change of an account's state (not a cooldown running out) is noted in the store;
the store tick reads all accounts' last changes and merges the ones this proxy has not seen
(Health.merge: the later cooldown end wins, a disable or an operator's enable applies
everywhere). No mitmproxy import.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from stickyroute.core.chains import ChainMap
from stickyroute.core.health import Event, Health

from .base import Store

logger = logging.getLogger("stickyroute")

MAX_ID = 256  # longer ids are not looked up in the store (real ones are ~50 characters)


# ---- chains ------------------------------------------------------------------------------
def publish_chain(store: Store, namespace: str, ids: Iterable[str], session: str, alias: str,
                  ttl: float) -> None:
    for id_ in ids:
        store.save_chain(f"{namespace}/{id_}", session, alias, ttl)


def unknown_previous(chains: ChainMap, store: Store, namespace: str, body: Mapping[str, Any],
                     now: float) -> str | None:
    """The previous_response_id to ask a shared store about: one this proxy does not know."""
    prev = body.get("previous_response_id")
    if not store.shared or not isinstance(prev, str) or not prev or len(prev) > MAX_ID:
        return None
    return prev if chains.get(namespace, prev, now) is None else None


async def fetch_chain(chains: ChainMap, store: Store, namespace: str, prev: str,
                      now: float) -> bool:
    """Ask the store for a chain another proxy learned; learn it here when found."""
    try:
        found = await store.load_chain(f"{namespace}/{prev}")
    except Exception:
        logger.exception("stickyroute: store: chain lookup failed; routing locally")
        return False
    if found is None:
        return False
    session, alias = found
    chains.learn(namespace, [prev], session, alias, now)
    return True


# ---- health ------------------------------------------------------------------------------
class HealthSync:
    """Publishes this proxy's health changes and merges other proxies' ones."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}  # alias -> `at` of the last change sent or merged
        self.merged = 0

    def publish(self, health: Health, store: Store, alias: str, event: Event,
                now: float) -> None:
        if not store.shared:
            return
        state = health.shared_state(alias, event, now)
        self.seen[alias] = max(self.seen.get(alias, 0.0), now)
        store.save_health(alias, state)

    async def pull(self, health: Health, store: Store, aliases: Iterable[str],
                   now: float) -> int:
        """Merge other proxies' changes not seen yet; returns how many changed something."""
        if not store.shared:
            return 0
        known = set(aliases)
        n = 0
        for alias, d in (await store.load_health()).items():
            at = d.get("at") if isinstance(d, dict) else None
            if alias not in known or not isinstance(at, int | float) or (
                    at <= self.seen.get(alias, 0.0)):
                continue
            self.seen[alias] = float(at)
            if health.merge(alias, d, now):
                n += 1
                logger.info("stickyroute: account %s is %s (shared by another proxy: %s)",
                            alias, d.get("state"), d.get("reason"))
        self.merged += n
        return n
