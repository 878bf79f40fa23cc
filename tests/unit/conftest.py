"""Fixtures for unit tests: the addons configured in a test mitmproxy context, no sockets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stickyroute import Addons
from stickyroute.addons.admin import StickyAdmin
from stickyroute.admin.api import AdminApi
from tests.helpers import ACCOUNTS, ADMIN_TOKEN, Clock, configured

AdminEnv = tuple[Addons, StickyAdmin, AdminApi, Clock]


@pytest.fixture
def admin_env(tmp_path: Path) -> Iterator[AdminEnv]:
    """(addons, the admin addon, an AdminApi on their State, the clock), with ACCOUNTS."""
    p = tmp_path / "accounts.yaml"
    p.write_text(ACCOUNTS)
    clock = Clock()
    with configured(p, clock, sticky_admin_token=ADMIN_TOKEN) as (sticky, _):
        admin = sticky.admin
        api = AdminApi(sticky.state, ADMIN_TOKEN, lambda: b"<html>page</html>", admin.metrics)
        yield sticky, admin, api, clock
