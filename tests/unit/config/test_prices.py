"""config/prices.py: the accounts file's `prices:` section is checked field by field."""

import pytest

from stickyroute.config.prices import parse_prices


@pytest.mark.parametrize("raw, match", [
    ({"m": 5}, "expected a mapping"),
    ({"m": {"input": 1}}, "input and output are required"),
    ({"m": {"input": -1, "output": 1}}, "must be a number"),
    ({"m": {"input": "1", "output": 1}}, "must be a number"),
    ({"m": {"input": 1, "output": 1, "writes": 2}}, "unknown field 'writes'"),
])
def test_bad_overrides(raw, match):
    with pytest.raises(ValueError, match=match):
        parse_prices(raw)
