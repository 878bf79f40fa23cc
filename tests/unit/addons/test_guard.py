"""addons/guard.py: credentials masked once sent, replays re-signed, masked values never sent,
and the client gate in front of routing."""

import base64
import json
import logging

import pytest
from mitmproxy.test import taddons, tflow, tutils

from stickyroute.core.masking import masked
from tests import helpers
from tests.helpers import addons
from tests.helpers import token_sha as sha

ACCOUNTS = """\
accounts:
  - alias: oa
    provider: openai
    api_key: sk-acct-oa
    headers: {openai-project: proj-secret}
  - alias: ob
    provider: openai
    api_key: sk-acct-ob
  - alias: an
    provider: anthropic
    api_key: sk-ant-acct
"""

SECRETS = ("sk-acct-oa", "sk-acct-ob", "sk-ant-acct", "proj-secret")
GATED = ACCOUNTS + f"""\
clients:
  - name: alice
    token_hash: {sha("alice-token")}
    accounts: [oa]
  - name: bob
    token_hash: {sha("bob-token")}
    accounts: ["*"]
  - name: carol
    token_hash: {sha("carol-token")}
    accounts: [an]
"""


def start(tmp_path, text: str = ACCOUNTS):
    p = tmp_path / "accounts.yaml"
    p.write_text(text)
    p.chmod(0o600)
    sticky = addons()
    guard = sticky.guard
    return guard, sticky, p


def flow(host="api.openai.com", path="/v1/responses", body=None, auth="Bearer client",
         headers=(), scheme="https"):
    """helpers.flow with a body, from a client whose own key is `auth` (None: no key)."""
    return helpers.flow(host=host, path=path, body=body if body is not None else {
        "model": "m", "input": "hi"}, headers=headers, scheme=scheme, auth=auth)


def send(guard, sticky, f):
    """The request hooks in build() order: the guard, then routing."""
    guard.request(f)
    sticky.route.request(f)
    return f


# ---- masking -------------------------------------------------------------------------------


def test_credential_masked_once_response_headers_arrive(tmp_path):
    guard, sticky, p = start(tmp_path)
    with taddons.context(*sticky) as tctx:
        tctx.configure(sticky.options, sticky_accounts=str(p))
        f = send(guard, sticky, flow(headers=[("session-id", "s1")]))
        alias = f.metadata["stickyroute"]["account"]
        assert f.request.headers["authorization"] == f"Bearer sk-acct-{alias}"  # goes upstream
        f.response = tutils.tresp()
        guard.responseheaders(f)
        assert f.request.headers["authorization"] == f"Bearer [stickyroute:{alias}]"
        if alias == "oa":
            assert f.request.headers["openai-project"] == "[stickyroute:oa]"
        state = json.dumps(f.get_state(), default=repr)
        assert not any(s in state for s in SECRETS)


@pytest.mark.parametrize("hook", ["response", "error", "websocket_start"])
def test_every_after_sending_hook_masks(tmp_path, hook):
    guard, sticky, p = start(tmp_path)
    with taddons.context(*sticky) as tctx:
        tctx.configure(sticky.options, sticky_accounts=str(p))
        f = send(guard, sticky, flow(host="api.anthropic.com", path="/v1/messages",
                                     headers=[("x-api-key", "client")], auth=None))
        getattr(guard, hook)(f)
        assert f.request.headers["x-api-key"] == "[stickyroute:an]"


def test_inflight_flows_masked_at_shutdown(tmp_path):
    guard, sticky, p = start(tmp_path)
    with taddons.context(*sticky) as tctx:
        tctx.configure(sticky.options, sticky_accounts=str(p))
        f = send(guard, sticky, flow())
        guard.done()
        assert "[stickyroute:" in f.request.headers["authorization"]


def test_replay_is_re_signed_and_keeps_its_session(tmp_path):
    guard, sticky, p = start(tmp_path)
    with taddons.context(*sticky) as tctx:
        tctx.configure(sticky.options, sticky_accounts=str(p))
        f = send(guard, sticky, flow(body={"model": "m", "input": "derived conversation"}))
        first = dict(f.metadata["stickyroute"])
        guard.response(f)
        # what mitmweb's replay.client does to a finished flow
        f.is_replay, f.response, f.live = "request", None, True
        send(guard, sticky, f)
        again = f.metadata["stickyroute"]
        assert again["affinity"] == "hit" and again["account"] == first["account"]
        assert again["client"] == first["client"]
        assert f.request.headers["authorization"] == f"Bearer sk-acct-{first['account']}"


