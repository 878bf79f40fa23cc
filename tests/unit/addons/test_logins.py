"""Subscription accounts through the glue, without processes: signing with the login, a
refresh before an expired token is sent, the background pass, a refused token refreshed and
the request sent again, dead logins (revoked: log in again) and their way back. The token
endpoint is the fake's (fakeapi/oauth.py) called in-process; the e2e versions are in
tests/e2e/test_oauth_logins.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tutils

from fakeapi.oauth import TOKEN_PATHS, OAuthLogins, write_login_file
from stickyroute import Addons, build
from stickyroute.admin.api import AdminApi
from stickyroute.core.oauth import TokenRequest, fingerprint
from stickyroute.state import State
from tests.helpers import Clock, flow

TOKEN_URL = "http://127.0.0.1:9"  # never dialled: the POST is the fake's, in-process
ACCOUNTS = f"""\
accounts:
  - {{alias: cx1, provider: chatgpt, oauth_file: cx1.json, token_url: "{TOKEN_URL}/oauth/token"}}
  - {{alias: cx2, provider: chatgpt, oauth_file: cx2.json, token_url: "{TOKEN_URL}/oauth/token"}}
  - {{alias: cl1, provider: anthropic, oauth_file: cl1.json,
     token_url: "{TOKEN_URL}/v1/oauth/token"}}
  - {{alias: cl2, provider: anthropic, oauth_file: cl2.json,
     token_url: "{TOKEN_URL}/v1/oauth/token"}}
  - {{alias: key, provider: openai, api_key: sk-acct-key}}
"""
LOGINS = {"cx1": "chatgpt", "cx2": "chatgpt", "cl1": "anthropic", "cl2": "anthropic"}
CODEX = "https://chatgpt.com/backend-api/codex/responses"
STATEFUL = {"model": "gpt-5", "input": "more", "previous_response_id": "resp_1"}


class TokenEndpoint:
    """The fake's token endpoints as the refresher's POST; can fail or hold answers back."""

    def __init__(self, oauth: OAuthLogins) -> None:
        self.oauth = oauth
        self.calls = 0
        self.spent: list[str] = []  # the refresh tokens sent, in order
        self.down = False  # answer 503
        self.gate: asyncio.Event | None = None

    async def __call__(self, request: TokenRequest, timeout: float) -> tuple[int, bytes]:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            return 503, b'{"error": "temporarily_unavailable"}'
        family = TOKEN_PATHS[urlsplit(request.url).path]
        body = json.loads(request.body)
        self.spent.append(body["refresh_token"])
        reply, _ = self.oauth.token_endpoint(family, body)
        return reply.status, json.dumps(reply.body).encode()


class Env:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.clock = Clock()
        self.oauth = OAuthLogins(self.clock, access_ttl=600)  # tokens expire at clock 1600
        for alias, family in LOGINS.items():
            write_login_file(tmp_path / f"{alias}.json",
                             self.oauth.create(f"acct-{alias}", family, login=alias))
        (tmp_path / "accounts.yaml").write_text(ACCOUNTS)
        (tmp_path / "accounts.yaml").chmod(0o600)
        self.endpoint = TokenEndpoint(self.oauth)
        self.addons: Addons = build(State(clock=self.clock, post=self.endpoint))
        self.state = self.addons.state
        self.answers: list[tuple[int, dict[str, Any]]] = []  # what the provider answers
        self.sent: list[http.HTTPFlow] = []  # every flow that went "upstream"
        self.addons.failover.replay = self._replay

    def request(self, session: str = "s1", url: str = CODEX,
                headers: tuple[tuple[str, str], ...] = (),
                body: dict[str, Any] | None = None) -> http.HTTPFlow:
        """A client request through the guard and the route; awaits a refresh it waits for."""
        split = urlsplit(url)
        f = flow(host=split.hostname or "", path=split.path,
                 body=body or {"model": "gpt-5", "input": "hi", "store": False},
                 headers=[("session-id", session), ("x-claude-code-session-id", session)])
        for name, value in headers:  # repeated names stay repeated
            f.request.headers.add(name, value)
        f.live = True
        self.addons.guard.request(f)
        waiting = self.addons.route.request(f)
        if waiting is not None:
            asyncio.run(_wait(waiting))
        return f

    def answer(self, f: http.HTTPFlow, status: int = 200,
               body: dict[str, Any] | None = None) -> http.HTTPFlow:
        """The provider's answer to a routed flow, through the way-back hooks."""
        asyncio.run(self._answer(f, status, body))
        return f

    async def _answer(self, f: http.HTTPFlow, status: int,
                      body: dict[str, Any] | None) -> None:
        self.sent.append(f)
        f.response = tutils.tresp(status_code=status,
                                  content=json.dumps(body or {"ok": 1}).encode())
        f.response.headers["content-type"] = "application/json"
        for hook in (self.addons.guard.responseheaders, self.addons.follow.responseheaders,
                     self.addons.failover.responseheaders):
            hook(f)
        self.addons.guard.response(f)
        self.addons.follow.response(f)
        await self.addons.failover.response(f)

    async def _replay(self, f: http.HTTPFlow) -> None:
        """What mitmproxy's replay does, minus the network: the chain, then an answer."""
        f.live = True
        self.addons.guard.request(f)
        waiting = self.addons.route.request(f)
        if waiting is not None:
            await waiting
        if f.response is None:
            status, body = self.answers.pop(0) if self.answers else (200, {"ok": 1})
            await self._answer(f, status, body)


