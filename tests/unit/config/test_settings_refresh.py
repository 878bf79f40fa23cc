"""sticky_refresh_margin: declared, defaulted, validated."""

import pytest

from stickyroute.config.settings import DEFAULTS, OPTIONS, parse_settings


def parse(**over):
    return parse_settings({**DEFAULTS, **over}.__getitem__)


def test_default_and_values():
    assert parse().refresh_margin == 300
    assert parse(sticky_refresh_margin=0).refresh_margin == 0  # refresh at expiry
    assert parse(sticky_refresh_margin=3600).refresh_margin == 3600
    declared = {o.name: o for o in OPTIONS}["sticky_refresh_margin"]
    assert declared.typespec is int and "half" in declared.help


@pytest.mark.parametrize("value", [-1, 86401])
def test_bad_values_name_the_option(value):
    with pytest.raises(ValueError, match=rf"sticky_refresh_margin option: .* got {value}"):
        parse(sticky_refresh_margin=value)
