"""Follow's `running` hook keeps request lines out of mitmproxy's deprecated add_log event."""

import asyncio
import logging

import mitmproxy.log
import pytest
from mitmproxy.test import taddons

from stickyroute.log import WithoutRequestLines, request_line
from tests.helpers import addons


def _legacy() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers
            if isinstance(h, mitmproxy.log.LegacyLogEvents)]


def test_request_lines_reach_every_handler_but_the_add_log_event(
        caplog: pytest.LogCaptureFixture) -> None:
    class Seen:
        def __init__(self) -> None:
            self.entries: list[str] = []

        def add_log(self, entry: mitmproxy.log.LogEntry) -> None:
            self.entries.append(entry.msg)

    async def run() -> None:
        sticky, seen = addons(), Seen()
        with taddons.context(*sticky, seen):
            assert _legacy()
            sticky.follow.running()
            sticky.follow.running()  # again (a script reload): still one filter
            for handler in _legacy():
                assert sum(isinstance(f, WithoutRequestLines) for f in handler.filters) == 1
            with caplog.at_level(logging.INFO):  # (restores the root level after)
                request_line("responses -> acct-0")
                logging.getLogger("stickyroute.addons.follow").warning("stickyroute: other")
                await asyncio.sleep(0.01)  # the add_log events arrive through the event loop
        assert "acct-0" in caplog.text  # the handlers people read still get it
        assert any("stickyroute: other" in msg for msg in seen.entries)
        assert not any("acct-0" in msg for msg in seen.entries)

    asyncio.run(run())
