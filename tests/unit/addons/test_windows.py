"""The usage-window and warm-prefix glue without processes: windows learnt from answer headers
and Codex's codex.rate_limits event (SSE and WebSocket), the drain log lines, what routing
records (pin prefix and cache lifetime, warm prefixes, `placed`), the sweep, and settings and
accounts taken into service. The e2e version is tests/e2e/test_windows.py."""

import asyncio
import json
import logging

import pytest
from mitmproxy import http
from mitmproxy.test import tutils

from stickyroute.config.accounts import parse_accounts
from stickyroute.core.prefix import Prefix
from tests.helpers import Clock, configured, flow, resp_body, ws_flow, ws_send

ACCOUNTS = """\
accounts:
  - {alias: oa, provider: openai, api_key: sk-acct-oa}
  - {alias: ob, provider: openai, api_key: sk-acct-ob}
  - {alias: cg, provider: chatgpt, api_key: tok-cg, account_id: id-1}
"""
SYSTEM = "You are a careful coding agent. " * 200
NOW = 1_000.0


def codex(used: float, minutes: int = 300) -> dict[str, str]:
    return {"x-codex-primary-used-percent": f"{used:g}",
            "x-codex-primary-window-minutes": str(minutes),
            "x-codex-primary-reset-at": str(int(NOW) + 3600)}


@pytest.fixture
def env(tmp_path):
    p = tmp_path / "accounts.yaml"
    p.write_text(ACCOUNTS)
    clock = Clock(NOW)
    with configured(p, clock) as (a, tctx):
        yield a, clock, tctx


def routed(a, session, text="hi", host="api.openai.com", path="/v1/responses"):
    f = flow(host=host, path=path,
             body={"model": "gpt-5", "instructions": SYSTEM, "input": text},
             headers=[("session-id", session)])
    f.live = True
    a.route.request(f)
    return f


def answer(a, f, status=200, headers=None, body=b'{"ok":1}'):
    f.response = tutils.tresp(status_code=status, content=body)
    f.response.headers["content-type"] = "application/json"
    for k, v in (headers or {}).items():
        f.response.headers[k] = v
    a.follow.responseheaders(f)
    a.failover.responseheaders(f)
    a.follow.response(f)
    asyncio.run(a.failover.response(f))


def drain_lines(caplog):
    return [r.message.removeprefix("stickyroute: ") for r in caplog.records
            if "draining" in r.message]


# ---- the way back ----------------------------------------------------------------------
def test_answer_headers_feed_the_windows_and_a_drain_is_said_once_each_way(env, caplog):
    a, clock, _ = env
    caplog.set_level(logging.INFO, "stickyroute")
    f = routed(a, "s1")
    alias = f.metadata["stickyroute"]["account"]
    answer(a, f, headers=codex(95))
    assert a.state.windows.draining(alias, NOW)
    answer(a, routed(a, "s1"), headers=codex(96))
    assert drain_lines(caplog) == [
        f"account {alias} is draining: 95% of its 300-minute window used; new conversations "
        f"go elsewhere"]
    answer(a, routed(a, "s1"), headers=codex(10))
    assert drain_lines(caplog)[-1] == f"account {alias} stopped draining"
    assert len(drain_lines(caplog)) == 2


def test_a_codex_rate_limits_event_in_a_stream_feeds_the_windows(env):
    a, _, _ = env
    f = routed(a, "s1", host="chatgpt.com", path="/backend-api/codex/responses")
    assert f.metadata["stickyroute"]["account"] == "cg"
    event = {"type": "codex.rate_limits", "rate_limits": {
        "primary": {"used_percent": 97, "window_minutes": 300, "reset_after_seconds": 600}}}
    stream = (f"event: codex.rate_limits\ndata: {json.dumps(event)}\n\n"
              "data: [DONE]\n\n").encode()
    f.response = http.Response.make(200, b"", {"content-type": "text/event-stream"})
    a.follow.responseheaders(f)
    f.response.stream(stream)
    f.response.stream(b"")
    a.follow.response(f)
    assert [(w.minutes, w.used_percent, w.resets_at) for w in a.state.windows.windows(
        "cg", NOW)] == [(300, 97.0, NOW + 600)]
    assert a.state.windows.draining("cg", NOW)


