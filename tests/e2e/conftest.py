"""Everything in this folder starts real processes (mitmdump, mitmweb, redis-server, Chromium,
bench and demo runs) and is marked `e2e` here: `pytest -m "not e2e"` leaves it out.

Fixtures: mitmdump factories that stop what they started (and print its output when the test
failed), and a throwaway redis-server.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.harness import Mitmdump
from tests.e2e.helpers import MitmdumpFactory
from tests.e2e.redis_server import RedisServer

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A conftest's hooks see every collected item, not only this folder's.
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)


def _factory(base: Path, request: pytest.FixtureRequest) -> Iterator[MitmdumpFactory]:
    started: list[Mitmdump] = []
    failed_before = request.session.testsfailed

    def start(scripts: list[Any] | tuple[Any, ...] = (), options: dict[str, Any] | None = None,
              **kw: Any) -> Mitmdump:
        kw.setdefault("confdir", base / f"mitm{len(started)}")
        proc = Mitmdump(scripts=scripts, options=options, **kw)
        started.append(proc)
        return proc.start()

    yield start
    failed = request.session.testsfailed > failed_before
    for proc in started:
        out = proc.stop()
        if failed:  # shown in pytest's captured-output section of the failing test
            sys.stdout.write(f"\n---- mitmdump {proc.command()} output ----\n{out}\n")


@pytest.fixture
def mitmdump_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[MitmdumpFactory]:
    """factory(scripts, options, **Mitmdump kwargs) -> started Mitmdump, stopped at teardown."""
    yield from _factory(tmp_path, request)


@pytest.fixture(scope="module")
def module_mitmdump_factory(tmp_path_factory: pytest.TempPathFactory,
                            request: pytest.FixtureRequest) -> Iterator[MitmdumpFactory]:
    yield from _factory(tmp_path_factory.mktemp("mitm"), request)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server on a free loopback port (skips when none is installed)."""
    with RedisServer() as s:
        yield s
