"""The one State the addons share: settings, accounts, the routing tables, the store, the clock.

Built once in `make_addons()` and handed to every addon, view, metric and API handler, which
all type against it. It owns no behaviour beyond taking new settings and new accounts (with
their logins) into service; what happens on traffic is the core's and the glue's. No
mitmproxy import.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from stickyroute.config.accounts import AccountSet
from stickyroute.config.settings import Settings
from stickyroute.core.chains import ChainMap
from stickyroute.core.choose import Chooser
from stickyroute.core.health import Health
from stickyroute.core.health import State as Condition
from stickyroute.core.ledger import Ledger
from stickyroute.core.logins import Logins, sync_health
from stickyroute.core.pins import PinTable, SweepStats
from stickyroute.core.prefix import WarmPrefixes
from stickyroute.core.prices import PriceTable
from stickyroute.core.stop import Stop
from stickyroute.core.windows import WindowTable
from stickyroute.log import get_logger
from stickyroute.stores.base import MemoryStore, Store
from stickyroute.stores.refresher import Post, Refresher, seed_logins, tornado_post
from stickyroute.stores.share import Claims

logger = get_logger(__name__)


@dataclass(eq=False)
class State:
    clock: Callable[[], float] = time.time
    settings: Settings = field(default_factory=Settings.defaults)
    accounts: AccountSet = field(default_factory=AccountSet)
    pins: PinTable = field(default_factory=PinTable)
    chains: ChainMap = field(default_factory=ChainMap)
    health: Health = field(default_factory=Health)  # the one place accounts leave rotation
    windows: WindowTable = field(default_factory=WindowTable)  # usage windows per account
    warm: WarmPrefixes = field(default_factory=WarmPrefixes)  # prompt prefixes cached where
    ledger: Ledger = field(default_factory=Ledger)
    prices: PriceTable = field(default_factory=PriceTable)
    chooser: Chooser = field(default_factory=Chooser)
    store: Store = field(default_factory=MemoryStore)  # Persistence opens the configured one
    claims: Claims = field(default_factory=Claims)
    sweeps: SweepStats = field(default_factory=SweepStats)
    stop: Stop = field(default_factory=Stop)  # addons/shutdown.py moves it on as mitmproxy stops
    logins: Logins = field(default_factory=Logins)  # subscription accounts' current tokens
    post: Post = tornado_post  # how a refresh reaches a token endpoint (tests inject theirs)
    refresher: Refresher = field(init=False)  # Persistence gives it the store's token share
    started: float = 0.0

    def __post_init__(self) -> None:
        self.started = self.started or self.clock()
        self.refresher = Refresher(self.logins, self.post, clock=self.clock)
        self.use_settings(self.settings)

    @property
    def shared(self) -> bool:
        """Other proxies write the same store: new pins are claimed, unknown chains asked."""
        return self.store.shared

    def use_settings(self, settings: Settings) -> None:
        self.settings = settings
        if self.chooser.strategy != settings.strategy:
            self.chooser = Chooser(settings.strategy)
        self.windows.drain_at = settings.drain_at
        self.pins.idle_timeout = settings.idle_timeout
        self.pins.max_age = settings.max_age
        self.pins.max_size = settings.max_sessions
        self.chains.ttl = settings.max_age
        self.chains.max_size = 4 * settings.max_sessions

    def use_accounts(self, accounts: AccountSet) -> None:
        now = self.clock()
        self.health.new_accounts(self.accounts.accounts, accounts.accounts, now)
        self.accounts = accounts
        self.prices = PriceTable(accounts.prices)
        seed_logins(self.logins, accounts.accounts)
        self.sync_logins()
        keep = {a.alias for a in accounts.accounts}
        self.windows.forget(keep)
        self.warm.forget(keep)  # costs the prefix table's size: only when the file changes

    def sync_logins(self) -> None:
        """Account health follows the logins (core.logins.sync_health); logs what changed."""
        for change in sync_health(self.logins, self.health, self.accounts.accounts,
                                  self.clock()):
            logger.log(logging.INFO if change.after is Condition.HEALTHY else logging.WARNING,
                       "account %s %s -> %s: %s", change.alias, change.before.value,
                       change.after.value, change.reason or "its login works again")


class Kept[T]:
    """Values by flow id while their flow is in flight, bounded should a flow never end."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._items: dict[str, T] = {}

    def __len__(self) -> int:
        return len(self._items)

    def keep(self, key: str, value: T) -> None:
        self._items[key] = value
        if len(self._items) > self.limit:
            self._items.pop(next(iter(self._items)))  # the oldest

    def pop(self, key: str) -> T | None:
        return self._items.pop(key, None)
