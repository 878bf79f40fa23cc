"""The admin API, metrics, views and commands driven directly: no sockets, a fake clock."""

import json
from urllib.parse import quote

import pytest

from stickyroute.admin.api import AdminApi
from stickyroute.admin.metrics import registry_for, render
from stickyroute.core.health import HealthView, State
from tests.helpers import ACCOUNTS, Clock, configured, flow

TOKEN = "admin-token-123"
AUTH = {"authorization": f"Bearer {TOKEN}"}
SECRETS = ("sk-acct-oa", "sk-acct-ob", "sk-ant-acct", "tok", "id-1")


@pytest.fixture
def env(tmp_path):
    p = tmp_path / "accounts.yaml"
    p.write_text(ACCOUNTS)
    clock = Clock()
    with configured(p, clock, sticky_admin_token=TOKEN) as (sticky, _):
        admin = sticky.admin
        api = AdminApi(sticky.state, TOKEN, lambda: b"<html>page</html>", admin.metrics)
        yield sticky, admin, api, clock


def call(api, method, target, body=b"", headers=AUTH):
    reply = api.handle(method, target, headers, body)
    data = json.loads(reply.body) if reply.content_type == "application/json" else reply.body
    return reply, data


def pin(sticky, session, host="api.openai.com"):
    f = flow(host=host, path="/v1/responses" if "openai" in host else "/v1/messages",
             body={"model": "m", "input": "x"}, headers=[("session-id", session)])
    sticky.route.request(f)
    return f.metadata["stickyroute"]


@pytest.mark.parametrize("headers", [
    {}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN},
    {"authorization": f"Basic {TOKEN}"}, {"authorization": "Bearer "},
])
@pytest.mark.parametrize("method,target", [
    ("GET", "/api/state"), ("GET", "/api/sessions"), ("GET", "/api/accounts"),
    ("GET", "/metrics"), ("DELETE", "/api/sessions/x"), ("POST", "/api/accounts/oa/disable"),
    ("GET", "/api/nothing"),
])
def test_without_the_token_nothing_but_401(env, headers, method, target):
    sticky, _, api, _ = env
    pin(sticky, "conv-1")
    reply, data = call(api, method, target, headers=headers)
    assert reply.status == 401
    assert ("www-authenticate", 'Bearer realm="sticky"') in reply.headers
    assert set(data) == {"error"} and b"oa" not in reply.body and b"conv" not in reply.body
    assert not sticky.state.health.export_state()  # no account left rotation


def test_dashboard_page_needs_no_token_and_holds_no_data(env):
    _, _, api, _ = env
    reply = api.handle("GET", "/", {})
    assert reply.status == 200 and reply.body == b"<html>page</html>"
    assert any(k == "content-security-policy" for k, _ in reply.headers)
    assert api.handle("POST", "/", {}).status == 405


def test_the_real_dashboard_file_is_self_contained(env):
    _, admin, _, _ = env
    page = admin.page().decode()
    assert "<script>" in page and "Authorization" in page
    assert "http://" not in page and "https://" not in page  # no CDN, nothing from elsewhere


def test_state(env):
    sticky, _, api, clock = env
    a = pin(sticky, "conv-1")["account"]
    pin(sticky, "conv-1")
    pin(sticky, "conv-2", host="api.anthropic.com")
    clock.t += 5
    reply, state = call(api, "GET", "/api/state")
    assert reply.status == 200
    assert state["uptime"] == 5
    assert state["sessions"] == {"count": 2, "byAlias": {a: 1, "an": 1}, "shared": None}
    by_alias = {x["alias"]: x for x in state["accounts"]}
    assert set(by_alias) == {"oa", "ob", "an", "cg"}
    assert by_alias[a]["requests"] == 2 and by_alias[a]["affinity"] == {"new": 1, "hit": 1}
    assert by_alias["cg"]["health"]["state"] == "disabled"
    assert by_alias["oa"]["health"] == {"state": "healthy", "reason": None, "until": None}
    assert state["totals"]["requests"] == 3


