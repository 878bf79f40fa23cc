"""Prices per model: the built-in list and the accounts file's `prices:` section, parsed.

USD per million tokens in the file and below (list prices of late 2025, standard tier), kept
as integer micro-USD so totals never drift. core/prices.py looks models up and costs usage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

MICROS = 1_000_000
FIELDS = ("input", "cached_input", "output", "cache_write")


class Price(NamedTuple):
    """Micro-USD per million tokens."""

    input: int
    cached_input: int
    output: int
    cache_write: int  # Anthropic cache creation; OpenAI bills no write


def usd(input: float, cached: float, output: float, write: float | None = None) -> Price:
    def m(x: float) -> int:
        return round(x * MICROS)

    return Price(m(input), m(cached), m(output), m(input if write is None else write))


DEFAULTS: dict[str, Price] = {
    # OpenAI
    "gpt-5": usd(1.25, 0.125, 10), "gpt-5-codex": usd(1.25, 0.125, 10),
    "gpt-5-mini": usd(0.25, 0.025, 2), "gpt-5-nano": usd(0.05, 0.005, 0.40),
    "gpt-5-pro": usd(15, 15, 120),
    "gpt-5.1": usd(1.25, 0.125, 10), "gpt-5.1-codex-mini": usd(0.25, 0.025, 2),
    "gpt-4.1": usd(2, 0.50, 8), "gpt-4.1-mini": usd(0.40, 0.10, 1.60),
    "gpt-4.1-nano": usd(0.10, 0.025, 0.40),
    "gpt-4o": usd(2.50, 1.25, 10), "gpt-4o-mini": usd(0.15, 0.075, 0.60),
    "o3": usd(2, 0.50, 8), "o3-pro": usd(20, 20, 80), "o3-mini": usd(1.10, 0.55, 4.40),
    "o4-mini": usd(1.10, 0.275, 4.40),
    "codex-mini": usd(1.50, 0.375, 6),
    # Anthropic: cache reads 0.1x input, 5-minute cache writes 1.25x input
    "claude-opus-4-5": usd(5, 0.50, 25, 6.25),
    "claude-opus-4": usd(15, 1.50, 75, 18.75),
    "claude-sonnet-4": usd(3, 0.30, 15, 3.75),
    "claude-3-7-sonnet": usd(3, 0.30, 15, 3.75),
    "claude-haiku-4-5": usd(1, 0.10, 5, 1.25),
    "claude-3-5-haiku": usd(0.80, 0.08, 4, 1),
}


def parse_prices(raw: Mapping[str, Any]) -> dict[str, Price]:
    """The defaults with the accounts file's `prices:` entries on top; ValueError names the bad one.

    Each entry: `model: {input: USD, cached_input: USD, output: USD, cache_write: USD}` per
    million tokens; cached_input defaults to input, cache_write to input.
    """
    table = dict(DEFAULTS)
    for model, entry in raw.items():
        if not isinstance(model, str) or not model:
            raise ValueError(f"prices: bad model name {model!r}")
        if not isinstance(entry, Mapping):
            raise ValueError(f"prices: {model}: expected a mapping of {', '.join(FIELDS)}")
        unknown = sorted(set(entry) - set(FIELDS))
        if unknown:
            raise ValueError(f"prices: {model}: unknown field {unknown[0]!r}")
        values: dict[str, float] = {}
        for name in FIELDS:
            value = entry.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"prices: {model}: {name} must be a number >= 0 (USD per "
                                 f"million tokens), got {value!r}")
            values[name] = float(value)
        if "input" not in values or "output" not in values:
            raise ValueError(f"prices: {model}: input and output are required")
        table[model] = usd(values["input"], values.get("cached_input", values["input"]),
                           values["output"], values.get("cache_write"))
    return table
