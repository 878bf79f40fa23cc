"""addons/follow.py: the way back — streamed and JSON responses, chains, usage, cost, WebSocket
frames."""

import asyncio
import json
import logging

import pytest
from mitmproxy import flow as mflow
from mitmproxy import http

from tests.helpers import (
    ACCOUNTS,
    ANTHROPIC_STREAM,
    RESPONSES_STREAM,
    Clock,
    configured,
    flow,
    resp_body,
    respond,
    ws_flow,
    ws_send,
)


@pytest.fixture
def ctx(tmp_path):
    p = tmp_path / "accounts.yaml"
    p.write_text(ACCOUNTS + "prices:\n  gpt-fake: {input: 1, output: 2}\n")
    clock = Clock()
    with configured(p, clock) as (route, _):
        yield route, route.follow, clock


def test_streamed_usage_goes_to_ledger_pin_log_and_comment(ctx, caplog):
    route, follow, _ = ctx
    caplog.set_level(logging.INFO, "stickyroute")
    f = flow(body={"model": "gpt-5", "input": "hi", "stream": True},
             headers=[("session-id", "s1")])
    route.route.request(f)
    assert not any("responses ->" in r.message for r in caplog.records)  # logged at the end
    meta = respond(f, follow, RESPONSES_STREAM, sse=True)
    alias = meta["account"]
    assert (meta["tokens_in"], meta["tokens_out"], meta["tokens_cached"]) == (2000, 40, 1536)
    stats = route.state.ledger[alias]
    assert (stats.tokens_in, stats.tokens_out, stats.tokens_cached) == (2000, 40, 1536)
    # gpt-5: 464 * 1.25 + 1536 * 0.125 + 40 * 10 = 580 + 192 + 400 micro-USD
    assert stats.cost_micros == 1172
    pin = next(iter(route.state.pins))
    assert (pin.tokens_in, pin.cost_micros) == (2000, 1172)
    assert "in 2000 / out 40 / cached 1536 (77%) | $0.0012" in f.comment
    assert any(f.comment in r.message for r in caplog.records)


def test_gzip_stream_is_decoded_incrementally(ctx):
    route, follow, _ = ctx
    f = flow(body={"model": "gpt-5", "input": "hi", "stream": True})
    route.route.request(f)
    meta = respond(f, follow, RESPONSES_STREAM, sse=True, encoding="gzip")
    assert meta["tokens_in"] == 2000 and meta["response_id"] == "resp_1"


def test_undecodable_stream_passes_unobserved_and_says_so_once(ctx, caplog):
    route, follow, _ = ctx
    for _ in range(2):
        f = flow(body={"model": "gpt-5", "input": "hi", "stream": True})
        route.route.request(f)
        respond(f, follow, RESPONSES_STREAM, sse=True, encoding="compress")
        assert f.metadata["stickyroute"]["tokens_in"] is None
    assert sum("cannot decode 'compress'" in r.message for r in caplog.records) == 1


