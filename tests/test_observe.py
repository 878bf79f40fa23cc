import gzip
import json
import zlib

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from stickyroute.core.observe import Observer, Usage
from stickyroute.core.sse import SseEvent, SseParser, decoder_for, parse_all


def sse(event, data, nl="\n"):
    head = f"event: {event}{nl}" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"{head}data: {payload}{nl}{nl}".encode()


RESPONSES_STREAM = b"".join([
    sse("response.created", {"type": "response.created", "response": {
        "id": "resp_1", "model": "gpt-5-2025-08-07", "output": [], "usage": None}}),
    b": keep-alive\n\n",
    sse("response.output_item.done", {"type": "response.output_item.done", "item": {
        "id": "rs_1", "type": "reasoning", "encrypted_content": "x" * 300}}, nl="\r\n"),
    sse("response.output_text.delta", {"type": "response.output_text.delta",
                                       "delta": "h\u00e9llo \u2603 \U0001f600"}),
    sse("response.completed", {"type": "response.completed", "response": {
        "id": "resp_1", "model": "gpt-5-2025-08-07",
        "output": [{"id": "rs_1", "type": "reasoning"}, {"id": "msg_1", "type": "message"}],
        "usage": {"input_tokens": 2000, "input_tokens_details": {"cached_tokens": 1536},
                  "output_tokens": 40, "output_tokens_details": {"reasoning_tokens": 12}}}},
        nl="\r\n"),
])
CHAT_STREAM = b"".join([
    sse(None, {"id": "chatcmpl-1", "model": "gpt-4o", "choices": [{"delta": {"content": "a"}}]}),
    sse(None, {"id": "chatcmpl-1", "model": "gpt-4o", "choices": [],
               "usage": {"prompt_tokens": 1200, "completion_tokens": 9,
                         "prompt_tokens_details": {"cached_tokens": 1024}}}),
    sse(None, "[DONE]"),
])
ANTHROPIC_STREAM = b"".join([
    sse("message_start", {"type": "message_start", "message": {
        "id": "msg_01", "model": "claude-sonnet-4-5-20250929",
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 3000,
                  "cache_creation_input_tokens": 200, "output_tokens": 1}}}),
    sse("ping", {"type": "ping"}),
    sse("message_delta", {"type": "message_delta", "usage": {"output_tokens": 77}}),
    sse("message_stop", {"type": "message_stop"}),
])


def observe(endpoint, stream):
    obs = Observer(endpoint)
    for ev in parse_all(stream):
        obs.event(ev.event, ev.data)
    return obs


def test_responses_stream():
    obs = observe("responses", RESPONSES_STREAM)
    assert obs.response_id == "resp_1" and obs.model == "gpt-5-2025-08-07"
    assert obs.reasoning_ids == ["rs_1"] and obs.completed
    assert obs.usage == Usage(input=2000, cached=1536, output=40, reasoning=12)
    assert obs.usage.cache_ratio == pytest.approx(0.768)


def test_chat_stream():
    obs = observe("chat", CHAT_STREAM)
    assert obs.response_id == "chatcmpl-1" and obs.completed
    assert obs.usage == Usage(input=1200, cached=1024, output=9)


def test_anthropic_stream_output_is_cumulative():
    obs = observe("messages", ANTHROPIC_STREAM)
    assert obs.response_id == "msg_01" and obs.completed
    assert obs.usage == Usage(input=3210, cached=3000, output=77, cache_write=200)


def test_anthropic_message_delta_with_input_counts():
    obs = observe("messages", ANTHROPIC_STREAM + sse("message_delta", {
        "type": "message_delta", "usage": {"input_tokens": 20, "cache_read_input_tokens": 3000,
                                           "output_tokens": 80}}))
    assert obs.usage == Usage(input=3220, cached=3000, output=80, cache_write=200)


@pytest.mark.parametrize("endpoint, body, usage, rid", [
    ("responses", {"id": "resp_9", "model": "gpt-5", "output": [
        {"type": "reasoning", "id": "rs_9"}], "usage": {
        "input_tokens": 5, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 0}}},
     Usage(5, 0, 2), "resp_9"),
    ("chat", {"id": "c1", "model": "gpt-4o", "usage": {"prompt_tokens": 7, "completion_tokens": 3,
                                                      "prompt_tokens_details": None}},
     Usage(7, 0, 3), "c1"),
    ("messages", {"id": "msg_2", "model": "claude-haiku-4-5", "usage": {
        "input_tokens": 4, "output_tokens": 6}}, Usage(4, 0, 6), "msg_2"),
])
def test_json_bodies(endpoint, body, usage, rid):
    obs = Observer(endpoint)
    obs.body(body)
    assert obs.usage == usage and obs.response_id == rid and obs.completed


@pytest.mark.parametrize("text, label", [
    ('{"error": {"message": "Previous response with id \'resp_x\' not found.", '
     '"code": "previous_response_not_found"}}', "previous_response_not_found"),
    ('{"error": {"message": "The encrypted content for item rs_1 could not be verified.", '
     '"code": "invalid_encrypted_content"}}', "invalid_encrypted_content"),
    ('{"detail": "No conversation found with id abc"}', "conversation_not_found"),
    ('{"error": {"message": "Rate limit", "code": "rate_limit_exceeded"}}', None),
])
def test_affinity_breaks(text, label):
    obs = Observer("responses")
    obs.error_text(text)
    assert obs.affinity_break == label
    assert not obs.completed


def test_error_event_in_stream_counts_as_break():
    obs = observe("responses", sse("error", {"type": "error", "code": "previous_response_not_found",
                                             "message": "gone"}))
    assert obs.affinity_break == "previous_response_not_found"
    assert obs.error == "previous_response_not_found"


@pytest.mark.parametrize("junk", [b"", b"data: {", b"data: [1,2]\n\n", b"\xff\xfe\n\n",
                                  b"data: {\"type\": \"response.completed\", \"response\": 5}\n\n",
                                  b"data: {\"usage\": {\"input_tokens\": \"x\"}}\n\n"])
def test_garbage_never_raises(junk):
    for endpoint in ("responses", "chat", "messages", "other"):
        observe(endpoint, junk)


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


def test_text_delta_events_are_not_parsed(monkeypatch):
    from stickyroute.core import observe as observe_module

    parsed = []
    real = observe_module._loads
    monkeypatch.setattr(observe_module, "_loads", lambda data: parsed.append(data) or real(data))
    obs = observe("responses", RESPONSES_STREAM + sse("response.output_text.delta", "{not json"))
    assert obs.usage == Usage(input=2000, cached=1536, output=40, reasoning=12)
    assert not any("output_text.delta" in d for d in parsed) and len(parsed) == 3
    assert observe("messages", ANTHROPIC_STREAM).usage.output == 77
