"""The addon's one way to log: module loggers under `stickyroute`, every line prefixed once.

mitmdump prints a record's message only, so the prefix is what tells a reader which lines are
ours. No line may carry a credential: callers log aliases, session short forms and reasons.
The one line per finished request has its own logger and a cheaper path (`request_line`).
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

PREFIX = "stickyroute: "


class _Prefixed(logging.LoggerAdapter[logging.Logger]):
    def process(self, msg: Any, kwargs: MutableMapping[str, Any]
                ) -> tuple[Any, MutableMapping[str, Any]]:
        return f"{PREFIX}{msg}", kwargs


Logger = logging.LoggerAdapter[logging.Logger]


def get_logger(name: str) -> Logger:
    """The logger of one module (`get_logger(__name__)`)."""
    return _Prefixed(logging.getLogger(name), {})


REQUESTS = "stickyroute.requests"  # the logger of the one line per finished request
_requests = logging.getLogger(REQUESTS)


def request_line(text: str) -> None:
    """Log a finished request's line (INFO, prefixed) as one record built directly: the stack
    walk that finds the caller's file and line, which no mitmproxy output shows, cost a
    quarter of the record's price."""
    if _requests.isEnabledFor(logging.INFO):
        _requests.handle(_requests.makeRecord(REQUESTS, logging.INFO, __file__, 0,
                                              f"{PREFIX}{text}", (), None))


class WithoutRequestLines(logging.Filter):
    """For mitmproxy's handler of its deprecated `add_log` event: every record it gets is sent
    through a cross-thread event-loop wakeup to every addon, which costs more than printing
    it. The request lines still reach the terminal and mitmweb's event log (their own
    handlers); only the deprecated event goes without them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != REQUESTS