async def _wait(waiting: Any) -> None:
    await waiting


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    with taddons.context(*e.addons) as tctx:
        tctx.configure(e.addons.options, sticky_accounts=str(tmp_path / "accounts.yaml"))
        yield e


def meta(f: http.HTTPFlow) -> dict[str, Any]:
    return f.metadata["stickyroute"]  # type: ignore[no-any-return]


def expired_token() -> dict[str, Any]:
    return {"error": {"message": "Provided authentication token is expired.",
                      "type": "invalid_request_error", "code": "token_expired"}}


# ---- signing ----------------------------------------------------------------------------------
def test_chatgpt_signs_with_the_login_and_its_account_id(env: Env) -> None:
    f = env.request()
    alias = meta(f)["account"]
    tokens = env.state.logins.tokens(alias)
    assert tokens is not None
    assert f.request.headers["authorization"] == f"Bearer {tokens.access_token}"
    assert f.request.headers["chatgpt-account-id"] == f"acct-acct-{alias}"
    assert meta(f)["token_fingerprint"] == fingerprint(tokens.access_token)
    assert f.metadata["stickyroute.signed"] == [alias, ["authorization", "chatgpt-account-id"]]
    saved = json.dumps(f.metadata) + str(f.comment)
    assert not any(s in saved for s in env.state.logins.secrets())
    env.answer(f)  # once upstream, the guard masks what routing set
    assert f.request.headers["authorization"] == f"Bearer [stickyroute:{alias}]"
    assert f.request.headers["chatgpt-account-id"] == f"[stickyroute:{alias}]"


def test_anthropic_signs_with_a_bearer_and_the_oauth_beta_once(env: Env) -> None:
    f = env.request(url="https://api.anthropic.com/v1/messages?beta=true",
                    headers=(("x-api-key", "sk-client"),
                             ("anthropic-beta", "claude-code-20250219,oauth-2025-04-20"),
                             ("anthropic-beta", "fine-grained-tool-streaming-2025-05-14")))
    alias = meta(f)["account"]
    tokens = env.state.logins.tokens(alias)
    assert alias in ("cl1", "cl2") and tokens is not None
    assert f.request.headers["authorization"] == f"Bearer {tokens.access_token}"
    assert "x-api-key" not in f.request.headers
    assert f.request.headers.get_all("anthropic-beta") == [
        "claude-code-20250219,oauth-2025-04-20,fine-grained-tool-streaming-2025-05-14"]
    bare = env.request(url="https://api.anthropic.com/v1/messages", session="s2")
    assert bare.request.headers["anthropic-beta"] == "oauth-2025-04-20"


