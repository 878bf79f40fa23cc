"""Step 3: which account serves a request — its session's pin, or a pick for a new session.

Pure and synchronous: the caller passes the pinned alias and the counts in and applies the
Decision itself (pins are written by the glue, never here). Strategies never see a credential,
only aliases, weights and counts.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import NamedTuple

from stickyroute.config.accounts import Account
from stickyroute.config.settings import STRATEGIES

from .errors import NoAccount
from .identify import SessionId
from .placement import Candidate, Placement, Signals, avoids_limits, place


class Affinity(StrEnum):
    NEW = "new"  # a new session: picked by strategy, pinned now
    HIT = "hit"  # served by its pinned account
    MOVED = "moved"  # its pinned account was unavailable: re-pinned elsewhere (soft pins only)
    UNPINNED = "unpinned"  # no session could be named: routed by strategy alone


class Chooser:
    """Keeps the little state strategies need (round-robin position, random source)."""

    def __init__(self, strategy: str = "least-sessions",
                 rng: Callable[[], float] = random.random) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r} (expected one of: "
                             f"{', '.join(STRATEGIES)})")
        self.strategy = strategy
        self.rng = rng
        self._turn = 0

    def choose[C: Candidate](
        self,
        candidates: Sequence[C],
        sessions: Mapping[str, int],
        inflight: Mapping[str, int] | None = None,
    ) -> C | None:
        """Pick one candidate; ties go to the earlier one in file order (or round-robin)."""
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]
        s = self.strategy
        if s in ("least-sessions", "headroom"):  # headroom with nothing known: least-sessions
            return self._least(candidates, lambda c: (sessions.get(c.alias, 0) / c.weight, 0.0))
        if s == "least-inflight":
            busy = inflight or {}
            return self._least(
                candidates,
                lambda c: (busy.get(c.alias, 0) / c.weight, sessions.get(c.alias, 0) / c.weight),
            )
        if s == "round-robin":
            self._turn += 1
            return candidates[(self._turn - 1) % len(candidates)]
        if s == "fill-first":
            return candidates[0]
        if s == "weighted":
            total = sum(c.weight for c in candidates)
            point = self.rng() * total
            for c in candidates:
                point -= c.weight
                if point < 0:
                    return c
            return candidates[-1]
        return candidates[int(self.rng() * len(candidates)) % len(candidates)]

    def place[C: Candidate](
        self,
        candidates: Sequence[C],
        sessions: Mapping[str, int],
        inflight: Mapping[str, int] | None = None,
        signals: Signals | None = None,
    ) -> Placement[C] | None:
        """Pick one candidate and say how: `headroom` uses the windows and warm prefixes of
        `signals`; every strategy leaves draining accounts alone while another is clear."""
        if signals is None or not candidates:
            chosen = self.choose(candidates, sessions, inflight)
            return Placement(chosen, self.strategy) if chosen is not None else None
        if self.strategy == "headroom":
            if len(candidates) == 1:  # as choose(): no turn taken, so rotations match it
                only = candidates[0]
                return Placement(only, "warm" if only.alias in signals.warm else "load")
            self._turn += 1
            return place(candidates, sessions, inflight, signals, start=self._turn)
        chosen = self.choose(avoids_limits(candidates, signals.windows, signals.now), sessions,
                             inflight)
        return Placement(chosen, self.strategy) if chosen is not None else None

    def _least[C: Candidate](self, candidates: Sequence[C],
                             load: Callable[[C], tuple[float, float]]) -> C:
        # Rotate the starting point so equal loads spread instead of piling on the first.
        self._turn += 1
        start = self._turn % len(candidates)
        ordered = [*candidates[start:], *candidates[:start]]
        return min(ordered, key=load)


class Decision(NamedTuple):
    account: Account
    affinity: Affinity
    moved_from: str | None = None
    placed: str | None = None  # how a new pick was made: warm | headroom | load | <strategy>


def decide(
    chooser: Chooser,
    provider: str,
    session: SessionId | None,
    pinned: str | None,
    candidates: Sequence[Account],
    sessions: Mapping[str, int],
    fallback: str = "rotate",
    inflight: Mapping[str, int] | None = None,
    new_candidates: Sequence[Account] | None = None,
    signals: Signals | None = None,
    let_go: bool = False,
) -> Decision:
    """The account for one request: the pinned one (`pinned`, the session's account), or a new
    pick; raises NoAccount.

    `candidates` are the accounts of the request's provider that can take traffic now;
    `new_candidates` (default: all of them) those a new pin should prefer (not near a limit,
    not just back from a cooldown). `signals` (windows, warm prefixes) inform a new pick;
    `let_go` (placement.let_go said so) places a soft pin's turn afresh instead of keeping or
    failing it: its cache went cold on an account that is draining or cooling.
    """
    if pinned is not None and session is not None and not let_go:
        for candidate in candidates:
            if candidate.alias == pinned:
                return Decision(candidate, Affinity.HIT)
        if session.hard:
            raise NoAccount(provider, f"this conversation's state lives on account "
                            f"{pinned!r}, which is unavailable; it cannot move")
        if fallback == "fail":
            raise NoAccount(provider, f"this conversation is pinned to account {pinned!r}, "
                            f"which is unavailable (sticky_fallback=fail)")
    placed = chooser.place(new_candidates or candidates, sessions, inflight, signals)
    if placed is None:
        raise NoAccount(provider, "no enabled account is available for this provider")
    account, how = placed
    if session is None:
        return Decision(account, Affinity.UNPINNED, placed=how)
    if pinned is not None and account.alias == pinned:  # let go, and nowhere better: stays
        return Decision(account, Affinity.HIT)
    if pinned is not None:
        return Decision(account, Affinity.MOVED, moved_from=pinned, placed=how)
    return Decision(account, Affinity.NEW, placed=how)
