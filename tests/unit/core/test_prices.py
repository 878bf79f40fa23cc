"""core/prices.py: what a response cost, from the default table and the file's overrides."""

import pytest

from stickyroute.config.prices import parse_prices
from stickyroute.core.observe import Usage
from stickyroute.core.prices import PriceTable


@pytest.mark.parametrize("model, cost", [
    # gpt-5: 1000 plain * 1.25 + 1000 cached * 0.125 + 100 out * 10 per million
    ("gpt-5-2025-08-07", 1250 + 125 + 1000),
    ("gpt-5-mini-2025-08-07", 250 + 25 + 200),  # longest prefix, not gpt-5
])
def test_openai_cost(model, cost):
    assert PriceTable().cost(model, Usage(input=2000, cached=1000, output=100)) == (cost, True)


def test_anthropic_cost_bills_cache_writes():
    usage = Usage(input=1000 + 2000 + 400, cached=2000, output=100, cache_write=400)
    micros, known = PriceTable().cost("claude-sonnet-4-5-20250929", usage)
    assert known and micros == 3000 + 600 + 1500 + 1500


def test_unknown_model_costs_nothing_and_says_so():
    assert PriceTable().cost("llama-9", Usage(10, 0, 10)) == (0, False)
    assert PriceTable().cost(None, Usage(10, 0, 10)) == (0, False)


def test_overrides():
    table = PriceTable(parse_prices({"gpt-5": {"input": 2, "output": 20}, "my-model": {
        "input": 1, "cached_input": 0.5, "output": 3}}))
    assert table.cost("gpt-5", Usage(1_000_000, 0, 0)) == (2_000_000, True)
    assert table.cost("gpt-5", Usage(1_000_000, 1_000_000, 0)) == (2_000_000, True)
    assert table.cost("my-model-v2", Usage(0, 0, 1_000_000)) == (3_000_000, True)
    assert table.cost("gpt-4o", Usage(1_000_000, 0, 0)) == (2_500_000, True)  # defaults stay
