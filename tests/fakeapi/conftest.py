"""The fake upstream's own tests start it on a loopback port (and `python -m fakeapi` once):
marked `e2e` like everything that starts a server."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A conftest's hooks see every collected item, not only this folder's.
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)
