"""The fake's usage windows: headers and events per provider, growth per request, the 429 at
100%, the control endpoint; read back with stickyroute's own parser to prove they agree."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from websockets.sync.client import connect

from devtools.harness import make_fake
from fakeapi import FakeUpstream, UsagePlan
from fakeapi.usage import UsageTable
from fakeapi.wire import Reply
from stickyroute.core.outcome import Kind, classify
from stickyroute.core.windows import Window, from_codex_event, from_headers

NOW = 1_700_000_000.0
OA = {"authorization": "Bearer sk-test-openai-a"}
ANT = {"x-api-key": "sk-ant-test-a", "anthropic-version": "2023-06-01"}
CHATGPT = {"authorization": "Bearer tok-chatgpt-a", "chatgpt-account-id": "chatgpt-account-id-a"}


class Clock:
    def __init__(self) -> None:
        self.t = NOW

    def __call__(self) -> float:
        return self.t


def served() -> Reply:
    return Reply(200, {}, usage={"input_tokens": 1})


# ---- the table on its own (fake clock) ---------------------------------------------------
def test_off_unless_asked():
    table = UsageTable(None, Clock())
    reply = served()
    table.charge("a", "openai", reply, websocket=False)
    assert reply.headers == {} and table.refuse("a", "openai") is None and table.of("a") == []


def test_usage_grows_by_step_and_refuses_at_100_until_reset():
    clock = Clock()
    table = UsageTable(UsagePlan(windows=(300, 10080), steps=(40.0, 1.0)), clock)
    for expected in (40, 80, 100):
        assert table.refuse("a", "openai") is None
        reply = served()
        table.charge("a", "openai", reply, websocket=False)
        assert reply.headers["x-codex-primary-used-percent"] == f"{expected:g}"
    refused = table.refuse("a", "openai")
    assert refused is not None and refused.status == 429
    assert refused.body["error"]["type"] == "usage_limit_reached"
    assert refused.body["error"]["resets_at"] == int(NOW + 300 * 60)
    assert refused.body["error"]["resets_in_seconds"] == 300 * 60
    clock.t = NOW + 300 * 60  # the 5-hour window is over: it starts again empty
    assert table.refuse("a", "openai") is None
    assert [w["used_percent"] for w in table.of("a")] == [0.0, 3.0]


def test_set_usage_per_account_and_bad_values():
    clock = Clock()
    table = UsageTable(None, clock)
    table.set("a", 10080, used_percent=50, resets_in=60)
    table.set("a", 10080, step=2)
    assert table.of("a") == [{"minutes": 10080, "used_percent": 50.0, "resets_at": NOW + 60,
                              "step": 2.0}]
    assert table.of("b") == []
    with pytest.raises(ValueError, match="0 to 100"):
        table.set("a", 300, used_percent=101)
    with pytest.raises(ValueError, match="one minute"):
        table.set("a", 0)


def test_codex_headers_read_back_keyed_by_length():
    table = UsageTable(None, Clock())
    table.set("a", 10080, used_percent=20, resets_in=86400)  # a weekly-only plan: primary
    reply = served()
    table.charge("a", "chatgpt", reply, websocket=False)
    assert reply.headers["x-codex-primary-window-minutes"] == "10080"
    assert from_headers(reply.headers, NOW).windows == (Window(10080, 20.0, NOW + 86400),)


def test_anthropic_headers_read_back_and_rejected_cools_until_reset():
    clock = Clock()
    table = UsageTable(None, clock)
    table.set("a", 300, used_percent=95, resets_in=1800)
    table.set("a", 10080, used_percent=30, resets_in=86400)
    reply = served()
    table.charge("a", "anthropic", reply, websocket=False)
    h = reply.headers
    assert h["anthropic-ratelimit-unified-5h-status"] == "allowed_warning"
    assert h["anthropic-ratelimit-unified-representative-claim"] == "five_hour"
    assert {w.key: w.used_percent for w in from_headers(h, NOW).windows} == {
        ("", 300): 95.0, ("", 10080): 30.0}
    table.set("a", 300, used_percent=100)
    refused = table.refuse("a", "anthropic")
    assert refused is not None and refused.status == 429
    assert refused.headers["anthropic-ratelimit-unified-status"] == "rejected"
    outcome = classify(429, refused.headers, refused.body, NOW)
    assert outcome.kind is Kind.QUOTA and outcome.reset == NOW + 1800


def test_the_event_goes_where_codex_reads_it():
    table = UsageTable(UsagePlan(), Clock())
    for family, websocket, expected in (("chatgpt", False, True), ("openai", False, False),
                                        ("openai", True, True), ("anthropic", True, False)):
        reply = served()
        reply.events = [b"data: {}\n\n"]
        table.charge("a", family, reply, websocket=websocket)
        has = reply.events[0].startswith(b"event: codex.rate_limits")
        assert has is expected, (family, websocket)


# ---- through the HTTP server ---------------------------------------------------------
@pytest.fixture
def fake() -> Any:
    with make_fake(usage=UsagePlan(windows=(300, 10080), steps=(10.0, 1.0))) as f:
        yield f


def test_every_provider_answer_carries_its_windows(fake: FakeUpstream):
    with httpx2.Client(base_url=fake.url, trust_env=False, timeout=10) as http:
        r = http.post("/v1/responses", headers=OA, json={"model": "gpt-fake", "input": "hi"})
        assert r.headers["x-codex-primary-used-percent"] == "10"
        r = http.post("/v1/messages", headers=ANT, json={
            "model": "claude-fake", "max_tokens": 5, "messages": [{"role": "user",
                                                                   "content": "hi"}]})
        assert r.headers["anthropic-ratelimit-unified-5h-utilization"] == "0.1"
        r = http.post("/v1/messages/count_tokens", headers=ANT, json={
            "model": "claude-fake", "messages": [{"role": "user", "content": "hi"}]})
        assert "anthropic-ratelimit-unified-5h-utilization" not in r.headers  # not metered
        body = {"model": "gpt-5-codex", "input": "hi", "stream": True}
        with http.stream("POST", "/backend-api/codex/responses", headers=CHATGPT,
                         json=body) as r:
            lines = [line for line in r.iter_lines() if line.startswith("data: ")]
        event = json.loads(lines[0][6:])
        assert from_codex_event(event, NOW).windows[0].used_percent == 10
    assert [w["used_percent"] for w in fake.usage_of("openai-a")] == [10.0, 1.0]


def test_control_endpoint_sets_a_window_and_the_429_follows(fake: FakeUpstream):
    with httpx2.Client(base_url=fake.url, trust_env=False, timeout=10) as http:
        r = http.post("/_fake/usage", json={"account": "openai-b", "minutes": 300,
                                            "used_percent": 95, "resets_in": 600})
        assert r.status_code == 200 and r.json()["used_percent"] == 95
        assert http.post("/_fake/usage", json={"account": "x", "minutes": 0}).status_code == 400
        ok = http.post("/v1/responses", headers={"authorization": "Bearer sk-test-openai-b"},
                       json={"model": "gpt-fake", "input": "hi"})
        assert ok.status_code == 200 and ok.headers["x-codex-primary-used-percent"] == "100"
        refused = http.post("/v1/responses", headers={"authorization": "Bearer sk-test-openai-b"},
                            json={"model": "gpt-fake", "input": "hi"})
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "usage_limit_reached"
    assert 590 <= refused.json()["error"]["resets_in_seconds"] <= 600
    log = fake.requests(account="openai-b")
    assert [(e["status"], e["error_code"]) for e in log] == [
        (200, None), (429, "usage_limit_reached")]


def test_websocket_turns_start_with_the_event(fake: FakeUpstream):
    url = f"ws://127.0.0.1:{fake.port}/v1/responses"
    with connect(url, proxy=None, additional_headers=OA) as ws:
        ws.send(json.dumps({"type": "response.create", "model": "gpt-fake", "input": "hi"}))
        first = json.loads(ws.recv(timeout=10))
    assert first["type"] == "codex.rate_limits"
    primary = first["rate_limits"]["primary"]
    assert (primary["used_percent"], primary["window_minutes"]) == (10.0, 300)
    assert 0 < primary["reset_after_seconds"] <= 300 * 60
