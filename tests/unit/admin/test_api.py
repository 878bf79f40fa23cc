"""admin/api.py driven directly: no sockets, a fake clock (the `admin_env` fixture)."""

from urllib.parse import quote

import pytest

from stickyroute.admin.metrics import registry_for, render
from stickyroute.core.health import HealthView, State
from tests.helpers import ADMIN_AUTH, ADMIN_TOKEN, api_call, flow, route_session

SECRETS = ("sk-acct-oa", "sk-acct-ob", "sk-ant-acct", "tok", "id-1")


@pytest.mark.parametrize("headers", [
    {}, {"authorization": "Bearer wrong"}, {"authorization": ADMIN_TOKEN},
    {"authorization": f"Basic {ADMIN_TOKEN}"}, {"authorization": "Bearer "},
])
@pytest.mark.parametrize("method,target", [
    ("GET", "/api/state"), ("GET", "/api/sessions"), ("GET", "/api/accounts"),
    ("GET", "/metrics"), ("DELETE", "/api/sessions/x"), ("POST", "/api/accounts/oa/disable"),
    ("GET", "/api/nothing"),
])
def test_without_the_token_nothing_but_401(admin_env, headers, method, target):
    sticky, _, api, _ = admin_env
    route_session(sticky, "conv-1")
    reply, data = api_call(api, method, target, headers=headers)
    assert reply.status == 401
    assert ("www-authenticate", 'Bearer realm="sticky"') in reply.headers
    assert set(data) == {"error"} and b"oa" not in reply.body and b"conv" not in reply.body
    assert not sticky.state.health.export_state()  # no account left rotation


def test_dashboard_page_needs_no_token_and_holds_no_data(admin_env):
    _, _, api, _ = admin_env
    reply = api.handle("GET", "/", {})
    assert reply.status == 200 and reply.body == b"<html>page</html>"
    assert any(k == "content-security-policy" for k, _ in reply.headers)
    assert api.handle("POST", "/", {}).status == 405


def test_state(admin_env):
    sticky, _, api, clock = admin_env
    a = route_session(sticky, "conv-1")["account"]
    route_session(sticky, "conv-1")
    route_session(sticky, "conv-2", host="api.anthropic.com")
    clock.t += 5
    reply, state = api_call(api, "GET", "/api/state")
    assert reply.status == 200
    assert state["uptime"] == 5
    assert state["sessions"] == {"count": 2, "byAlias": {a: 1, "an": 1}, "shared": None}
    by_alias = {x["alias"]: x for x in state["accounts"]}
    assert set(by_alias) == {"oa", "ob", "an", "cg"}
    assert by_alias[a]["requests"] == 2 and by_alias[a]["affinity"] == {"new": 1, "hit": 1}
    assert by_alias["cg"]["health"]["state"] == "disabled"
    assert by_alias["oa"]["health"] == {"state": "healthy", "reason": None, "until": None}
    assert state["totals"]["requests"] == 3


def test_sessions_paging_and_filter(admin_env):
    sticky, _, api, clock = admin_env
    for i in range(5):
        route_session(sticky, f"conv-{i}")
        clock.t += 1
    _, page = api_call(api, "GET", "/api/sessions?limit=2&offset=1")
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 1
    assert [s["id"].rsplit("/", 1)[-1] for s in page["sessions"]] == ["conv-3", "conv-2"]
    assert page["sessions"][0]["idle"] == 2
    alias = page["sessions"][0]["alias"]
    _, only = api_call(api, "GET", f"/api/sessions?account={alias}")
    assert only["total"] == sticky.state.pins.sessions_per_alias()[alias]
    assert all(s["alias"] == alias for s in only["sessions"])


@pytest.mark.parametrize("target,status", [
    ("/api/sessions?limit=0", 400), ("/api/sessions?limit=1001", 400),
    ("/api/sessions?limit=x", 400), ("/api/sessions?offset=-1", 400),
    ("/api/sessions?account=nope", 404), ("/api/sessions?account=", 404),
    ("/api/accounts/nope", 404), ("/api/nothing", 404), ("/api/sessions/%ff", 400),
])
def test_bad_requests_get_clear_json_errors(admin_env, target, status):
    _, _, api, _ = admin_env
    reply, data = api_call(api, "GET" if "sessions/" not in target else "DELETE", target)
    assert reply.status == status
    assert data["error"]["message"]


def test_wrong_method_is_405_with_allow(admin_env):
    _, _, api, _ = admin_env
    reply, _ = api_call(api, "PUT", "/api/state")
    assert reply.status == 405 and ("allow", "GET") in reply.headers


@pytest.mark.parametrize("form", ["full", "encoded", "value", "short"])
def test_evict_one_session_by_any_form(admin_env, form):
    sticky, _, api, _ = admin_env
    route_session(sticky, "conversation-0001")
    key = next(iter(sticky.state.pins)).session
    ident = {"full": key, "encoded": quote(key, safe=""), "value": "conversation-0001",
             "short": "ion-0001"}[form]
    reply, data = api_call(api, "DELETE", f"/api/sessions/{ident}")
    assert reply.status == 200 and data == {"evicted": [key]}
    assert len(sticky.state.pins) == 0
    reply, _ = api_call(api, "DELETE", f"/api/sessions/{ident}")
    assert reply.status == 404


