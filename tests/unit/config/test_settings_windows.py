"""sticky_drain_at and sticky_openai_cache_ttl: declared, defaulted, validated."""

import pytest

from stickyroute.config.settings import DEFAULTS, OPTIONS, Settings, parse_settings


def parse(**over):
    values = {**DEFAULTS, **over}
    return parse_settings(values.__getitem__)


def test_defaults():
    s = parse()
    assert (s.drain_at, s.openai_cache_ttl) == (90, 600)
    assert (Settings.defaults().drain_at, Settings.defaults().openai_cache_ttl) == (90, 600)


def test_values_are_taken():
    s = parse(sticky_drain_at=75, sticky_openai_cache_ttl=3600)
    assert (s.drain_at, s.openai_cache_ttl) == (75, 3600)
    assert parse(sticky_drain_at=100).drain_at == 100  # drain only when used up


@pytest.mark.parametrize("option, value, match", [
    ("sticky_drain_at", 0, r"sticky_drain_at option: a percent from 1 to 100, got 0"),
    ("sticky_drain_at", 101, r"sticky_drain_at option: .* got 101"),
    ("sticky_openai_cache_ttl", 0, r"sticky_openai_cache_ttl option: seconds from 1 to 86400"),
    ("sticky_openai_cache_ttl", 86401, r"sticky_openai_cache_ttl option: .* got 86401"),
])
def test_bad_values_name_the_option(option, value, match):
    with pytest.raises(ValueError, match=match):
        parse(**{option: value})


def test_declared_as_ints_with_help():
    declared = {name: (typespec, help_text) for name, typespec, _, help_text, _ in OPTIONS}
    for name in ("sticky_drain_at", "sticky_openai_cache_ttl"):
        typespec, help_text = declared[name]
        assert typespec is int and len(help_text) > 40


def test_the_addon_refuses_a_bad_value_and_keeps_the_old_settings():
    from mitmproxy import exceptions
    from mitmproxy.test import taddons

    from stickyroute import build

    addon = build()
    with taddons.context(*addon) as tctx:
        tctx.configure(addon.options, sticky_drain_at=80)
        assert addon.state.settings.drain_at == 80
        with pytest.raises(exceptions.OptionsError, match="sticky_drain_at"):
            tctx.configure(addon.options, sticky_drain_at=0)
        assert addon.state.settings.drain_at == 80
