"""Per-account counters: what each account served, how well its cache held, what went wrong.

Plain numbers updated on the hot path (O(1) each); the admin API, metrics and commands read
them. Counters only grow; gauges (in-flight) go up and down and must return to 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from stickyroute.config.accounts import Account


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
    def cache_percent(self) -> float | None:
        """Cached share of input tokens in percent (None before any usage was seen)."""
        return cache_percent(self.tokens_cached, self.tokens_in)


class Ledger:
    """AccountStats by alias, created on first use (aliases come and go with the file)."""

    def __init__(self) -> None:
        self.accounts: dict[str, AccountStats] = {}

    def __getitem__(self, alias: str) -> AccountStats:
        stats = self.accounts.get(alias)
        if stats is None:
            stats = self.accounts[alias] = AccountStats()
        return stats

    def inflight(self, accounts: Iterable[Account]) -> dict[str, int]:
        """In-flight requests per alias of these accounts (for least-inflight)."""
        return {a.alias: self[a.alias].inflight for a in accounts}


def cache_percent(cached: int, total: int) -> float | None:
    """The cached share of input tokens, in percent to one decimal, as every view shows it."""
    return round(100 * cached / total, 1) if total else None