def test_a_signing_failure_counts_nothing_and_leaves_nothing_in_flight(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from stickyroute.config.accounts import Account

    def broken(self: Account, tokens: Any = None) -> list[tuple[str, str]]:
        raise ValueError("no")

    monkeypatch.setattr(Account, "credential_headers", broken)
    f = env.request()
    assert "stickyroute" not in f.metadata and len(env.state.pins) == 0
    assert all(stats.inflight == 0 for stats in env.state.ledger.accounts.values())


# ---- refreshing -------------------------------------------------------------------------------
def test_a_valid_token_is_never_refreshed_on_a_request(env: Env) -> None:
    env.clock.t = 1590  # 10 s left: inside the margin, the background's job
    f = env.request()
    assert env.endpoint.calls == 0 and "authorization" in f.request.headers


def test_an_expired_token_waits_for_one_refresh_shared_by_all(env: Env) -> None:
    first = env.request()
    alias = meta(first)["account"]
    env.clock.t = 1600  # expired now
    env.endpoint.gate = asyncio.Event()

    async def three() -> list[http.HTTPFlow]:
        flows = []
        waits = []
        for _ in range(3):
            f = flow(host="chatgpt.com", path="/backend-api/codex/responses",
                     body={"model": "gpt-5", "input": "x"}, headers=[("session-id", "s1")])
            f.live = True
            waiting = env.addons.route.request(f)
            assert waiting is not None  # it must not be sent with the expired token
            flows.append(f)
            waits.append(asyncio.ensure_future(_wait(waiting)))
        await asyncio.sleep(0.01)
        assert env.endpoint.gate is not None
        env.endpoint.gate.set()
        await asyncio.gather(*waits)
        return flows

    flows = asyncio.run(three())
    tokens = env.state.logins.tokens(alias)
    assert env.endpoint.calls == 1 and tokens is not None and tokens.expires_at == 2200
    assert all(f.request.headers["authorization"] == f"Bearer {tokens.access_token}"
               and meta(f)["account"] == alias for f in flows)
    saved = json.loads((env.tmp / f"{alias}.json").read_text())
    assert tokens.access_token in json.dumps(saved)  # written before it was used
    assert (env.tmp / f"{alias}.json").stat().st_mode & 0o777 == 0o600
    assert env.oauth.reused(alias) == 0


def test_the_background_pass_refreshes_what_is_due_once(env: Env) -> None:
    env.clock.t = 1200  # inside the 300 s margin of 1600
    asyncio.run(env.addons.logins.refresh_once())
    assert env.endpoint.calls == 0  # not due yet
    env.clock.t = 1301
    asyncio.run(env.addons.logins.refresh_once())
    asyncio.run(env.addons.logins.refresh_once())
    assert env.endpoint.calls == 4 and all(env.oauth.refreshes(a) == 1 for a in LOGINS)
    assert 0 < env.addons.logins.pause() <= 30
    api = AdminApi(env.state, "t", lambda: b"", env.addons.admin.metrics)
    answer = json.loads(api.handle("GET", "/api/accounts", {"authorization": "Bearer t"}).body)
    logins = {a["alias"]: a["login"] for a in answer["accounts"]}
    assert logins["key"] is None and logins["cx1"]["state"] == "live"
    assert logins["cx1"]["refreshes"] == 1 and logins["cx1"]["expires_in"] == 600.0
    text = json.dumps(answer)
    assert not any(s in text for s in env.state.logins.secrets())


def test_a_refused_token_is_refreshed_and_the_request_sent_again(env: Env) -> None:
    f = env.request()
    alias = meta(f)["account"]
    old = env.state.logins.tokens(alias)
    env.answer(f, 401, expired_token())  # the provider says it expired early
    new = env.state.logins.tokens(alias)
    assert f.response is not None and f.response.status_code == 200  # never the 401
    assert new is not None and old is not None and new.access_token != old.access_token
    resent = env.sent[-1]
    assert meta(resent)["account"] == alias and resent is not f
    assert meta(resent)["token_fingerprint"] == fingerprint(new.access_token)
    assert meta(f)["outcome"] == "refreshed" and meta(f)["retried"]["served_by"] == alias
    assert env.state.health.available(alias, env.clock()) and env.endpoint.calls == 1


def test_a_second_401_is_not_refreshed_again_and_moves_on(env: Env) -> None:
    f = env.request()
    alias = meta(f)["account"]
    env.answers.append((401, expired_token()))  # the resend is refused as well
    env.answer(f, 401, expired_token())
    assert env.endpoint.calls == 1
    assert f.response is not None and f.response.status_code == 200
    assert meta(env.sent[-1])["account"] != alias  # then the usual failover
    assert meta(f)["retried"]["served_by"] != alias


def refresh_others(env: Env, alias: str) -> None:
    """Give every login but `alias` a token valid past clock 1600."""
    env.clock.t = 1301
    for other in LOGINS:
        if other != alias:
            asyncio.run(env.state.refresher.refresh(other))


def test_a_dead_login_goes_revoked_and_its_soft_pins_move(env: Env) -> None:
    f = env.request()
    alias = meta(f)["account"]
    refresh_others(env, alias)
    env.oauth.revoke(alias)  # a password change, a logout elsewhere
    env.clock.t = 1600
    moved = env.request()
    assert meta(moved)["account"] != alias and meta(moved)["affinity"] == "moved"
    health = env.state.health.describe(alias, env.clock())
    assert health.state.value == "disabled"
    assert health.reason == "revoked: log in again (refresh_token_invalidated)"
    dead_token = env.endpoint.spent[-1]
    assert env.endpoint.calls == 4 and env.oauth.reused(alias) == 0
    line = next(line for line in env.addons.commands.accounts_command()
                if line.startswith(alias))
    assert "login=revoked (log in again (refresh_token_invalidated))" in line
    metrics = env.addons.admin.metrics()[0].decode()
    assert f'stickyroute_login_revoked{{account="{alias}"}} 1.0' in metrics
    assert "stickyroute_login_expires_in_seconds" in metrics
    # nothing brings it back but a new login: not the background pass, not an operator
    asyncio.run(env.addons.logins.refresh_once())
    env.addons.admin.enable_command(alias)
    asyncio.run(env.addons.logins.refresh_once())
    assert not env.state.health.available(alias, env.clock())
    assert env.endpoint.spent.count(dead_token) == 1  # its refresh token was never sent again


def test_a_dead_login_on_a_hard_pin_gets_a_clear_503(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from stickyroute.core import plan as plan_module
    from stickyroute.core.identify import SessionId

    f = env.request()
    alias = meta(f)["account"]
    hard = SessionId(meta(f)["session_key"], "chain", hard=True)
    monkeypatch.setattr(plan_module, "identify", lambda *a, **k: hard)
    env.oauth.revoke(alias)
    env.clock.t = 1600
    g = env.request(body=STATEFUL)  # state only that account holds: it cannot move
    assert g.response is not None and g.response.status_code == 503
    assert f"{alias} disabled (revoked: log in again" in g.response.text


def test_a_refused_token_of_a_dead_login_answers_clearly_too(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from stickyroute.core import plan as plan_module
    from stickyroute.core.identify import SessionId

    f = env.request()
    alias = meta(f)["account"]
    hard = SessionId(meta(f)["session_key"], "chain", hard=True)
    monkeypatch.setattr(plan_module, "identify", lambda *a, **k: hard)
    g = env.request(body=STATEFUL)
    env.oauth.revoke(alias)
    env.answer(g, 401, expired_token())
    assert g.response is not None and g.response.status_code == 503
    assert "log in again" in g.response.text and env.endpoint.calls == 1


def test_a_failing_refresh_of_an_expired_token_cools_the_account(env: Env) -> None:
    f = env.request()
    alias = meta(f)["account"]
    refresh_others(env, alias)
    env.endpoint.down = True
    env.clock.t = 1600
    moved = env.request()
    assert meta(moved)["account"] != alias
    health = env.state.health.describe(alias, env.clock())
    assert health.state.value == "cooling" and health.until == 1605
    assert health.reason == "login refresh failing: the token endpoint answered 503"


def test_a_new_login_brings_a_dead_account_back(env: Env) -> None:
    f = env.request()
    alias = meta(f)["account"]
    env.oauth.revoke(alias)
    env.clock.t = 1600
    env.request()
    assert not env.state.health.available(alias, env.clock())
    # the person logs in again and imports the new login over the old file
    write_login_file(env.tmp / f"{alias}.json",
                     env.oauth.create(f"acct-{alias}", LOGINS[alias], login=f"{alias}-2"))
    assert env.addons.logins.pause() <= 5  # a dead login is looked for often
    asyncio.run(env.addons.logins.refresh_once())
    assert env.state.health.available(alias, env.clock())
    assert env.state.logins.view(alias, env.clock())["state"] == "live"  # type: ignore[index]


def test_a_restart_keeps_a_dead_login_dead_until_a_new_one(env: Env) -> None:
    from stickyroute.config.accounts import load_accounts
    from stickyroute.stores.file import FileStore

    f = env.request()
    alias = meta(f)["account"]
    env.oauth.revoke(alias)
    env.clock.t = 1600
    env.request()
    state_file = str(env.tmp / "state.json")
    asyncio.run(FileStore(state_file).save(env.addons.persist.local(), env.clock()))

    def restart() -> State:
        again = State(clock=env.clock, post=env.endpoint)
        again.use_accounts(load_accounts(env.tmp / "accounts.yaml"))
        local = build(again).persist.local()
        FileStore(state_file).open(local, env.clock())
        again.sync_logins()
        return again

    calls = env.endpoint.calls
    again = restart()  # its file still holds the dead login
    assert again.logins.get(alias).revoked  # type: ignore[union-attr]
    assert not again.health.available(alias, env.clock())
    asyncio.run(again.refresher.refresh(alias))
    assert env.endpoint.calls == calls  # nothing sent for it
    write_login_file(env.tmp / f"{alias}.json",
                     env.oauth.create(f"acct-{alias}", LOGINS[alias], login=f"{alias}-2"))
    renewed = restart()  # imported again while the proxy was down
    assert renewed.logins.get(alias).revoked is None  # type: ignore[union-attr]
    assert renewed.health.available(alias, env.clock())


def test_a_new_session_claimed_on_a_shared_store_waits_for_its_login_too(env: Env) -> None:
    from stickyroute.stores.base import MemoryStore

    class Shared(MemoryStore):
        shared = True  # new sessions are claimed first, as on Redis

    env.state.store = Shared()
    env.clock.t = 1600  # every token expired
    f = env.request(session="brand-new")
    alias = meta(f)["account"]
    tokens = env.state.logins.tokens(alias)
    assert tokens is not None and tokens.expires_at == 2200
    assert f.request.headers["authorization"] == f"Bearer {tokens.access_token}"