def test_a_codex_rate_limits_frame_on_a_websocket_feeds_the_windows(env):
    a, _, _ = env
    f = ws_flow(a, [("session-id", "ws-1")])
    alias = f.metadata["stickyroute"]["account"]
    ws_send(a.follow, f, {"type": "response.create", "model": "gpt-5", "input": "hi"}, True)
    ws_send(a.follow, f, {"type": "codex.rate_limits", "rate_limits": {
        "limit_reached": True, "primary": {"used_percent": 100, "window_minutes": 300,
                                           "reset_at": NOW + 900}}}, False)
    ws_send(a.follow, f, {"type": "response.completed", "response": resp_body("resp_w")}, False)
    assert a.state.windows.limited(alias, NOW) and not a.state.windows.limited(alias, NOW + 900)


# ---- the way in ------------------------------------------------------------------------
def test_routing_records_the_prefix_its_cache_lifetime_and_how_it_placed(env):
    a, _, _ = env
    f = routed(a, "s1")
    meta = f.metadata["stickyroute"]
    st = a.state
    pin = st.pins.get(meta["session_key"], NOW)
    assert pin is not None and pin.prefix is not None and pin.cache_ttl == 600
    assert st.warm.warm(pin.prefix, NOW) == {meta["account"]: NOW + 600}  # at routing time
    assert meta["placed"] == "load"
    g = routed(a, "s2", "another task")
    assert g.metadata["stickyroute"]["account"] == meta["account"]
    assert g.metadata["stickyroute"]["placed"] == "warm" and "(warm cache)" in g.comment
    assert st.warm.count(meta["account"]) == 1
    hit = routed(a, "s1", "turn 2")
    assert hit.metadata["stickyroute"]["placed"] is None


def test_new_conversations_leave_a_draining_account_and_pins_stay(env):
    a, clock, _ = env
    f = routed(a, "s1")
    alias = f.metadata["stickyroute"]["account"]
    answer(a, f, headers=codex(95))
    other = {"oa": "ob", "ob": "oa"}[alias]
    assert {routed(a, f"n{i}", f"new {i}").metadata["stickyroute"]["account"]
            for i in range(4)} == {other}
    clock.t += 60
    assert routed(a, "s1", "turn 2").metadata["stickyroute"]["account"] == alias
    clock.t += 700  # idle past OpenAI's cache lifetime on a draining account: placed afresh
    moved = routed(a, "s1", "turn 3").metadata["stickyroute"]
    assert moved["account"] == other and moved["affinity"] == "moved"


def test_a_limit_reached_answer_cools_until_the_window_resets(env, caplog):
    a, _, _ = env
    caplog.set_level(logging.INFO, "stickyroute")
    f = routed(a, "s1")
    alias = f.metadata["stickyroute"]["account"]
    body = json.dumps({"error": {"type": "usage_limit_reached", "resets_at": int(NOW) + 5400,
                                 "resets_in_seconds": 5400}}).encode()
    a.failover.replay = _no_replay
    answer(a, f, 429, {**codex(100)}, body)
    health = a.state.health.describe(alias, NOW)
    assert health.state == "cooling" and health.until == NOW + 5400
    assert a.state.windows.state(alias, NOW) == "limited"
    assert any(f"account {alias} healthy -> cooling for 5400 s: quota exhausted" in r.message
               for r in caplog.records)


async def _no_replay(flow: http.HTTPFlow) -> None:
    flow.response = http.Response.make(503, b"{}", {})


# ---- state taken into service and swept -----------------------------------------------
def test_settings_accounts_and_sweep(env):
    a, clock, tctx = env
    st = a.state
    tctx.configure(a.options, sticky_drain_at=50)
    assert st.windows.drain_at == 50
    routed(a, "s1")
    answer(a, routed(a, "s2", "two"), headers=codex(60))
    assert len(st.warm) == 1 and len(st.windows) == 1
    st.use_accounts(parse_accounts("accounts:\n  - {alias: cg, provider: chatgpt, "
                                   "api_key: t, account_id: i}\n"))
    assert len(st.warm) == 0 and len(st.windows) == 0
    st.warm.touch("cg", Prefix("p", 60), clock.t)
    clock.t += 61
    a.sweeper.sweep()
    assert len(st.warm) == 0
    st.warm.touch("cg", Prefix("q", 60), clock.t)
    clock.t += 61
    asyncio.run(a.sweeper.sweep_in_slices())
    assert len(st.warm) == 0
