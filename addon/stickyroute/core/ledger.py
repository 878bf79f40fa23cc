"""Per-account counters: what each account served, how well its cache held, what went wrong.

Plain numbers updated on the hot path (O(1) each); the admin API, metrics and commands read
them. Counters only grow; gauges (in-flight) go up and down and must return to 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class AccountStats:
    requests: int = 0
    affinity: dict[str, int] = field(default_factory=dict)  # new / hit / moved / unpinned
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_cached: int = 0
    cost_micros: int = 0
    affinity_breaks: int = 0
    errors: int = 0
    inflight: int = 0

    def count_request(self, affinity: str) -> None:
        self.requests += 1
        self.affinity[affinity] = self.affinity.get(affinity, 0) + 1

    @property
    def cache_ratio(self) -> float | None:
        """Cached share of input tokens (None before any usage was seen)."""
        return self.tokens_cached / self.tokens_in if self.tokens_in else None

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["cache_ratio"] = self.cache_ratio
        return d


class Ledger:
    """AccountStats by alias, created on first use (aliases come and go with the file)."""

    def __init__(self) -> None:
        self.accounts: dict[str, AccountStats] = {}

    def __getitem__(self, alias: str) -> AccountStats:
        stats = self.accounts.get(alias)
        if stats is None:
            stats = self.accounts[alias] = AccountStats()
        return stats

    def inflight(self, accounts: Iterable[Any]) -> dict[str, int]:
        """In-flight requests per alias of these accounts (for least-inflight)."""
        return {a.alias: self[a.alias].inflight for a in accounts}

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
