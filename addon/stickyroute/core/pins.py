"""The pin table: session key -> account alias, with idle timeout, max age and an LRU bound.

Expiry order is kept by construction so a sweep costs what expired, never the table size. The
session dict is in creation order (a pin is never moved in it; re-pinning makes a new pin at
its end), so max-age expiry pops from its front. Use order is a doubly linked list through the
pins themselves (least recently used first), so idle expiry and LRU eviction pop from its front
and a touch moves one pin to its end. Both orders in these two structures instead of an
OrderedDict plus a creation-order deque took a pin from ~400 to ~300 bytes (just bench). The
clock is injected and "now" is passed in, read once per operation by the caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field


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
    # What is rare made on first use (an empty dict is 64 B a pin): how often the session
    # moved (MOVES) and what a move leaves behind (fallback.FOREIGN).
    extra: dict[str, object] | None = None
    prefix: str | None = None  # prefix.Prefix key of its first request: kept warm by its turns
    cache_ttl: float | None = None  # the provider's cache lifetime its requests asked for
    # The table's use-order links (None: not in a table). Only PinTable touches them.
    older: Pin | None = field(default=None, init=False, repr=False, compare=False)
    newer: Pin | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def moves(self) -> int:
        """How many times the session was pinned to another account."""
        moves = self.extra.get(MOVES) if self.extra else None
        return moves if isinstance(moves, int) else 0

    def count_moves(self, moves: int) -> None:
        if moves:
            self.extra = {**(self.extra or {}), MOVES: moves}


MOVES = "moves"  # Pin.extra: moves of the session (a slot of its own cost 8 B every pin)


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
        self._pins: dict[str, Pin] = {}  # creation order
        # The use order's ends: end.newer is the least recently used pin, end.older the most.
        self._end = Pin("", "", 0.0, 0.0)
        self._end.older = self._end.newer = self._end
        self._per_alias: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._pins)

    def __iter__(self) -> Iterator[Pin]:
        """The live pins, least recently used first (a copy: the table may change meanwhile)."""
        out = []
        pin = self._end.newer
        while pin is not None and pin is not self._end:
            out.append(pin)
            pin = pin.newer
        return iter(out)

    def __contains__(self, session: str) -> bool:
        return session in self._pins

    def sessions_per_alias(self) -> dict[str, int]:
        """Live pins per alias, kept up to date incrementally."""
        return self._per_alias

    def _expired(self, pin: Pin, now: float) -> bool:
        return now - pin.last_used >= self.idle_timeout or now - pin.created >= self.max_age

    def get(self, session: str, now: float) -> Pin | None:
        """The live pin of a session (an expired one is removed on read)."""
        pin = self._pins.get(session)
        if pin is not None and self._expired(pin, now):
            self._drop(session)
            return None
        return pin

    def touch(self, pin: Pin, now: float) -> None:
        """Record a use: the pin becomes the most recently used."""
        pin.last_used = now
        pin.requests += 1
        if pin.older is not None and pin.newer is not self._end:  # in the table, not last
            self._unlink(pin)
            self._append(pin)

    def put(self, session: str, alias: str, now: float) -> tuple[Pin, list[Pin]]:
        """Pin a session (replacing any old pin); returns the pin and the pins evicted for room."""
        old = self._pins.get(session)
        moves = 0
        if old is not None:
            moves = old.moves + (old.alias != alias)
            self._drop(session)
        pin = Pin(session, alias, created=now, last_used=now)
        pin.count_moves(moves)
        self._insert(pin)
        evicted = []
        while len(self._pins) > self.max_size:
            lru = self._end.newer
            assert lru is not None
            self._drop(lru.session)
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
            if pin.session in self._pins:
                self._drop(pin.session)
            pin.older = pin.newer = None
            self._append(pin)
            self._count(pin.alias, 1)
        by_birth = sorted([*self._pins.values(), *live], key=lambda p: p.created)
        self._pins = {p.session: p for p in by_birth}
        return len(live)

    def _insert(self, pin: Pin) -> None:
        self._pins[pin.session] = pin
        self._append(pin)
        self._count(pin.alias, 1)

    def remove(self, session: str) -> Pin | None:
        return self._drop(session)

    def remove_alias(self, alias: str) -> list[Pin]:
        """Drop every pin of one account (an operator's eviction; costs the table size)."""
        gone = [p for p in self._pins.values() if p.alias == alias]
        for p in gone:
            self._drop(p.session)
        return gone

    def expire(self, now: float, limit: int | None = None) -> list[Pin]:
        """Remove idle and too-old pins; cost grows with what expired, not with the table.

        `limit` bounds the work of one call (pins removed), so a caller on an event loop can
        sweep a large expiry in slices; `expire_pending` says whether another slice is due.
        """
        gone: list[Pin] = []
        budget = limit if limit is not None else -1
        while budget != 0:
            pin = self._end.newer
            if pin is None or pin is self._end or now - pin.last_used < self.idle_timeout:
                break
            self._drop(pin.session)
            gone.append(pin)
            budget -= 1
        old: list[Pin] = []
        for pin in self._pins.values():  # creation order: the oldest first
            if budget == 0 or now - pin.created < self.max_age:
                break
            old.append(pin)
            budget -= 1
        for pin in old:
            self._drop(pin.session)
        return gone + old

    def expire_pending(self, now: float) -> bool:
        """Whether expire(now) would find anything to do (looks at the two fronts only)."""
        lru = self._end.newer
        if lru is not None and lru is not self._end and now - lru.last_used >= self.idle_timeout:
            return True
        first = next(iter(self._pins.values()), None)
        return first is not None and now - first.created >= self.max_age

    def _drop(self, session: str) -> Pin | None:
        pin = self._pins.pop(session, None)
        if pin is not None:
            self._unlink(pin)
            self._count(pin.alias, -1)
        return pin

    def _append(self, pin: Pin) -> None:
        """Make `pin` the most recently used."""
        last = self._end.older
        assert last is not None
        pin.older, pin.newer = last, self._end
        last.newer = self._end.older = pin

    @staticmethod
    def _unlink(pin: Pin) -> None:
        older, newer = pin.older, pin.newer
        if older is not None and newer is not None:
            older.newer, newer.older = newer, older
        pin.older = pin.newer = None

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