def test_masked_values_never_leave_for_any_host(tmp_path):
    guard, sticky, p = start(tmp_path)
    with taddons.context(*sticky) as tctx:
        tctx.configure(sticky.options, sticky_accounts=str(p))
        f = flow(host="127.0.0.1", scheme="http", auth=masked("oa", "Bearer x"),
                 headers=[("x-api-key", "[stickyroute:an]"), ("x-other", "kept")])
        send(guard, sticky, f)
        assert "authorization" not in f.request.headers and "x-api-key" not in f.request.headers
        assert f.request.headers["x-other"] == "kept"


def test_non_account_host_and_lying_host_header_get_nothing(tmp_path):
    guard, sticky, p = start(tmp_path)
    with taddons.context(*sticky) as tctx:
        tctx.configure(sticky.options, sticky_accounts=str(p))
        # CONNECT evil.example + "Host: api.openai.com" inside the tunnel: req.host is the
        # CONNECT target, so no account is involved.
        f = flow(host="evil.example", headers=[("host", "api.openai.com")])
        send(guard, sticky, f)
        assert f.request.headers["authorization"] == "Bearer client"
        plain = send(guard, sticky, flow(scheme="http"))  # an account host, but not over TLS
        assert plain.request.headers["authorization"] == "Bearer client"
        for g in (f, plain):
            assert not any(s in json.dumps(g.get_state(), default=repr) for s in SECRETS)


# ---- the client gate ---------------------------------------------------------------------


def test_gate_refuses_unknown_clients_with_a_provider_shaped_401(tmp_path):
    guard, sticky, p = start(tmp_path, GATED)
    with taddons.context(*sticky) as tctx:
        tctx.configure(sticky.options, sticky_accounts=str(p))
        for f in (send(guard, sticky, flow(auth="Bearer wrong")),
                  send(guard, sticky, flow(auth=None))):
            assert f.response.status_code == 401
            assert f.response.json()["error"]["code"] == "unknown_client"
            assert f.request.headers.get("authorization") != "Bearer sk-acct-oa"
            assert "account" not in f.metadata["stickyroute"]
        a = send(guard, sticky, flow(host="api.anthropic.com", path="/v1/messages", auth=None,
                                     headers=[("x-api-key", "nope")]))
        assert a.response.status_code == 401
        assert a.response.json()["error"]["type"] == "authentication_error"
        other = send(guard, sticky, flow(host="example.com", auth="Bearer wrong"))
        assert other.response is None  # the gate is about accounts only


def test_gate_limits_known_clients_to_their_accounts(tmp_path):
    guard, sticky, p = start(tmp_path, GATED)
    with taddons.context(*sticky) as tctx:
        tctx.configure(sticky.options, sticky_accounts=str(p))
        served = {send(guard, sticky, flow(auth="Bearer alice-token",
                                           headers=[("session-id", f"s{i}")]))
                  .metadata["stickyroute"]["account"] for i in range(6)}
        assert served == {"oa"}
        bob = {send(guard, sticky, flow(auth="Bearer bob-token",
                                        headers=[("session-id", f"s{i}")]))
               .metadata["stickyroute"]["account"] for i in range(14)}
        assert bob == {"oa", "ob"}
        carol = send(guard, sticky, flow(auth="Bearer carol-token"))
        assert carol.response.status_code == 403
        key = send(guard, sticky, flow(host="api.anthropic.com", path="/v1/messages", auth=None,
                                       headers=[("x-api-key", "carol-token")]))
        assert key.response is None and key.request.headers["x-api-key"] == "sk-ant-acct"


def test_gate_takes_the_proxy_password_from_connect(tmp_path):
    guard, sticky, p = start(tmp_path, GATED)
    with taddons.context(*sticky) as tctx:
        tctx.configure(sticky.options, sticky_accounts=str(p))
        connect = tflow.tflow()
        connect.request.method = "CONNECT"
        basic = base64.b64encode(b"alice:alice-token").decode()
        connect.request.headers["proxy-authorization"] = f"Basic {basic}"
        guard.http_connect(connect)
        f = flow(auth="Bearer placeholder")
        f.client_conn = connect.client_conn
        send(guard, sticky, f)
        assert f.response is None and f.metadata["stickyroute"]["account"] == "oa"
        assert f.metadata["stickyroute"]["client"] == "c-alice"


