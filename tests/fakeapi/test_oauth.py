"""The fake's subscription logins: token endpoints, expiring access tokens, single-use refresh.

Also the real refresher (tornado's client) against the fake's token endpoints, through files
the fake wrote in the CLIs' shapes: both sides of the wire agree.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from fakeapi import FakeUpstream
from fakeapi.oauth import CLAUDE_CLIENT_ID, CODEX_CLIENT_ID, Issued, write_login_file
from stickyroute.config.loginfile import read_login
from stickyroute.config.oauth import LoginSource, Tokens, chatgpt_account_id, jwt_expiry
from stickyroute.core.logins import Logins
from stickyroute.core.oauth import Failure, RefreshFailed
from stickyroute.stores.refresher import Refresher, tornado_post

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock) -> Iterator[FakeUpstream]:
    with FakeUpstream(access_ttl=600, oauth_clock=clock) as f:
        yield f


@pytest.fixture
def http(fake: FakeUpstream) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=fake.url, trust_env=False, timeout=10) as client:
        yield client


def codex_refresh(http: httpx2.Client, token: str,
                  client_id: str = CODEX_CLIENT_ID) -> httpx2.Response:
    return http.post("/oauth/token", json={"client_id": client_id, "grant_type": "refresh_token",
                                           "refresh_token": token})


def claude_refresh(http: httpx2.Client, token: str) -> httpx2.Response:
    return http.post("/v1/oauth/token", json={"grant_type": "refresh_token",
                                              "refresh_token": token,
                                              "client_id": CLAUDE_CLIENT_ID})


def codex_call(http: httpx2.Client, issued: Issued | str,
               account_id: str = "acct-chatgpt-x") -> httpx2.Response:
    token = issued if isinstance(issued, str) else issued.access_token
    return http.post("/backend-api/codex/responses",
                     headers={"authorization": f"Bearer {token}",
                              "chatgpt-account-id": account_id},
                     json={"model": "gpt-5-codex", "input": "hi", "store": False})


def claude_call(http: httpx2.Client, token: str, beta: str | None) -> httpx2.Response:
    headers = {"authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"}
    if beta is not None:
        headers["anthropic-beta"] = beta
    return http.post("/v1/messages", headers=headers, json={
        "model": "claude-fake", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})


def test_codex_login_refresh_and_expiry(fake: FakeUpstream, http: httpx2.Client,
                                        clock: Clock) -> None:
    first = fake.oauth.create("chatgpt-x", "chatgpt", login="cx")
    assert jwt_expiry(first.access_token) == T0 + 600
    assert chatgpt_account_id(first.access_token) == "acct-chatgpt-x"
    assert codex_call(http, first).status_code == 200
    assert fake.requests(api="responses")[-1]["account"] == "chatgpt-x"
    assert codex_call(http, first, account_id="other").status_code == 401

    clock.now += 600
    expired = codex_call(http, first)
    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == "token_expired"

    answer = codex_refresh(http, first.refresh_token)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) >= {"access_token", "refresh_token", "id_token", "expires_in"}
    assert body["expires_in"] == 600 and body["refresh_token"] != first.refresh_token
    assert jwt_expiry(body["access_token"]) == clock.now + 600
    assert jwt_expiry(body["id_token"]) is not None
    assert codex_call(http, body["access_token"]).status_code == 200
    assert fake.oauth.refreshes("cx") == 1 and fake.oauth.reused("cx") == 0
    log = fake.requests(api="oauth_token")
    assert [(e["account"], e["credential"], e["status"]) for e in log] == [
        ("cx", first.refresh_token, 200)]


def test_reusing_a_refresh_token_revokes_the_login(fake: FakeUpstream,
                                                   http: httpx2.Client) -> None:
    first = fake.oauth.create("chatgpt-x", "chatgpt", login="cx")
    second = codex_refresh(http, first.refresh_token).json()
    reused = codex_refresh(http, first.refresh_token)
    assert reused.status_code == 401
    assert reused.json()["error"]["code"] == "refresh_token_reused"
    assert fake.oauth.reused("cx") == 1 and fake.oauth.revoked("cx")
    after = codex_refresh(http, second["refresh_token"])
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "refresh_token_invalidated"
    assert codex_call(http, second["access_token"]).status_code == 401
    assert fake.oauth.stats()["cx"] == {"account": "chatgpt-x", "family": "chatgpt",
                                        "refreshes": 1, "reused": 1, "revoked": True}


@pytest.mark.parametrize("body, status, code", [
    ({"client_id": "wrong", "grant_type": "refresh_token", "refresh_token": "x"}, 400,
     "invalid_client"),
    ({"client_id": CODEX_CLIENT_ID, "grant_type": "password"}, 400, "unsupported_grant_type"),
    ({"client_id": CODEX_CLIENT_ID, "grant_type": "refresh_token", "refresh_token": "nope"}, 400,
     "invalid_grant"),
])
def test_token_endpoint_errors(http: httpx2.Client, body: dict[str, Any], status: int,
                               code: str) -> None:
    answer = http.post("/oauth/token", json=body)
    assert answer.status_code == status and answer.json()["error"] == code


def test_claude_login_needs_the_oauth_beta(fake: FakeUpstream, http: httpx2.Client,
                                           clock: Clock) -> None:
    first = fake.oauth.create("anthropic-x", "anthropic", login="ax", access_ttl=60)
    refused = claude_call(http, first.access_token, None)
    assert refused.status_code == 401
    assert refused.json()["error"]["type"] == "authentication_error"
    assert claude_call(http, first.access_token, "claude-code-20250219").status_code == 401
    ok = claude_call(http, first.access_token, "claude-code-20250219, oauth-2025-04-20")
    assert ok.status_code == 200
    assert fake.requests(api="messages")[-1]["account"] == "anthropic-x"

    clock.now += 61
    expired = claude_call(http, first.access_token, "oauth-2025-04-20")
    assert expired.status_code == 401
    assert expired.json()["error"] == {"type": "authentication_error", "message":
                                       "Provided authentication token is expired. Please try "
                                       "signing in again."}
    body = claude_refresh(http, first.refresh_token).json()
    assert body["expires_in"] == 60 and "id_token" not in body
    assert body["refresh_token"].startswith("sk-ant-ort01-")
    reused = claude_refresh(http, first.refresh_token)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert fake.oauth.reused("ax") == 1
    assert claude_call(http, body["access_token"], "oauth-2025-04-20").status_code == 401


def test_a_codex_token_is_not_a_claude_one(fake: FakeUpstream, http: httpx2.Client) -> None:
    codex = fake.oauth.create("chatgpt-x", "chatgpt")
    assert claude_call(http, codex.access_token, "oauth-2025-04-20").status_code == 401
    assert claude_refresh(http, codex.refresh_token).json()["error"] == "invalid_grant"


def test_token_endpoint_faults_by_path(fake: FakeUpstream, http: httpx2.Client) -> None:
    first = fake.oauth.create("chatgpt-x", "chatgpt", login="cx")
    fake.add_fault(kind="500", path="/oauth/token")
    assert codex_refresh(http, first.refresh_token).status_code == 500
    assert codex_refresh(http, first.refresh_token).status_code == 200  # not spent by the 500
    assert fake.oauth.reused("cx") == 0


def test_login_files_in_the_cli_shapes(fake: FakeUpstream, tmp_path: Path) -> None:
    codex = fake.oauth.create("chatgpt-x", "chatgpt")
    claude = fake.oauth.create("anthropic-x", "anthropic")
    auth = read_login(write_login_file(tmp_path / "auth.json", codex))
    creds = read_login(write_login_file(tmp_path / "creds.json", claude))
    assert auth.shape == "codex" and auth.tokens == Tokens(
        codex.access_token, codex.refresh_token, codex.expires_at, codex.id_token,
        "acct-chatgpt-x")
    assert creds.shape == "claude" and creds.tokens == Tokens(
        claude.access_token, claude.refresh_token, float(int(claude.expires_at * 1000)) / 1000)
    assert (tmp_path / "auth.json").stat().st_mode & 0o777 == 0o600


# ---- the real refresher against the fake ----------------------------------------------------
@pytest.mark.parametrize("family, path", [("chatgpt", "/oauth/token"),
                                          ("anthropic", "/v1/oauth/token")])
def test_refresher_with_tornado_against_the_fake(fake: FakeUpstream, clock: Clock,
                                                 tmp_path: Path, family: str, path: str) -> None:
    issued = fake.oauth.create(f"{family}-x", family, login="l")
    file = write_login_file(tmp_path / "login.json", issued)
    source = LoginSource(family, str(file), fake.url + path,
                         CODEX_CLIENT_ID if family == "chatgpt" else CLAUDE_CLIENT_ID)
    logins = Logins()
    logins.seed("a", source, read_login(file).tokens)
    refresher = Refresher(logins, tornado_post, clock=clock)

    async def scenario() -> list[Any]:
        clock.now += 590
        return list(await asyncio.gather(*(refresher.refresh("a") for _ in range(4))))

    results = asyncio.run(scenario())
    assert all(r == results[0] for r in results) and isinstance(results[0], Tokens)
    assert fake.oauth.refreshes("l") == 1 and fake.oauth.reused("l") == 0
    on_disk = read_login(file)
    assert on_disk.tokens == logins.tokens("a") == results[0]
    if family == "chatgpt":
        assert json.loads(file.read_text())["tokens"]["id_token"] == results[0].id_token


def test_refresher_sees_a_dead_login_and_a_down_endpoint(fake: FakeUpstream, clock: Clock,
                                                         tmp_path: Path) -> None:
    issued = fake.oauth.create("chatgpt-x", "chatgpt", login="l")
    fake.oauth.revoke("l")
    source = LoginSource("chatgpt", str(tmp_path / "a.json"), fake.url + "/oauth/token",
                         CODEX_CLIENT_ID)
    write_login_file(source.file, issued)
    logins = Logins()
    logins.seed("a", source, read_login(source.file).tokens)
    result = asyncio.run(Refresher(logins, tornado_post, clock=clock).refresh("a"))
    assert result == RefreshFailed(Failure.DEAD, "log in again (refresh_token_invalidated)", 401)

    closed = LoginSource("chatgpt", source.file, "http://127.0.0.1:1/oauth/token",
                         CODEX_CLIENT_ID)
    logins.seed("b", closed, read_login(source.file).tokens)
    down = asyncio.run(Refresher(logins, tornado_post, clock=clock).refresh("b"))
    assert isinstance(down, RefreshFailed) and down.kind is Failure.RETRY and down.status is None


def test_expire_ends_access_tokens_early_and_secrets_lists_them(
        fake: FakeUpstream, http: httpx2.Client) -> None:
    first = fake.oauth.create("chatgpt-x", "chatgpt", login="cx")
    assert codex_call(http, first).status_code == 200
    fake.oauth.expire("cx")
    refused = codex_call(http, first)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "token_expired"
    second = codex_refresh(http, first.refresh_token).json()
    assert codex_call(http, second["access_token"]).status_code == 200
    assert {first.access_token, first.refresh_token, second["access_token"],
            second["refresh_token"], second["id_token"], "acct-chatgpt-x"} <= fake.oauth.secrets()
    other = fake.oauth.create("claude-y", "anthropic", login="cy")
    assert fake.oauth.secrets("cx") == fake.oauth.secrets() - fake.oauth.secrets("cy")
    assert fake.oauth.secrets("cy") == {other.access_token, other.refresh_token}
