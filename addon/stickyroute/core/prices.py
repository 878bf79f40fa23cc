"""What a response cost, in integer micro-USD (no float drift in totals).

A model name matches its longest listed prefix, so dated names (`gpt-5-mini-2025-08-07`,
`claude-sonnet-4-5-20250929`) find their family. An unknown model costs 0 and says so
(`priced` is False), never a guess. The table itself comes from config/prices.py.
"""

from __future__ import annotations

from collections.abc import Mapping

from stickyroute.config.prices import DEFAULTS, MICROS, Price

from .observe import Usage

_MEMO_MAX = 4096


class PriceTable:
    def __init__(self, prices: Mapping[str, Price] = DEFAULTS) -> None:
        self.prices = dict(prices)
        self._memo: dict[str, Price | None] = {}

    def lookup(self, model: str | None) -> Price | None:
        """The price of a model: exact name, else the longest listed prefix (memoised)."""
        if not model:
            return None
        if model in self._memo:
            return self._memo[model]
        found = self.prices.get(model)
        if found is None:
            best = max((k for k in self.prices if model.startswith(k)), key=len, default=None)
            found = self.prices[best] if best else None
        if len(self._memo) < _MEMO_MAX:
            self._memo[model] = found
        return found

    def cost(self, model: str | None, usage: Usage) -> tuple[int, bool]:
        """(micro-USD, whether the model is priced)."""
        price = self.lookup(model)
        if price is None:
            return 0, False
        plain = max(0, usage.input - usage.cached - usage.cache_write)
        total = (plain * price.input + usage.cached * price.cached_input
                 + usage.cache_write * price.cache_write + usage.output * price.output)
        return (total + MICROS // 2) // MICROS, True


def format_micros(micros: int) -> str:
    """$0.0123 style, enough digits for one request."""
    return f"${micros / MICROS:.4f}"
