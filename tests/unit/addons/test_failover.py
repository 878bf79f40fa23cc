"""Health glue without processes: routing by health, in-flight counts, transparent retry with a
fake replay, provider-shaped errors. The e2e versions are in tests/e2e/test_failover.py."""

import asyncio
import json

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow, tutils

from stickyroute.core import plan as plan_module
from stickyroute.core.identify import SessionId
from stickyroute.core.outcome import Kind, Outcome
from tests.helpers import Clock, addons, flow

ACCOUNTS = """\
accounts:
  - {alias: oa, provider: openai, api_key: sk-acct-oa}
  - {alias: ob, provider: openai, api_key: sk-acct-ob}
  - {alias: an, provider: anthropic, api_key: sk-ant-acct}
"""
RATE_LIMITED = Outcome(Kind.RATE_LIMITED, "rate limited (429)", 1_000.0 + 30)


@pytest.fixture
def env(tmp_path):
    path = tmp_path / "accounts.yaml"
    path.write_text(ACCOUNTS)
    clock = Clock()
    route = addons(clock)
    answers: list[tuple[int, dict]] = []  # what the fake upstream answers, in order
    replayed: list[http.HTTPFlow] = []

    async def replay(f: http.HTTPFlow) -> None:
        """What ReplayHandler does, minus the network: the whole chain, then an answer."""
        replayed.append(f)
        f.live = True
        route.route.request(f)
        if f.response is None:
            status, headers = answers.pop(0) if answers else (200, {})
            f.response = tutils.tresp(status_code=status, content=b'{"ok":1}')
            f.response.headers.update(headers)
            fo.responseheaders(f)
        await fo.response(f)

    fo = route.failover
    fo.replay = replay
    with taddons.context(*route) as tctx:
        tctx.configure(route.options, sticky_accounts=str(path))
        yield route, fo, clock, answers, replayed, tctx


def answer(fo, f, status, headers=None, body=b'{"error":{"type":"x"}}', ctype="application/json"):
    f.response = tutils.tresp(status_code=status, content=body)
    f.response.headers["content-type"] = ctype
    for k, v in (headers or {}).items():
        f.response.headers[k] = v
    fo.responseheaders(f)
    asyncio.run(fo.response(f))


def routed(route, session="s1", **kw):
    f = flow(body={"model": "gpt-5", "input": "hi"}, headers=[("session-id", session)], **kw)
    f.live = True
    route.route.request(f)
    return f


def test_unhealthy_accounts_get_no_traffic(env):
    route, *_ = env
    route.state.health.record("oa", RATE_LIMITED, route.state.clock())
    assert {routed(route, f"s{i}").metadata["stickyroute"]["account"] for i in range(4)} == {"ob"}
    line = route.commands.accounts_command()[0]
    assert line.startswith("oa openai cooling (rate limited (429)) 30s left")


def test_every_account_cooling_answers_429_with_retry_after(env):
    route, *_ = env
    now = route.state.clock()
    route.state.health.record("oa", RATE_LIMITED, now)
    route.state.health.record("ob", Outcome(Kind.OVERLOADED, "upstream error (529)"), now)
    f = routed(route)
    assert f.response.status_code == 429 and f.response.headers["retry-after"] == "2"
    err = json.loads(f.response.content)["error"]
    assert "oa cooling (rate limited (429))" in err["message"]
    assert "ob cooling (upstream error (529))" in err["message"]
    assert "sk-acct" not in f.response.text


def test_all_disabled_answers_503(env):
    route, *_ = env
    for a in ("oa", "ob"):
        route.state.health.disable(a, "operator", route.state.clock())
    f = routed(route)
    assert f.response.status_code == 503 and "retry-after" not in f.response.headers
    assert "oa disabled (operator)" in f.response.text


def test_hard_pin_never_moves_and_says_why(env, monkeypatch):
    route, *_ = env
    f1 = routed(route)
    home = f1.metadata["stickyroute"]["account"]
    route.state.health.record(home, RATE_LIMITED, route.state.clock())
    hard = SessionId(route.state.pins.__iter__().__next__().session, "chain", hard=True)
    monkeypatch.setattr(plan_module, "identify", lambda *a, **k: hard)
    f2 = flow(body={"model": "gpt-5", "input": "x", "previous_response_id": "resp_1"})
    f2.live = True
    route.route.request(f2)
    assert f2.response.status_code == 429 and f2.response.headers["retry-after"] == "30"
    assert f"{home!r}, which is unavailable; it cannot move: {home} cooling" in f2.response.text


