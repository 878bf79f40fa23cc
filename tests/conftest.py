"""Fixtures shared by more than one test folder: the fake upstream with the default keys.

Builders (flows, clocks, SSE samples) are in helpers.py; e2e fixtures in e2e/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.harness import make_fake
from fakeapi import FakeUpstream


@pytest.fixture
def fake_upstream() -> Iterator[FakeUpstream]:
    with make_fake() as fake:
        yield fake


@pytest.fixture(scope="module")
def module_fake_upstream() -> Iterator[FakeUpstream]:
    """One fake for a whole module; tests call reset_log()/clear_faults() as they need."""
    with make_fake() as fake:
        yield fake
