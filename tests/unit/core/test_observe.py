"""core/observe.py: ids, usage and lost-state errors from streams and bodies of the three APIs."""

import pytest

from stickyroute.core import observe as observe_module
from stickyroute.core.observe import Observer, Usage
from stickyroute.core.sse import parse_all
from tests.helpers import ANTHROPIC_STREAM, CHAT_STREAM, RESPONSES_STREAM, sse


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
        obs = observe(endpoint, junk)
        # nothing is learned from junk: no id, no model, no error, no token counted
        assert (obs.response_id, obs.model, obs.reasoning_ids, obs.error, obs.affinity_break) == (
            None, None, [], None, None), endpoint
        assert obs.usage is None or obs.usage == Usage(), endpoint
        # only a Responses event that says it is complete ends the response
        assert obs.completed == (b"response.completed" in junk
                                 and endpoint in ("responses", "other")), endpoint


def test_text_delta_events_are_not_parsed(monkeypatch):
    parsed = []
    real = observe_module._loads
    monkeypatch.setattr(observe_module, "_loads", lambda data: parsed.append(data) or real(data))
    obs = observe("responses", RESPONSES_STREAM + sse("response.output_text.delta", "{not json"))
    assert obs.usage == Usage(input=2000, cached=1536, output=40, reasoning=12)
    assert not any("output_text.delta" in d for d in parsed) and len(parsed) == 3
    assert observe("messages", ANTHROPIC_STREAM).usage.output == 77
