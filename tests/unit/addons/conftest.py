"""Fixtures for the glue's tests: an accounts file, the addons configured around it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mitmproxy.test import taddons

from stickyroute import Addons
from tests.helpers import ACCOUNTS, Clock, configured


@pytest.fixture
def accounts_file(tmp_path: Path) -> Path:
    p = tmp_path / "accounts.yaml"
    p.write_text(ACCOUNTS)
    p.chmod(0o600)  # a looser mode makes the addon warn
    return p


@pytest.fixture
def addon_ctx(accounts_file: Path) -> Iterator[tuple[Addons, taddons.context, Clock]]:
    """(addons, their test context, the clock) configured with `accounts_file`."""
    clock = Clock()
    with configured(accounts_file, clock) as (addon, tctx):
        yield addon, tctx, clock
