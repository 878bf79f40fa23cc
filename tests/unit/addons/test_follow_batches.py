"""Follow: request lines kept out of mitmproxy's deprecated add_log event (`running`), and
streams observed in batches without losing what arrived before a cut."""

import asyncio
import json
import logging
from pathlib import Path

import mitmproxy.log
import pytest
from mitmproxy import flow as mflow
from mitmproxy import http
from mitmproxy.test import taddons

from stickyroute.addons.follow import _Stream
from stickyroute.core.observe import Observer
from stickyroute.core.sse import BATCH, decoder_for
from stickyroute.log import WithoutRequestLines, request_line
from tests.helpers import ACCOUNTS, RESPONSES_STREAM, Clock, addons, configured, flow


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


def test_a_stream_cut_after_its_usage_arrived_is_still_learned(tmp_path: Path) -> None:
    """Observing is batched (sse.Batch): what arrived before an error is observed then."""
    accounts = tmp_path / "accounts.yaml"
    accounts.write_text(ACCOUNTS)
    with configured(accounts, Clock()) as (sticky, _):
        f = flow(body={"model": "gpt-5", "input": "hi", "stream": True},
                 headers=[("session-id", "s1")])
        sticky.route.request(f)
        f.response = http.Response.make(200, b"", {"content-type": "text/event-stream"})
        sticky.follow.responseheaders(f)
        assert callable(f.response.stream)
        for i in range(0, len(RESPONSES_STREAM), 50):  # all of it, short of a batch, no end
            f.response.stream(RESPONSES_STREAM[i:i + 50])
        assert sticky.follow._streams[f.id].observer.usage is None  # not parsed yet
        f.error = mflow.Error("Client disconnected.")
        sticky.follow.error(f)
        meta = f.metadata["stickyroute"]
        assert (meta["tokens_in"], meta["tokens_out"]) == (2000, 40)
        assert sticky.state.ledger[meta["account"]].tokens_in == 2000


def test_long_streams_are_observed_batch_by_batch() -> None:
    obs = Observer("chat")
    stream = _Stream(obs, decoder_for(""))
    head = sse_chunk({"id": "chatcmpl-1", "model": "gpt-5", "choices": []})
    stream(head)
    assert obs.response_id is None  # collected, not parsed yet
    filler = sse_chunk({"id": "chatcmpl-1", "model": "gpt-5", "usage": None, "choices": [
        {"index": 0, "delta": {"content": "x" * 100}, "finish_reason": None}]})
    for _ in range(BATCH // len(filler) + 1):
        stream(filler)
    assert obs.response_id == "chatcmpl-1"  # a full batch was parsed on the way


def sse_chunk(data: object) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"
