"""What several proxies share through a shared store (Redis) besides pins: who claims a new
conversation, response-id chains, and account health. No mitmproxy import.

Claims: concurrent first requests of one conversation in this proxy must not each claim (they
could win different accounts); the first claims, the others await its answer. Across proxies
the store decides (first writer wins).

Chains: every chain id this proxy learns is also noted in the store (batched, never awaited);
a request whose previous_response_id this proxy does not know asks the store once, within the
store's timeout, and follows what another proxy learned. Requests without an unknown
previous_response_id never wait for the store.

Health: every change of an account's state (not a cooldown running out) is noted in the store;
the store tick reads all accounts' last changes and merges the ones this proxy has not seen
(Health.merge: the later cooldown end wins, a disable or an operator's enable applies
everywhere).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence

from stickyroute.config.accounts import Account
from stickyroute.core.chains import ChainMap
from stickyroute.core.choose import Chooser
from stickyroute.core.health import Event, Health
from stickyroute.core.pins import Pin, PinTable
from stickyroute.core.placement import Signals
from stickyroute.log import get_logger

from .base import Store

logger = get_logger(__name__)


# ---- claims ------------------------------------------------------------------------------
class Claims:
    def __init__(self) -> None:
        self._pending: dict[str, asyncio.Future[str | None]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    async def settle(self, key: str, candidates: Sequence[Account], chooser: Chooser,
                     pins: PinTable, store: Store, now: float,
                     inflight: Mapping[str, int] | None = None,
                     signals: Signals | None = None) -> str | None:
        """The alias this new session goes to (None: no candidate, or the claim failed); the
        claim is placed as plan() places (windows, warm prefixes, in-flight counts)."""
        pending = self._pending.get(key)
        if pending is not None:
            return await pending
        pending = self._pending[key] = asyncio.get_running_loop().create_future()
        alias = None
        try:
            alias = await _claim(key, candidates, chooser, pins, store, now, inflight, signals)
        except Exception:
            logger.exception("store: claim failed; routing locally")
        finally:
            del self._pending[key]
            pending.set_result(alias)
        return alias


async def _claim(key: str, candidates: Sequence[Account], chooser: Chooser, pins: PinTable,
                 store: Store, now: float, inflight: Mapping[str, int] | None,
                 signals: Signals | None) -> str | None:
    shared: Mapping[str, int] | None = store.shared_sessions()
    placed = chooser.place(candidates, shared if shared is not None else pins.sessions_per_alias(),
                           inflight, signals)
    if placed is None:
        return None
    account = placed.account
    result = await store.claim(Pin(key, account.alias, created=now, last_used=now))
    if result is None:
        return str(account.alias)  # the store did not answer in time: route from memory
    pin, ours = result
    if not ours:
        pins.put(key, pin.alias, now)  # another proxy was first: follow it
    return pin.alias


# ---- chains ------------------------------------------------------------------------------
def publish_chain(store: Store, namespace: str, ids: Iterable[str], session: str, alias: str,
                  ttl: float) -> None:
    for id_ in ids:
        store.save_chain(f"{namespace}/{id_}", session, alias, ttl)


async def fetch_chain(chains: ChainMap, store: Store, namespace: str, prev: str,
                      now: float) -> bool:
    """Ask the store for a chain another proxy learned; learn it here when found."""
    try:
        found = await store.load_chain(f"{namespace}/{prev}")
    except Exception:
        logger.exception("store: chain lookup failed; routing locally")
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
                logger.info("account %s is %s (shared by another proxy: %s)",
                            alias, d.get("state"), d.get("reason"))
        return n