def test_anthropic_stream(ctx):
    route, follow, _ = ctx
    f = flow(host="api.anthropic.com", path="/v1/messages",
             body={"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "x"}]})
    route.route.request(f)
    meta = respond(f, follow, ANTHROPIC_STREAM, sse=True)
    assert (meta["tokens_in"], meta["tokens_cached"], meta["tokens_out"]) == (3210, 3000, 77)


def test_chain_without_any_session_hint_is_hard_and_sticks(ctx):
    route, follow, clock = ctx
    f1 = flow(body={"model": "gpt-fake", "input": [{"role": "user", "content": "start"}]})
    route.route.request(f1)
    alias = f1.metadata["stickyroute"]["account"]
    respond(f1, follow, resp_body("resp_a", reasoning="rs_a"))
    for i in range(6):  # whatever the strategy would do, the chain decides
        f = flow(body={"model": "gpt-fake", "previous_response_id": "resp_a" if i % 2 else None,
                       "input": [{"type": "reasoning", "id": "rs_a", "encrypted_content": "e"},
                                 {"role": "user", "content": f"turn {i}"}]})
        route.route.request(f)
        meta = f.metadata["stickyroute"]
        assert meta["account"] == alias and meta["hard"]
        assert meta["session_source"].startswith("chain:") and meta["affinity"] == "hit"
    # A pin evicted meanwhile is put back where the state is.
    route.state.pins.remove(f1.metadata["stickyroute"]["session_key"])
    f = flow(body={"model": "gpt-fake", "previous_response_id": "resp_a", "input": "more"})
    route.route.request(f)
    assert f.metadata["stickyroute"]["account"] == alias
    # Another client never follows this client's chain.
    g = flow(body={"model": "gpt-fake", "previous_response_id": "resp_a", "input": "more"},
             headers=[("authorization", "Bearer someone-else")])
    route.route.request(g)
    assert not g.metadata["stickyroute"]["session_source"].startswith("chain:")


def test_chain_learned_from_unpinned_request(ctx):
    route, follow, _ = ctx
    f1 = flow(body={"model": "gpt-fake", "input": [{"type": "function_call_output"}]})
    route.route.request(f1)
    assert f1.metadata["stickyroute"]["affinity"] == "unpinned"
    respond(f1, follow, resp_body("resp_u"))
    f2 = flow(body={"model": "gpt-fake", "previous_response_id": "resp_u", "input": "x"})
    route.route.request(f2)
    meta = f2.metadata["stickyroute"]
    assert meta["account"] == f1.metadata["stickyroute"]["account"] and meta["hard"]


def test_affinity_break_is_counted_and_loud(ctx, caplog):
    route, follow, _ = ctx
    f = flow(body={"model": "gpt-fake", "previous_response_id": "resp_gone", "input": "x"})
    route.route.request(f)
    meta = respond(f, follow, {"error": {"message": "Previous response with id 'resp_gone' not "
                                         "found.", "code": "previous_response_not_found"}},
                   status=400)
    assert route.state.ledger[meta["account"]].affinity_breaks == 1
    assert "AFFINITY BREAK previous_response_not_found" in f.comment
    assert any(r.levelno == logging.WARNING and "AFFINITY BREAK" in r.message
               for r in caplog.records)


def test_unpriced_model_and_chat_json(ctx):
    route, follow, _ = ctx
    f = flow(path="/v1/chat/completions", body={"model": "mystery", "messages": []})
    route.route.request(f)
    respond(f, follow, {"id": "c", "model": "mystery", "usage": {
        "prompt_tokens": 10, "completion_tokens": 2}})
    assert "unpriced model mystery" in f.comment
    assert route.state.ledger[f.metadata["stickyroute"]["account"]].cost_micros == 0


def test_price_override_from_accounts_file(ctx):
    route, follow, _ = ctx
    f = flow(body={"model": "gpt-fake", "input": "hi"})
    route.route.request(f)
    respond(f, follow, resp_body("r1"))
    assert f.metadata["stickyroute"]["cost_micros"] == 1000 + 200


@pytest.mark.parametrize("body", [b"\x00\xff", b"[1]", b"{\"usage\": 5}", b"",
                                  b"data: {\"type\": \"response.completed\", \"response\": 7}\n\n"],
                         ids=["binary", "array", "usage-not-object", "empty", "sse-not-object"])
def test_garbage_responses_never_raise(ctx, caplog, body):
    """Follow swallows every exception (logging it at ERROR), so "did not raise" proves nothing:
    nothing may be logged at ERROR, and the answer is recorded like any other."""
    route, follow, _ = ctx
    caplog.set_level(logging.INFO, "stickyroute")
    for sse in (False, True):
        f = flow(body={"model": "gpt-fake", "input": "hi"})
        route.route.request(f)
        meta = respond(f, follow, body, sse=sse, chunks=1)
        assert meta["status"] == 200, sse
        assert (meta["tokens_in"], meta["response_id"], meta["affinity_break"]) == (None, None, None)
        assert f.comment.endswith(" | 200"), f.comment  # the line was written: nothing to add
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert sum(s.requests for s in (route.state.ledger["oa"], route.state.ledger["ob"])) == 2


def test_websocket_frames_injected_and_observed(ctx):
    route, follow, _ = ctx
    f = ws_flow(route, [("session-id", "ws-1")])
    follow.response(f)  # the 101: no usage line yet
    meta = f.metadata["stickyroute"]
    assert meta["session_source"] == "header:session-id"
    sent = ws_send(follow, f, {"type": "response.create", "model": "gpt-fake", "input": "hi"}, True)
    assert json.loads(sent.content)["prompt_cache_key"].startswith("sr-")
    kept = ws_send(follow, f, {"type": "response.create", "prompt_cache_key": "mine"}, True)
    assert json.loads(kept.content)["prompt_cache_key"] == "mine"
    ws_send(follow, f, {"type": "response.created", "response": {"id": "resp_w"}}, False)
    ws_send(follow, f, {"type": "response.completed", "response": resp_body("resp_w", "rs_w")},
            False)
    assert meta["tokens_in"] == 1000 and meta["response_id"] == "resp_w"
    assert route.state.ledger[meta["account"]].tokens_in == 1000
    link = route.state.chains.find(f"openai/{meta['client']}", {"previous_response_id": "resp_w"},
                             route.state.clock())
    assert link and link.alias == meta["account"]
    follow.websocket_end(f)


def test_websocket_prewarm_is_no_turn_and_costs_nothing_without_usage(ctx, caplog):
    route, follow, clock = ctx
    caplog.set_level(logging.INFO, "stickyroute")
    f = ws_flow(route, [("session-id", "ws-warm")])
    follow.response(f)
    meta = f.metadata["stickyroute"]
    stats = route.state.ledger[meta["account"]]
    pin = route.state.pins.get(meta["session_key"], clock())
    assert stats.requests == pin.requests == 1  # the handshake: it stands for the first turn

    def turn(frame, usage, rid):
        sent = ws_send(follow, f, {"type": "response.create", "model": "gpt-fake", **frame}, True)
        assert meta["request_bytes"] == len(sent.content) > 0  # the frame, not the 0 B handshake
        completed = {"id": rid, "model": "gpt-fake", "output": [], "usage": usage}
        ws_send(follow, f, {"type": "response.completed", "response": completed}, False)
        return caplog.records[-1].message

    line = turn({"input": [], "generate": False}, None, "resp_warm")
    assert " | new | prewarm | " in line and " | 101" in line and "in " not in line
    assert (stats.requests, pin.requests, stats.cost_micros, stats.tokens_in) == (1, 1, 0, 0)
    line = turn({"input": "hi", "previous_response_id": "resp_warm"},
                resp_body("r1")["usage"], "resp_1")
    assert "| prewarm |" not in line and " | new | " in line and "in 1000 / out 100" in line
    assert (stats.requests, pin.requests, stats.tokens_in) == (1, 1, 1000)
    assert stats.cost_micros > 0
    line = turn({"input": "more", "previous_response_id": "resp_1"},
                resp_body("r2")["usage"], "resp_2")
    assert " | hit | " in line and (stats.requests, pin.requests) == (2, 2)
    # a prewarm the provider reports usage for is priced like any answer, still not a turn
    cost = stats.cost_micros
    line = turn({"input": [], "generate": False}, resp_body("r3")["usage"], "resp_3")
    assert "prewarm" in line and stats.cost_micros > cost and stats.requests == 2


def test_failed_stream_is_logged_and_forgotten(ctx, caplog):
    route, follow, _ = ctx
    f = flow(body={"model": "gpt-5", "input": "hi", "stream": True})
    route.route.request(f)
    f.response = http.Response.make(200, b"", {"content-type": "text/event-stream"})
    follow.responseheaders(f)
    f.response.stream(RESPONSES_STREAM[:300])
    f.error = mflow.Error("Client disconnected.")
    follow.error(f)
    assert follow._streams == {}
    assert any("failed: Client disconnected." in r.message and r.levelno == logging.WARNING
               for r in caplog.records)


def test_a_websocket_turn_is_in_flight_until_its_answer_so_a_stop_drains_it(ctx):
    route, follow, _ = ctx
    f = ws_flow(route, [("session-id", "ws-drain")])
    route.failover.responseheaders(f)
    asyncio.run(route.failover.response(f))  # the 101 ends the handshake's in-flight count
    stats = route.state.ledger[f.metadata["stickyroute"]["account"]]
    assert stats.inflight == 0
    ws_send(follow, f, {"type": "response.create", "model": "gpt-fake", "input": "hi"}, True)
    assert stats.inflight == 1  # upstream now: a stop waits for it like an HTTP request
    ws_send(follow, f, {"type": "response.created", "response": {"id": "resp_d"}}, False)
    assert stats.inflight == 1
    done = {"id": "resp_d", "model": "gpt-fake", "output": [], "usage": resp_body("d")["usage"]}
    ws_send(follow, f, {"type": "response.completed", "response": done}, False)
    assert stats.inflight == 0 and stats.tokens_in == 1000  # learned, then let go
    ws_send(follow, f, {"type": "response.create", "model": "gpt-fake", "input": "x"}, True)
    ws_send(follow, f, {"type": "response.create", "model": "gpt-fake", "input": "y"}, True)
    assert stats.inflight == 1  # one turn at a time: a new frame replaces an unanswered one
    follow.websocket_end(f)  # the connection closes mid-turn
    assert stats.inflight == 0
