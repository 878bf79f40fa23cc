"""What operators see of usage windows and warm prefixes: /api/accounts fields, the
sticky.accounts line, the Prometheus gauges. Driven directly with a fake clock."""

import json

import pytest

from stickyroute.admin import views
from stickyroute.admin.api import AdminApi
from stickyroute.admin.metrics import registry_for, render
from stickyroute.core.prefix import Prefix
from stickyroute.core.windows import Reading, Window
from tests.helpers import ACCOUNTS, Clock, configured

TOKEN = "admin-token-123"
NOW = 1_000.0


@pytest.fixture
def env(tmp_path):
    p = tmp_path / "accounts.yaml"
    p.write_text(ACCOUNTS)
    clock = Clock(NOW)
    with configured(p, clock, sticky_admin_token=TOKEN) as (sticky, _):
        st = sticky.state
        st.windows.record("oa", Reading((Window(300, 95, NOW + 3900),
                                         Window(10080, 40, NOW + 2 * 86400 + 3 * 3600),
                                         Window(10080, 99, None, limit="gpt-sonic"))), NOW)
        st.windows.record("ob", Reading((Window(300, 100, NOW + 600, rejected=True),)), NOW)
        st.warm.touch("oa", Prefix("p1", 600), NOW)
        st.warm.touch("oa", Prefix("p2", 600), NOW)
        yield sticky, AdminApi(st, TOKEN, lambda: b"", sticky.admin.metrics)


def test_api_accounts_show_windows_draining_state_and_warm_prefixes(env):
    _, api = env
    reply = api.handle("GET", "/api/accounts", {"authorization": f"Bearer {TOKEN}"}, b"")
    by_alias = {a["alias"]: a for a in json.loads(reply.body)["accounts"]}
    oa, ob, an = by_alias["oa"], by_alias["ob"], by_alias["an"]
    assert oa["windows"] == [
        {"minutes": 300, "used_percent": 95, "resets_at": NOW + 3900, "status": "draining",
         "limit": ""},
        {"minutes": 10080, "used_percent": 40, "resets_at": NOW + 2 * 86400 + 3 * 3600,
         "status": "ok", "limit": ""},
        {"minutes": 10080, "used_percent": 99, "resets_at": None, "status": "draining",
         "limit": "gpt-sonic"}]
    assert (oa["draining"], oa["usage_state"], oa["warm_prefixes"]) == (True, "draining", 2)
    assert (ob["draining"], ob["usage_state"]) == (True, "limited")
    assert (an["windows"], an["draining"], an["usage_state"], an["warm_prefixes"]) == (
        [], False, "ok", 0)


def test_sticky_accounts_line_shows_the_windows(env):
    sticky, _ = env
    lines = sticky.commands.accounts_command()
    assert lines[0].endswith(" usage=draining windows=5h:95%(resets in 1h05m),"
                             "7d:40%(resets in 2d03h),gpt-sonic/7d:99% warm_prefixes=2")
    assert "usage=limited windows=5h:100%(resets in 10m)" in lines[1]
    assert "windows" not in lines[2] and "warm" not in lines[2]


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59.6, "1m"), (61, "1m"), (3600, "1h"),
                                           (3900, "1h05m"), (86400, "1d"), (90000, "1d01h")])
def test_span(seconds, text):
    assert views.span(seconds) == text


def test_window_gauges(env):
    sticky, _ = env
    text = render(registry_for(sticky.state))[0].decode()
    for line in ('stickyroute_account_window_used_ratio{account="oa",window_minutes="300"} 0.95',
                 'stickyroute_account_window_used_ratio{account="oa",window_minutes="10080"} 0.4',
                 'stickyroute_account_window_reset_seconds{account="oa",window_minutes="300"} '
                 '3900.0',
                 'stickyroute_account_window_used_ratio{account="ob",window_minutes="300"} 1.0',
                 'stickyroute_account_window_reset_seconds{account="ob",window_minutes="300"} '
                 '600.0'):
        assert line in text
    assert "gpt-sonic" not in text and 'account="an",window_minutes' not in text