def test_sessions_paging_and_filter(env):
    sticky, _, api, clock = env
    for i in range(5):
        pin(sticky, f"conv-{i}")
        clock.t += 1
    _, page = call(api, "GET", "/api/sessions?limit=2&offset=1")
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 1
    assert [s["id"].rsplit("/", 1)[-1] for s in page["sessions"]] == ["conv-3", "conv-2"]
    assert page["sessions"][0]["idle"] == 2
    alias = page["sessions"][0]["alias"]
    _, only = call(api, "GET", f"/api/sessions?account={alias}")
    assert only["total"] == sticky.state.pins.sessions_per_alias()[alias]
    assert all(s["alias"] == alias for s in only["sessions"])


@pytest.mark.parametrize("target,status", [
    ("/api/sessions?limit=0", 400), ("/api/sessions?limit=1001", 400),
    ("/api/sessions?limit=x", 400), ("/api/sessions?offset=-1", 400),
    ("/api/sessions?account=nope", 404), ("/api/sessions?account=", 404),
    ("/api/accounts/nope", 404), ("/api/nothing", 404), ("/api/sessions/%ff", 400),
])
def test_bad_requests_get_clear_json_errors(env, target, status):
    _, _, api, _ = env
    reply, data = call(api, "GET" if "sessions/" not in target else "DELETE", target)
    assert reply.status == status
    assert data["error"]["message"]


def test_wrong_method_is_405_with_allow(env):
    _, _, api, _ = env
    reply, _ = call(api, "PUT", "/api/state")
    assert reply.status == 405 and ("allow", "GET") in reply.headers


@pytest.mark.parametrize("form", ["full", "encoded", "value", "short"])
def test_evict_one_session_by_any_form(env, form):
    sticky, _, api, _ = env
    pin(sticky, "conversation-0001")
    key = next(iter(sticky.state.pins)).session
    ident = {"full": key, "encoded": quote(key, safe=""), "value": "conversation-0001",
             "short": "ion-0001"}[form]
    reply, data = call(api, "DELETE", f"/api/sessions/{ident}")
    assert reply.status == 200 and data == {"evicted": [key]}
    assert len(sticky.state.pins) == 0
    reply, _ = call(api, "DELETE", f"/api/sessions/{ident}")
    assert reply.status == 404


def test_evicted_session_is_pinned_again(env):
    sticky, _, api, _ = env
    pin(sticky, "conv-1")
    call(api, "DELETE", "/api/sessions/conv-1")
    assert pin(sticky, "conv-1")["affinity"] == "new"


def test_evict_account(env):
    sticky, _, api, _ = env
    for i in range(4):
        pin(sticky, f"conv-{i}")
    reply, data = call(api, "DELETE", "/api/accounts/oa/sessions")
    assert reply.status == 200 and data["alias"] == "oa"
    assert "oa" not in sticky.state.pins.sessions_per_alias() and data["evicted"] >= 1
    assert call(api, "DELETE", "/api/accounts/nope/sessions")[0].status == 404


def test_disable_stops_new_traffic_and_enable_brings_it_back(env):
    sticky, _, api, _ = env
    reply, view = call(api, "POST", "/api/accounts/oa/disable", b'{"reason": "quota"}')
    assert reply.status == 200
    assert view["health"] == {"state": "disabled", "reason": "quota", "until": None}
    assert {pin(sticky, f"c{i}")["account"] for i in range(6)} == {"ob"}
    reply, view = call(api, "POST", "/api/accounts/oa/enable")
    assert view["health"]["state"] == "healthy"
    assert "oa" in {pin(sticky, f"d{i}")["account"] for i in range(6)}


def test_disable_moves_a_pinned_session(env):
    sticky, _, api, _ = env
    first = pin(sticky, "conv-1")["account"]
    call(api, "POST", f"/api/accounts/{first}/disable")
    moved = pin(sticky, "conv-1")
    assert moved["affinity"] == "moved" and moved["moved_from"] == first


def test_disabling_the_only_account_answers_503(env):
    sticky, _, api, _ = env
    call(api, "POST", "/api/accounts/an/disable")
    f = flow(host="api.anthropic.com", path="/v1/messages", body={"model": "m"})
    sticky.route.request(f)
    assert f.response is not None and f.response.status_code == 503


@pytest.mark.parametrize("body", [b"{", b"[]", b'{"reason": 3}', b'{"reason": " "}',
                                  b'{"reason": "' + b"x" * 201 + b'"}'])
