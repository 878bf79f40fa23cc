"""The pin table: session key -> account alias, with idle timeout, max age and an LRU bound.

Expiry order is kept by construction so a sweep costs what expired, never the table size:
`_by_use` is ordered by last use (idle expiry and LRU eviction pop from its front) and
`_by_birth` by creation (max-age expiry pops from its front). The clock is injected and "now" is
passed in, read once per operation by the caller.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(slots=True)
class Pin:
    session: str
    alias: str
    created: float
    last_used: float
    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_cached: int = 0
    cost_micros: int = 0
    moves: int = 0
    extra: dict[str, object] | None = None  # made on first use: an empty dict is 64 B a pin
    prefix: str | None = None  # prefix.Prefix key of its first request: kept warm by its turns
    cache_ttl: float | None = None  # the provider's cache lifetime its requests asked for


class PinTable:
    def __init__(
        self,
        idle_timeout: float = 3600,
        max_age: float = 86400,
        max_size: int = 100_000,
    ) -> None:
        self.idle_timeout = idle_timeout
        self.max_age = max_age
        self.max_size = max_size
        self._by_use: OrderedDict[str, Pin] = OrderedDict()
        self._by_birth: deque[tuple[float, str]] = deque()
        self._per_alias: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._by_use)

    def __iter__(self) -> Iterator[Pin]:
        return iter(list(self._by_use.values()))

    def __contains__(self, session: str) -> bool:
        return session in self._by_use

    def sessions_per_alias(self) -> dict[str, int]:
        """Live pins per alias, kept up to date incrementally."""
        return self._per_alias

    def _expired(self, pin: Pin, now: float) -> bool:
        return now - pin.last_used >= self.idle_timeout or now - pin.created >= self.max_age

    def get(self, session: str, now: float) -> Pin | None:
        """The live pin of a session (an expired one is removed on read)."""
        pin = self._by_use.get(session)
        if pin is not None and self._expired(pin, now):
            self._drop(session)
            return None
        return pin

    def touch(self, pin: Pin, now: float) -> None:
        """Record a use: the pin becomes the most recently used."""
        pin.last_used = now
        pin.requests += 1
        self._by_use.move_to_end(pin.session)

    def put(self, session: str, alias: str, now: float) -> tuple[Pin, list[Pin]]:
        """Pin a session (replacing any old pin); returns the pin and the pins evicted for room."""
        old = self._by_use.get(session)
        moves = 0
        if old is not None:
            moves = old.moves + (old.alias != alias)
            self._drop(session)
        pin = Pin(session, alias, created=now, last_used=now, moves=moves)
        self._insert(pin)
        evicted = []
        while len(self._by_use) > self.max_size:
            _, lru = self._by_use.popitem(last=False)
            self._count(lru.alias, -1)
            evicted.append(lru)
        return pin, evicted

    def restore_all(self, pins: list[Pin], now: float) -> int:
        """Load saved pins into an empty table, dropping expired ones; returns how many live.

        Keeps both orders right (use for idle/LRU, birth for max age); the most recently used
        win when there are more than max_size.
        """
        live = sorted((p for p in pins if not self._expired(p, now)), key=lambda p: p.last_used)
        live = live[-self.max_size:] if len(live) > self.max_size else live
        for pin in live:
            if pin.session in self._by_use:
                self._drop(pin.session)
            self._by_use[pin.session] = pin
            self._count(pin.alias, 1)
        births = sorted([*self._by_birth, *((p.created, p.session) for p in live)])
        self._by_birth = deque(births)
        return len(live)

    def _insert(self, pin: Pin) -> None:
        self._by_use[pin.session] = pin
        self._by_birth.append((pin.created, pin.session))
        self._count(pin.alias, 1)

    def remove(self, session: str) -> Pin | None:
        return self._drop(session)

    def remove_alias(self, alias: str) -> list[Pin]:
        """Drop every pin of one account (an operator's eviction; costs the table size)."""
        gone = [p for p in self._by_use.values() if p.alias == alias]
        for p in gone:
            self._drop(p.session)
        return gone

    def expire(self, now: float, limit: int | None = None) -> list[Pin]:
        """Remove idle and too-old pins; cost grows with what expired, not with the table.

        `limit` bounds the work of one call (pins removed plus stale entries skipped), so a
        caller on an event loop can sweep a large expiry in slices; `expire_pending` says
        whether another slice is due.
        """
        gone: list[Pin] = []
        budget = limit if limit is not None else -1
        while self._by_use and budget != 0:
            session, pin = next(iter(self._by_use.items()))
            if now - pin.last_used < self.idle_timeout:
                break
            self._drop(session)
            gone.append(pin)
            budget -= 1
        while self._by_birth and budget != 0:
            created, session = self._by_birth[0]
            if now - created < self.max_age:
                break
            budget -= 1
            self._by_birth.popleft()
            pin_or_none = self._by_use.get(session)
            if pin_or_none is not None and pin_or_none.created == created:
                self._drop(session)
                gone.append(pin_or_none)
        return gone

    def expire_pending(self, now: float) -> bool:
        """Whether expire(now) would find anything to do (looks at the two fronts only)."""
        if self._by_use and now - next(iter(self._by_use.values())).last_used >= self.idle_timeout:
            return True
        return bool(self._by_birth) and now - self._by_birth[0][0] >= self.max_age

    def _drop(self, session: str) -> Pin | None:
        # The matching _by_birth entry stays behind; expire() skips it when its time comes.
        pin = self._by_use.pop(session, None)
        if pin is not None:
            self._count(pin.alias, -1)
        return pin

    def _count(self, alias: str, delta: int) -> None:
        n = self._per_alias.get(alias, 0) + delta
        if n > 0:
            self._per_alias[alias] = n
        else:
            self._per_alias.pop(alias, None)


@dataclass(slots=True)
class SweepStats:
    """How long the pin sweeps took (metrics read it; the sweep runs off the hot path)."""

    count: int = 0
    seconds: float = 0.0
    last_seconds: float = 0.0
    removed: int = 0

    def add(self, seconds: float, removed: int) -> None:
        self.count += 1
        self.seconds += seconds
        self.last_seconds = seconds
        self.removed += removed