def test_evicted_session_is_pinned_again(admin_env):
    sticky, _, api, _ = admin_env
    route_session(sticky, "conv-1")
    api_call(api, "DELETE", "/api/sessions/conv-1")
    assert route_session(sticky, "conv-1")["affinity"] == "new"


def test_evict_account(admin_env):
    sticky, _, api, _ = admin_env
    for i in range(4):
        route_session(sticky, f"conv-{i}")
    reply, data = api_call(api, "DELETE", "/api/accounts/oa/sessions")
    assert reply.status == 200 and data["alias"] == "oa"
    assert "oa" not in sticky.state.pins.sessions_per_alias() and data["evicted"] >= 1
    assert api_call(api, "DELETE", "/api/accounts/nope/sessions")[0].status == 404


def test_disable_stops_new_traffic_and_enable_brings_it_back(admin_env):
    sticky, _, api, _ = admin_env
    reply, view = api_call(api, "POST", "/api/accounts/oa/disable", b'{"reason": "quota"}')
    assert reply.status == 200
    assert view["health"] == {"state": "disabled", "reason": "quota", "until": None}
    assert {route_session(sticky, f"c{i}")["account"] for i in range(6)} == {"ob"}
    reply, view = api_call(api, "POST", "/api/accounts/oa/enable")
    assert view["health"]["state"] == "healthy"
    assert "oa" in {route_session(sticky, f"d{i}")["account"] for i in range(6)}


def test_disable_moves_a_pinned_session(admin_env):
    sticky, _, api, _ = admin_env
    first = route_session(sticky, "conv-1")["account"]
    api_call(api, "POST", f"/api/accounts/{first}/disable")
    moved = route_session(sticky, "conv-1")
    assert moved["affinity"] == "moved" and moved["moved_from"] == first


def test_disabling_the_only_account_answers_503(admin_env):
    sticky, _, api, _ = admin_env
    api_call(api, "POST", "/api/accounts/an/disable")
    f = flow(host="api.anthropic.com", path="/v1/messages", body={"model": "m"})
    sticky.route.request(f)
    assert f.response is not None and f.response.status_code == 503


@pytest.mark.parametrize("body", [b"{", b"[]", b'{"reason": 3}', b'{"reason": " "}',
                                  b'{"reason": "' + b"x" * 201 + b'"}'])
def test_disable_rejects_bad_bodies(admin_env, body):
    sticky, _, api, _ = admin_env
    assert api_call(api, "POST", "/api/accounts/oa/disable", body)[0].status == 400
    assert not sticky.state.health.export_state()  # no account left rotation


def test_disable_and_enable_go_through_health(admin_env):
    sticky, _, api, _ = admin_env

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
    _, view = api_call(api, "POST", "/api/accounts/oa/disable", b'{"reason": "r"}')
    api_call(api, "POST", "/api/accounts/oa/enable")
    assert sticky.state.health.calls == [("disable", "oa", "r"), ("enable", "oa")]
    assert view["health"]["state"] == "cooling" and view["cooldown_left"] == 30
    text = render(registry_for(sticky.state))[0].decode()
    assert 'stickyroute_cooldown_seconds{account="oa"} 30.0' in text


def test_no_credential_in_any_answer(admin_env):
    sticky, _, api, _ = admin_env
    for i in range(3):
        route_session(sticky, f"conv-{i}")
    route_session(sticky, "conv-x", host="api.anthropic.com")
    answers = [api.handle(m, t, ADMIN_AUTH, b"") for m, t in (
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


def test_state_shows_shared_counts_and_evictions_reach_the_store(admin_env):
    sticky, _, api, _ = admin_env
    seen = []

    class SharedStore:
        shared = False

        def shared_sessions(self):
            return {"oa": 7, "ob": 3}

        def changed(self, pin, how):
            seen.append((pin.session.rsplit("/", 1)[-1], how))

    sticky.state.store = SharedStore()
    route_session(sticky, "conv-1")
    route_session(sticky, "conv-2")
    assert api_call(api, "GET", "/api/state")[1]["sessions"]["shared"] == {"oa": 7, "ob": 3}
    api_call(api, "DELETE", "/api/sessions/conv-1")
    alias = next(iter(sticky.state.pins)).alias
    api_call(api, "DELETE", f"/api/accounts/{alias}/sessions")
    assert [x for x in seen if x[1] == "removed"] == [("conv-1", "removed"), ("conv-2", "removed")]


def test_enable_cannot_undo_the_files_enabled_false(admin_env):
    sticky, _, api, _ = admin_env
    reply, data = api_call(api, "POST", "/api/accounts/cg/enable")
    assert reply.status == 409 and data["error"]["code"] == "disabled_in_file"
    _, view = api_call(api, "GET", "/api/accounts/cg")
    assert view["health"]["state"] == "disabled"