def test_disable_rejects_bad_bodies(env, body):
    sticky, _, api, _ = env
    assert call(api, "POST", "/api/accounts/oa/disable", body)[0].status == 400
    assert not sticky.state.health.export_state()  # no account left rotation


def test_disable_and_enable_go_through_health(env):
    sticky, _, api, _ = env

    class Health:
        def __init__(self):
            self.calls = []

        def describe(self, alias, now):
            return HealthView(State.COOLING, "429", now + 30)

        def disable(self, alias, reason, now):
            self.calls.append(("disable", alias, reason))

        def enable(self, alias, now):
            self.calls.append(("enable", alias))
            return True

    sticky.state.health = Health()
    _, view = call(api, "POST", "/api/accounts/oa/disable", b'{"reason": "r"}')
    call(api, "POST", "/api/accounts/oa/enable")
    assert sticky.state.health.calls == [("disable", "oa", "r"), ("enable", "oa")]
    assert view["health"]["state"] == "cooling" and view["cooldown_left"] == 30
    text = render(registry_for(sticky.state))[0].decode()
    assert 'stickyroute_cooldown_seconds{account="oa"} 30.0' in text


def test_metrics(env):
    sticky, _, api, clock = env
    a = pin(sticky, "conv-1")["account"]
    pin(sticky, "conv-1")
    sticky.state.ledger[a].tokens_in, sticky.state.ledger[a].tokens_cached = 100, 80
    clock.t += 10_000
    sticky.sweeper.sweep()
    reply, text = call(api, "GET", "/metrics")
    assert reply.status == 200 and reply.content_type.startswith("text/plain; version=0.0.4")
    text = text.decode()
    for line in (f'stickyroute_requests_total{{account="{a}",affinity="hit"}} 1.0',
                 f'stickyroute_requests_total{{account="{a}",affinity="moved"}} 0.0',
                 f'stickyroute_tokens_total{{account="{a}",kind="cached"}} 80.0',
                 f'stickyroute_pins{{account="{a}"}} 0.0',
                 'stickyroute_account_state{account="cg",provider="chatgpt",state="disabled"} 1.0',
                 "stickyroute_sweep_duration_seconds_count 1.0",
                 "stickyroute_swept_pins_total 1.0", "stickyroute_sessions 0.0"):
        assert line in text


def test_no_credential_in_any_answer(env):
    sticky, _, api, _ = env
    for i in range(3):
        pin(sticky, f"conv-{i}")
    pin(sticky, "conv-x", host="api.anthropic.com")
    answers = [api.handle(m, t, AUTH, b"") for m, t in (
        ("GET", "/"), ("GET", "/api/state"), ("GET", "/api/sessions"), ("GET", "/api/accounts"),
        ("GET", "/api/accounts/cg"), ("GET", "/metrics"), ("POST", "/api/accounts/oa/disable"),
        ("POST", "/api/accounts/oa/enable"))]
    assert all(r.status == 200 for r in answers)
    secrets = sticky.state.accounts.secrets()
    assert set(SECRETS) <= set(secrets)
    for reply in answers:
        for secret in secrets:
            if secret == "tok":  # too short to be meaningful: "token" is a word on the page
                continue
            assert secret.encode() not in reply.body


def test_state_shows_shared_counts_and_evictions_reach_the_store(env):
    sticky, _, api, _ = env
    seen = []

    class SharedStore:
        shared = False

        def shared_sessions(self):
            return {"oa": 7, "ob": 3}

        def changed(self, pin, how):
            seen.append((pin.session.rsplit("/", 1)[-1], how))

    sticky.state.store = SharedStore()
    pin(sticky, "conv-1")
    pin(sticky, "conv-2")
    assert call(api, "GET", "/api/state")[1]["sessions"]["shared"] == {"oa": 7, "ob": 3}
    call(api, "DELETE", "/api/sessions/conv-1")
    alias = next(iter(sticky.state.pins)).alias
    call(api, "DELETE", f"/api/accounts/{alias}/sessions")
    assert [x for x in seen if x[1] == "removed"] == [("conv-1", "removed"), ("conv-2", "removed")]