def test_gate_replay_uses_the_recorded_client(tmp_path):
    guard, sticky, p = start(tmp_path, GATED)
    with taddons.context(*sticky) as tctx:
        tctx.configure(sticky.options, sticky_accounts=str(p))
        f = send(guard, sticky, flow(auth="Bearer alice-token"))
        guard.response(f)
        f.is_replay, f.response, f.live = "request", None, True
        send(guard, sticky, f)
        assert f.response is None and f.request.headers["authorization"] == "Bearer sk-acct-oa"


# ---- clients on other machines (no open relay) ----------------------------------------------

def remote(f, host="192.0.2.7"):
    f.client_conn.peername = (host, 50000)
    return f


def test_remote_clients_get_a_403_and_nothing_is_signed(tmp_path, caplog):
    guard, sticky, p = start(tmp_path)
    with taddons.context(*sticky) as tctx, caplog.at_level(logging.WARNING, "stickyroute"):
        tctx.configure(sticky.options, sticky_accounts=str(p))
        for host in ("192.0.2.7", "fd00::7", "::ffff:192.0.2.7"):
            f = send(guard, sticky, remote(flow(headers=[("session-id", "s")]), host))
            assert f.response.status_code == 403
            assert f.response.json()["error"]["code"] == "remote_client_not_allowed"
            assert f.request.headers["authorization"] == "Bearer client"  # never signed
            assert "account" not in f.metadata["stickyroute"]
        a = send(guard, sticky, remote(flow(host="api.anthropic.com", path="/v1/messages")))
        assert a.response.status_code == 403
        assert a.response.json()["error"]["type"] == "api_error"
        other = send(guard, sticky, remote(flow(host="example.com")))
        assert other.response is None  # not an account host: not ours to refuse

        def said() -> list[str]:
            return [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]

        assert len(said()) == 3  # once per address: the Anthropic request said nothing new
        send(guard, sticky, remote(flow()))
        assert len(said()) == 3
        sticky.state.clock.t += 61  # a minute later it is said again
        send(guard, sticky, remote(flow()))
        assert len(said()) == 4 and "from 192.0.2.7:" in said()[-1]
        assert not any("sk-acct" in m for m in said())


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"])
def test_loopback_clients_are_served(tmp_path, host):
    guard, sticky, p = start(tmp_path)
    with taddons.context(*sticky) as tctx:
        tctx.configure(sticky.options, sticky_accounts=str(p))
        f = send(guard, sticky, remote(flow(), host))
        assert f.response is None and f.request.headers["authorization"].startswith(
            "Bearer sk-acct-")


def test_remote_clients_with_a_gate_token_or_when_allowed(tmp_path):
    guard, sticky, p = start(tmp_path, GATED)
    with taddons.context(*sticky) as tctx:
        tctx.configure(sticky.options, sticky_accounts=str(p))
        f = send(guard, sticky, remote(flow(auth="Bearer alice-token")))
        assert f.response is None and f.metadata["stickyroute"]["account"] == "oa"
        f = send(guard, sticky, remote(flow(auth="Bearer wrong")))
        assert f.response.status_code == 401
    guard, sticky, p = start(tmp_path)
    with taddons.context(*sticky) as tctx:
        tctx.configure(sticky.options, sticky_accounts=str(p), sticky_allow_remote=True)
        f = send(guard, sticky, remote(flow()))
        assert f.response is None and f.metadata["stickyroute"]["account"] in ("oa", "ob")


def test_replays_and_local_capture_mode_count_as_this_machine(tmp_path):
    from mitmproxy.proxy.mode_specs import ProxyMode

    guard, sticky, p = start(tmp_path)
    with taddons.context(*sticky) as tctx:
        tctx.configure(sticky.options, sticky_accounts=str(p))
        replay = remote(flow())
        replay.is_replay = "request"
        assert send(guard, sticky, replay).response is None
        captured = remote(flow())
        captured.client_conn.proxy_mode = ProxyMode.parse("local")
        assert send(guard, sticky, captured).response is None
        wireguard = remote(flow())
        wireguard.client_conn.proxy_mode = ProxyMode.parse("wireguard")
        assert send(guard, sticky, wireguard).response.status_code == 403