def test_hard_pin_with_only_encrypted_reasoning_moves_and_drops_it(env, monkeypatch):
    route, *_ = env
    f1 = routed(route)
    home = f1.metadata["stickyroute"]["account"]
    route.state.health.record(home, RATE_LIMITED, route.state.clock())
    hard = SessionId(next(iter(route.state.pins)).session, "chain", hard=True)
    monkeypatch.setattr(plan_module, "identify", lambda *a, **k: hard)
    history = [{"role": "user", "content": "hi"},
               {"type": "reasoning", "id": "rs_1", "encrypted_content": "sealed-by-home",
                "summary": []},
               {"role": "user", "content": "more"}]
    f2 = flow(body={"model": "gpt-5", "input": history, "store": False})
    f2.live = True
    route.route.request(f2)
    meta = f2.metadata["stickyroute"]
    assert meta["affinity"] == "moved" and meta["moved_from"] == home
    assert meta["dropped_reasoning"] == 1 and "dropped 1 encrypted reasoning" in f2.comment
    sent = json.loads(f2.request.content)
    assert [i.get("type") for i in sent["input"]] == [None, None]
    # The next turn still carries home's item (and a new one): only home's is dropped again.
    route.state.health.enable(home, route.state.clock())
    history += [{"type": "reasoning", "id": "rs_2", "encrypted_content": "new-home"}]
    f3 = flow(body={"model": "gpt-5", "input": history, "store": False})
    f3.live = True
    route.route.request(f3)
    assert f3.metadata["stickyroute"]["affinity"] == "hit"
    assert [i.get("id") for i in json.loads(f3.request.content)["input"]] == [None, None, "rs_2"]


def test_inflight_goes_up_once_and_down_once(env):
    route, fo, *_ = env
    f1, f2, f3 = routed(route, "a"), routed(route, "b"), routed(route, "c")
    total = lambda: sum(route.state.ledger[a].inflight for a in ("oa", "ob"))  # noqa: E731
    assert total() == 3
    answer(fo, f1, 200)
    f2.error = tflow.terr()  # e.g. the client disconnected mid-stream
    f2.error.msg = "Client disconnected."
    fo.error(f2)
    fo.error(f2)  # a second hook call must not count twice
    assert total() == 1
    f3.error = tflow.terr()
    f3.error.msg = "Server disconnected."
    fo.error(f3)
    assert total() == 0 and len(route.failover.kept) == 0
    acct3 = f3.metadata["stickyroute"]["account"]
    assert route.state.health.describe(acct3, route.state.clock()).state == "cooling"
    acct2 = f2.metadata["stickyroute"]["account"]
    if acct2 != acct3:
        assert route.state.health.available(acct2, route.state.clock())  # the client's fault, not theirs


def test_least_inflight_strategy_uses_the_counts(env):
    route, _, _, _, _, tctx = env
    tctx.configure(route.options, sticky_strategy="least-inflight")
    busy = routed(route, "x").metadata["stickyroute"]["account"]
    assert {routed(route, f"y{i}").metadata["stickyroute"]["account"] for i in range(1)} == (
        {"oa", "ob"} - {busy})


def test_new_sessions_avoid_an_account_near_its_limit(env):
    route, fo, *_ = env
    f = routed(route, "first")
    full = f.metadata["stickyroute"]["account"]
    answer(fo, f, 200, {"x-ratelimit-remaining-requests": "1",
                        "x-ratelimit-limit-requests": "100"})
    assert route.state.health.describe(full, route.state.clock()).state == "healthy"
    assert {routed(route, f"n{i}").metadata["stickyroute"]["account"] for i in range(4)} == (
        {"oa", "ob"} - {full})
    assert routed(route, "first").metadata["stickyroute"]["account"] == full  # pinned stays


def test_responseheaders_holds_errors_back_and_streams_sse(env):
    route, fo, *_ = env
    f = routed(route)
    f.response = tutils.tresp(status_code=429)
    f.response.stream = True  # e.g. another addon wanted it streamed
    fo.responseheaders(f)
    assert f.response.stream is False
    g = routed(route, "sse")
    g.response = tutils.tresp(status_code=200)
    g.response.headers["content-type"] = "text/event-stream; charset=utf-8"
    fo.responseheaders(g)
    assert g.response.stream is True


