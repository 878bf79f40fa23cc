"""Where a conversation's turn goes when its pin does not settle it: by headroom and warm cache.

`place` picks the account for a NEW conversation (the `headroom` strategy):
1. among the healthy accounts it is given, none at or above sticky_drain_at of a usage window
   (or refused by one, or nearly out of a per-minute limit) while another is clear;
2. an account whose cache already holds this conversation's prefix, unless it carries more
   sessions than the least loaded one, or more requests in flight than the mean, by more than
   a bound;
3. otherwise the most headroom in the tightest window of an hour or more per request running
   there (those conversations go on using it; in steps, so that close readings tie), then the
   earliest reset of that window (in steps too; only when every account has one), then the
   fewest sessions.
With no such window and no warm prefix known this is least-sessions, pick for pick.

`let_go` says when a SOFT pin stops holding its conversation: idle longer than its provider's
cache lifetime it has no cache value left, so when its account is draining or cooling the next
turn is placed afresh instead of waiting for it. Hard pins never move here.

Pure: counts, windows and warm prefixes come in, a pick goes out; `now` is passed in. Never sees
a credential.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from .windows import DRAIN_MIN_MINUTES, WindowTable

HEADROOM_STEP = 5.0  # percent (per request in flight): closer readings tie, sessions decide
RESET_STEP = 900.0  # seconds: resets this close are a tie too (windows last hours to a week)
WARM_RATIO = 0.1  # a warm account may carry 10% more sessions than the least loaded one...
WARM_SLACK = 1.0  # ...plus one, per unit of weight
# and a quarter more requests in flight than the accounts' mean, plus two: in-flight counts
# come and go by the millisecond, so the least busy account is often idle by chance; held
# against it, a warm account under steady traffic would almost never qualify
WARM_BUSY_RATIO = 0.25
WARM_BUSY_SLACK = 2.0


class Candidate(Protocol):
    @property
    def alias(self) -> str: ...
    @property
    def weight(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Signals:
    """What placement knows beyond the counts: windows, and where this prefix is warm."""

    windows: WindowTable
    now: float
    warm: Mapping[str, float] = field(default_factory=dict)  # alias -> cache held until


class Placement[C: Candidate](NamedTuple):
    account: C
    reason: str  # warm | headroom | load


def avoids_limits[C: Candidate](candidates: Sequence[C], windows: WindowTable,
                                now: float) -> list[C]:
    """Step 1: the candidates whose windows take a new conversation, if any do; else all."""
    clear = [c for c in candidates if windows.takes_new(c.alias, now)]
    return clear or list(candidates)


def place[C: Candidate](
    candidates: Sequence[C],
    sessions: Mapping[str, int],
    inflight: Mapping[str, int] | None,
    signals: Signals,
    start: int = 0,
) -> Placement[C] | None:
    """The account for a new conversation; `start` rotates which of equals comes first."""
    if not candidates:
        return None
    busy = inflight or {}
    now = signals.now
    pool = avoids_limits(candidates, signals.windows, now)
    if start:
        start %= len(pool)
        pool = pool[start:] + pool[:start]

    def load(c: C) -> tuple[float, float]:
        return sessions.get(c.alias, 0) / c.weight, busy.get(c.alias, 0) / c.weight

    warm = [c for c in pool if c.alias in signals.warm]
    if warm:
        best = min(warm, key=load)
        least_sessions = min(load(c)[0] for c in pool)
        mean_busy = sum(load(c)[1] for c in pool) / len(pool)
        s, i = load(best)
        if (s <= least_sessions * (1 + WARM_RATIO) + WARM_SLACK
                and i <= mean_busy * (1 + WARM_BUSY_RATIO) + WARM_BUSY_SLACK):
            return Placement(best, "warm")

    # Windows of an hour or more: per-minute API limits come and go within the minute (step 1
    # keeps new conversations off one nearly spent); ordered by them, placement would follow
    # noise instead of the sessions.
    tight = {c.alias: signals.windows.tightest(c.alias, now, DRAIN_MIN_MINUTES) for c in pool}
    # An account that has not answered yet has no reset to compare: resets then say nothing.
    by_reset = all(t is not None and t.resets_at is not None for t in tight.values())
    known = any(tight.values())

    def headroom(c: C) -> tuple[float, float, float]:
        t = tight[c.alias]
        sessions = load(c)[0]
        if not known:  # in-flight counts bound the warm pick only: this is least-sessions
            return 0.0, 0.0, sessions
        # The room left is shared by the requests running there now: by room alone the
        # emptiest account would draw every conversation started meanwhile, and together they
        # overrun it (bench (f)). Pins are no measure of that: most are idle or done.
        room = (100.0 - (t.used_percent if t else 0.0)) / (load(c)[1] + 1 / c.weight)
        reset = math.floor(t.resets_at / RESET_STEP) if (
            by_reset and t and t.resets_at is not None) else 0.0
        return -math.floor(room / HEADROOM_STEP), reset, sessions

    best = min(pool, key=headroom)
    return Placement(best, "headroom" if known else "load")


def let_go(*, hard: bool, idle: float, cache_ttl: float, draining: bool,
           available: bool) -> bool:
    """Whether a pin's next turn is placed afresh: soft, its cache gone cold (idle longer than
    the provider keeps it), and its account draining or not available (cooling, disabled)."""
    if hard or idle <= cache_ttl:
        return False
    return draining or not available
