"""The per-request line's own path: same record for every handler the user reads, none for
mitmproxy's deprecated add_log event."""

import logging

import pytest

from stickyroute.log import REQUESTS, WithoutRequestLines, get_logger, request_line


def test_a_request_line_is_one_prefixed_info_record(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "stickyroute"):
        request_line("responses -> acct-0 | 100% done")  # a % in the text stays as it is
    (record,) = caplog.records
    assert (record.name, record.levelno) == (REQUESTS, logging.INFO)
    assert record.getMessage() == "stickyroute: responses -> acct-0 | 100% done"


def test_no_record_when_info_is_off(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "stickyroute"):
        request_line("x")
    assert caplog.records == []


def test_the_filter_holds_back_request_lines_only() -> None:
    keep = WithoutRequestLines()
    line = logging.LogRecord(REQUESTS, logging.INFO, "", 0, "x", (), None)
    other = logging.LogRecord("stickyroute.addons.follow", logging.WARNING, "", 0, "y", (), None)
    assert not keep.filter(line)
    assert keep.filter(other)
    assert get_logger("stickyroute.addons.follow").logger.name != REQUESTS