@pytest.mark.parametrize("status", [429, 500, 529, 401, 403])
def test_transparent_retry_on_another_account(env, status):
    route, fo, clock, answers, replayed, _ = env
    f = routed(route)
    first = f.metadata["stickyroute"]["account"]
    answer(fo, f, status, {"retry-after": "20"})
    assert f.response.status_code == 200 and f.response.content == b'{"ok":1}'
    (retry,) = replayed
    assert retry.request.headers["authorization"] != f.request.headers["authorization"]
    assert retry.metadata["stickyroute.retry"] == {"of": f.id, "attempt": 1, "exclude": [first]}
    other = retry.metadata["stickyroute"]["account"]
    assert other != first and retry.metadata["stickyroute"]["affinity"] == "moved"
    assert f.metadata["stickyroute"]["retried"]["served_by"] == other
    assert "retried: " in f.comment
    assert routed(route).metadata["stickyroute"]["account"] == other  # re-pinned
    state = route.state.health.describe(first, clock()).state
    assert state == ("disabled" if status in (401, 403) else "cooling")
    assert sum(route.state.ledger[a].inflight for a in ("oa", "ob")) == 1  # only the last probe


def test_retry_gives_up_with_a_clear_error_when_everything_fails(env):
    route, fo, _, answers, replayed, _ = env
    answers.append((500, {}))
    f = routed(route)
    answer(fo, f, 429)
    # oa and ob both failed; the next attempt finds no account and answers for itself.
    assert len(replayed) == 2
    assert f.response.status_code == 429 and "retry-after" in f.response.headers
    assert "rate limited" in f.response.text and "upstream error (500)" in f.response.text


@pytest.mark.parametrize("status", [200, 400, 404])
def test_no_retry_for_success_or_the_clients_own_errors(env, status):
    route, fo, _, _, replayed, _ = env
    f = routed(route)
    answer(fo, f, status)
    assert replayed == [] and f.response.status_code == status


def test_no_retry_for_hard_pins(env, monkeypatch):
    route, fo, _, _, replayed, _ = env
    monkeypatch.setattr(plan_module, "identify",
                        lambda *a, **k: SessionId("openai/x/h", "chain", hard=True))
    f = flow(body={"model": "gpt-5", "input": "x", "previous_response_id": "resp_1"})
    f.live = True
    route.route.request(f)
    answer(fo, f, 429, {"retry-after": "5"})
    assert replayed == [] and f.response.status_code == 429


def test_accounts_file_change_enables_a_revoked_account(env, tmp_path):
    route, *_ = env
    route.state.health.record("oa", Outcome(Kind.REVOKED, "credential rejected (401)"), route.state.clock())
    route.state.health.record("ob", Outcome(Kind.REVOKED, "credential rejected (401)"), route.state.clock())
    (tmp_path / "accounts.yaml").write_text(ACCOUNTS.replace("sk-acct-oa", "sk-acct-oa2")
                                            + "  - {alias: new, provider: openai, api_key: k}\n")
    assert route.options.reload_accounts_if_changed()
    assert route.state.health.available("oa", route.state.clock())
    assert not route.state.health.available("ob", route.state.clock())  # its entry did not change


def test_hard_pin_held_only_by_encrypted_reasoning_is_retried_elsewhere(env, monkeypatch):
    """Codex with store=false: every later turn is chain-hard, yet its state is portable."""
    route, fo, _, _, replayed, _ = env
    first = routed(route)
    home = first.metadata["stickyroute"]["account"]
    hard = SessionId(next(iter(route.state.pins)).session, "chain:reasoning", hard=True)
    monkeypatch.setattr(plan_module, "identify", lambda *a, **k: hard)
    history = [{"role": "user", "content": "hi"},
               {"type": "reasoning", "id": "rs_1", "encrypted_content": "sealed-by-home"},
               {"role": "user", "content": "more"}]
    f = flow(body={"model": "gpt-5", "input": history, "store": False})
    f.live = True
    route.route.request(f)
    assert f.metadata["stickyroute"]["hard"] and f.metadata["stickyroute"]["account"] == home
    answer(fo, f, 429, {"retry-after": "20"})
    (retry,) = replayed
    meta = retry.metadata["stickyroute"]
    assert meta["affinity"] == "moved" and meta["dropped_reasoning"] == 1
    assert f.response.status_code == 200


def test_operator_enable_takes_new_sessions_at_once(env):
    route, *_ = env
    route.state.health.disable("oa", "by hand", route.state.clock())
    route.state.health.enable("oa", route.state.clock())
    assert route.state.health.takes_new("oa", route.state.clock())
