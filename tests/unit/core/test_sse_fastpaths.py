"""The SSE parser's cheap paths: whole events in one piece, events dropped by name or by what
an observer says about their raw data. Whatever the pieces, the result is the same."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from stickyroute.core.observe import SKIPPED_EVENTS, Observer
from stickyroute.core.sse import SseEvent, SseParser, parse_all


def sse(event: str | None, data: object) -> bytes:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"{head}data: {payload}\n\n".encode()


def chunk(text: str, finish: str | None = None, usage: object = None) -> dict[str, object]:
    body: dict[str, object] = {
        "id": "chatcmpl-1", "model": "gpt-5", "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}
    body["usage"] = usage
    return body


USAGE = {"prompt_tokens": 1200, "completion_tokens": 9,
         "prompt_tokens_details": {"cached_tokens": 1024}}
CHAT = [sse(None, chunk("a")), sse(None, chunk('say "finish_reason":"stop"')),
        sse(None, chunk("b")), sse(None, chunk("", "stop")),
        sse(None, {**chunk("x"), "choices": [], "usage": USAGE}), sse(None, "[DONE]")]
RESPONSES = [
    sse("response.created", {"type": "response.created",
                             "response": {"id": "resp_1", "model": "gpt-5", "output": []}}),
    sse("response.output_text.delta", {"type": "response.output_text.delta", "delta": "hi"}),
    b": keep-alive\n\n",
    sse("response.output_text.delta", {"type": "response.output_text.delta", "delta": "!"}),
    sse("response.completed", {"type": "response.completed", "response": {
        "id": "resp_1", "model": "gpt-5", "output": [{"id": "rs_1", "type": "reasoning"}],
        "usage": {"input_tokens": 10, "output_tokens": 2}}}),
]


def test_events_skipped_by_name_are_dropped_whole_or_in_pieces() -> None:
    whole = SseParser(skip=SKIPPED_EVENTS)
    got = [ev for piece in RESPONSES for ev in whole.feed(piece)]
    assert [ev.event for ev in got] == ["response.created", "response.completed"]
    pieces = SseParser(skip=SKIPPED_EVENTS)
    stream = b"".join(RESPONSES)
    assert [ev for b in stream for ev in pieces.feed(bytes([b]))] + pieces.close() == got


def test_a_skipped_name_with_a_second_event_line_is_not_skipped() -> None:
    p = SseParser(skip={"a"})
    assert p.feed(b"event: a\nevent: b\ndata: 1\n\n") == [SseEvent("b", "1")]


def test_ignorable_sees_raw_data_of_whole_unnamed_events_only() -> None:
    seen: list[bytes] = []
    p = SseParser(ignorable=lambda data: seen.append(data) or data == b"drop")
    assert p.feed(b"data: drop\n\ndata: keep\n\n") == [SseEvent("", "keep")]
    assert p.feed(b"data: dr") == [] and p.feed(b"op\n\n") == [SseEvent("", "drop")]
    assert seen == [b"drop", b"keep"]


def observed(pieces: list[bytes], endpoint: str) -> Observer:
    obs = Observer(endpoint)
    parser = SseParser(skip=SKIPPED_EVENTS, ignorable=obs.ignorable)
    for piece in pieces:
        for ev in parser.feed(piece):
            obs.event(ev.event, ev.data)
    for ev in parser.close():
        obs.event(ev.event, ev.data)
    return obs


def unskipped(stream: bytes, endpoint: str) -> Observer:
    obs = Observer(endpoint)
    for ev in parse_all(stream):
        obs.event(ev.event, ev.data)
    return obs


def test_chat_text_chunks_are_ignored_but_nothing_learned_is_lost() -> None:
    obs = observed(CHAT, "chat")
    assert obs == unskipped(b"".join(CHAT), "chat")
    assert obs.response_id == "chatcmpl-1" and obs.completed
    assert obs.usage is not None and obs.usage.cached == 1024


def test_what_a_chat_chunk_must_not_be_ignored_for() -> None:
    obs = Observer("chat")
    text = json.dumps(chunk("a"), separators=(",", ":")).encode()
    assert not obs.ignorable(text)  # id and model not known yet
    obs.response_id, obs.model = "chatcmpl-1", "gpt-5"
    assert obs.ignorable(text)
    for other in (chunk("", "stop"), chunk("a", usage=USAGE), {"error": {"message": "x"}},
                  {**chunk("a"), "choices": [chunk("a")["choices"][0],  # type: ignore[index]
                                             {"index": 1, "finish_reason": "length"}]}):
        assert not obs.ignorable(json.dumps(other, separators=(",", ":")).encode()), other
    assert not obs.ignorable(json.dumps(chunk("a")).encode())  # spaces: parse it
    assert not Observer("responses").ignorable(text)


@settings(max_examples=200, deadline=None)
@given(which=st.sampled_from(["chat", "responses"]),
       cuts=st.lists(st.integers(0, 3000), max_size=30))
def test_any_split_teaches_the_observer_the_same(which: str, cuts: list[int]) -> None:
    stream = b"".join(CHAT if which == "chat" else RESPONSES)
    bounds = sorted({c % (len(stream) + 1) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *bounds], [*bounds, len(stream)], strict=True)]
    assert observed(pieces, which) == unskipped(stream, which)


def test_events_are_produced_as_consumed_so_the_observer_can_drop_the_rest() -> None:
    obs = Observer("chat")
    parser = SseParser(ignorable=obs.ignorable)
    piece = b"".join(CHAT[:3])  # three whole events in one piece (a batch)
    parsed = []
    for ev in parser.events(piece):
        parsed.append(ev)
        obs.event(ev.event, ev.data)
    assert len(parsed) == 1  # the first taught id and model; the two text chunks were dropped
    assert obs.response_id == "chatcmpl-1"
