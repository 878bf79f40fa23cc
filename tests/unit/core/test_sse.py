"""core/sse.py: the SSE parser (any split, any line ending, bounded) and incremental decoders."""

import gzip
import zlib

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from stickyroute.core.sse import SseEvent, SseParser, decoder_for, parse_all
from tests.helpers import ANTHROPIC_STREAM, CHAT_STREAM, RESPONSES_STREAM


def test_parser_line_endings_and_comments():
    events = parse_all(b"event: a\r\ndata: 1\r\ndata: 2\r\n\r\n:c\n\nevent:b\rdata:x\r\r")
    assert events == [SseEvent("a", "1\n2"), SseEvent("b", "x")]


def test_parser_flushes_last_event_without_blank_line():
    p = SseParser()
    assert p.feed(b"data: tail") == []
    assert p.close() == [SseEvent("", "tail")]


def test_parser_bounds_memory():
    p = SseParser(max_event=100)
    p.feed(b"data: " + b"x" * 50)
    p.feed(b"y" * 80)
    assert p.overflowed and p.feed(b"\n\n") == [] and p.close() == []

ALL_STREAMS = [RESPONSES_STREAM, CHAT_STREAM, ANTHROPIC_STREAM]


@settings(max_examples=300, deadline=None)
@given(which=st.integers(0, 2), cuts=st.lists(st.integers(0, 4000), max_size=40))
def test_any_split_gives_same_events(which, cuts):
    stream = ALL_STREAMS[which]
    bounds = sorted({c % (len(stream) + 1) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *bounds], [*bounds, len(stream)], strict=True)]
    parser = SseParser()
    got = []
    for piece in pieces:
        got += parser.feed(piece)
    got += parser.close()
    assert got == parse_all(stream)
    assert len(got) == {0: 4, 1: 3, 2: 4}[which]


@pytest.mark.parametrize("encoding, encode", [
    ("gzip", gzip.compress),
    ("deflate", zlib.compress),
    ("zstd", lambda b: zstandard.ZstdCompressor().compress(b)),
    ("br", lambda b: __import__("brotli").compress(b)),
    ("identity", lambda b: b),
    ("", lambda b: b),
])
def test_incremental_decoding(encoding, encode):
    data = encode(RESPONSES_STREAM)
    decode = decoder_for(encoding)
    assert decode is not None
    out = b"".join(decode(data[i:i + 7]) for i in range(0, len(data), 7))
    assert out == RESPONSES_STREAM


def test_unknown_encoding_is_not_decoded():
    assert decoder_for("compress") is None
