"""addons/options.py: options and the accounts file are checked before they take effect, and a
bad edit keeps the old ones running."""

import logging

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from tests.helpers import ACCOUNTS, addons


@pytest.mark.parametrize("option, value, match", [
    ("sticky_idle_timeout", 0, "sticky_idle_timeout"),
    ("sticky_session_headers", ["bad header"], "sticky_session_headers"),
    ("sticky_strategy", "best", "sticky_strategy"),
    ("sticky_fallback", "maybe", "sticky_fallback"),
    ("sticky_store_timeout", 0, "sticky_store_timeout"),
    ("sticky_store_timeout", 501, "sticky_store_timeout"),
])
def test_bad_options_are_refused(addon_ctx, option, value, match):
    addon, tctx, _ = addon_ctx
    with pytest.raises(exceptions.OptionsError, match=match):
        tctx.configure(addon.options, **{option: value})
    assert addon.state.settings.idle_timeout == 3600  # old settings still running


def test_bad_accounts_file_is_refused(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("accounts:\n  - alias: a\n    provider: nope\n    api_key: k\n")
    addon = addons()
    with taddons.context(*addon) as tctx:
        with pytest.raises(exceptions.OptionsError, match=rf"{p}:3: a: unknown provider"):
            tctx.configure(addon.options, sticky_accounts=str(p))


def test_accounts_reload_and_bad_edit_keeps_old(addon_ctx, accounts_file, caplog):
    addon, _, _ = addon_ctx
    accounts_file.write_text(ACCOUNTS.replace("alias: ob", "alias: ob2") + "\n")
    assert addon.options.reload_accounts_if_changed()
    assert addon.state.accounts.get("ob2") is not None
    accounts_file.write_text("accounts: [broken\n")
    with caplog.at_level(logging.WARNING):
        assert not addon.options.reload_accounts_if_changed()
    assert "keeping the previous accounts" in caplog.text
    assert addon.state.accounts.get("ob2") is not None


def test_bad_price_table_is_a_bad_accounts_file(tmp_path):
    p = tmp_path / "accounts.yaml"
    p.write_text(ACCOUNTS + "prices:\n  gpt-5: {input: 1}\n")
    route = addons()
    with taddons.context(*route) as tctx, pytest.raises(exceptions.OptionsError,
                                                       match="input and output are required"):
        tctx.configure(route.options, sticky_accounts=str(p))


def test_bad_admin_option_is_an_options_error(admin_env):
    sticky, admin, _, _ = admin_env
    with taddons.context(*sticky) as tctx:
        with pytest.raises(exceptions.OptionsError, match="sticky_admin"):
            tctx.configure(sticky.options, sticky_admin="nonsense")
