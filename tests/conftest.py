"""Shared fixtures: a fake upstream with a default account set, and mitmdump factories."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.harness import Mitmdump, make_fake
from fakeapi import FakeUpstream

MitmdumpFactory = Callable[..., Mitmdump]



@pytest.fixture
def fake_upstream() -> Iterator[FakeUpstream]:
    with make_fake() as fake:
        yield fake


@pytest.fixture(scope="module")
def module_fake_upstream() -> Iterator[FakeUpstream]:
    """One fake for a whole module; tests call reset_log()/clear_faults() as they need."""
    with make_fake() as fake:
        yield fake


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
