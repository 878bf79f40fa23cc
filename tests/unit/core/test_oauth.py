"""The OAuth wire, pure: requests, answers, failures, refresh timing, the beta merge."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from stickyroute.config.oauth import (
    CLAUDE_CLIENT_ID,
    CODEX_CLIENT_ID,
    DEFAULTS,
    LoginSource,
    Tokens,
    chatgpt_account_id,
    check_token_url,
    jwt_claims,
    jwt_expiry,
)
from stickyroute.core.oauth import (
    Failure,
    RefreshFailed,
    TokenPlan,
    classify_failure,
    fingerprint,
    is_newer,
    merge_beta,
    read_answer,
    refresh_plan,
    refresh_request,
    retry_delay,
)

NOW = 1_800_000_000.0


def jwt(claims: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


OLD = Tokens("old-access", "old-refresh", NOW - 1, id_token="old-id", account_id="acct-1")
CODEX = LoginSource("chatgpt", "/x/auth.json", *DEFAULTS["chatgpt"])
CLAUDE = LoginSource("anthropic", "/x/.credentials.json", *DEFAULTS["anthropic"])


def test_jwt_claims_and_expiry() -> None:
    token = jwt({"exp": 1234, "https://api.openai.com/auth": {"chatgpt_account_id": "a-9"}})
    assert jwt_claims(token) == {"exp": 1234,
                                 "https://api.openai.com/auth": {"chatgpt_account_id": "a-9"}}
    assert jwt_expiry(token) == 1234.0
    assert chatgpt_account_id(token) == "a-9"


@pytest.mark.parametrize("token", ["", "opaque-token", "a.b", "a.!!!.c", "a..c",
                                   jwt({"exp": "soon"}), jwt({"exp": True}),
                                   "x." + base64.urlsafe_b64encode(b"[1]").decode() + ".y"])
def test_not_a_jwt_or_no_expiry(token: str) -> None:
    assert jwt_expiry(token) is None
    assert chatgpt_account_id(token) is None


def test_codex_refresh_request() -> None:
    req = refresh_request(CODEX, OLD)
    assert req.url == "https://auth.openai.com/oauth/token"
    assert list(json.loads(req.body).items()) == [
        ("client_id", CODEX_CLIENT_ID), ("grant_type", "refresh_token"),
        ("refresh_token", "old-refresh")]
    assert ("content-type", "application/json") in req.headers
    assert "old-refresh" not in repr(req)


def test_claude_refresh_request() -> None:
    req = refresh_request(CLAUDE, OLD)
    assert req.url == "https://platform.claude.com/v1/oauth/token"
    assert list(json.loads(req.body).items()) == [
        ("grant_type", "refresh_token"), ("refresh_token", "old-refresh"),
        ("client_id", CLAUDE_CLIENT_ID)]


def test_refresh_request_needs_an_oauth_provider() -> None:
    with pytest.raises(ValueError, match="no OAuth login"):
        refresh_request(LoginSource("openai", "f", "https://x", "c"), OLD)


@pytest.mark.parametrize("url", ["https://auth.openai.com/oauth/token", "http://127.0.0.1:9/t",
                                 "http://localhost/t", "http://[::1]:8/t", "http://127.5.0.1/t"])
def test_token_url_allowed(url: str) -> None:
    assert check_token_url(url) == url


@pytest.mark.parametrize("url, match", [
    ("http://auth.openai.com/oauth/token", "must use https"),
    ("http://10.0.0.1/t", "must use https"),
    ("ftp://127.0.0.1/t", "must be an https:// URL"),
    ("auth.openai.com/oauth/token", "must be an https:// URL"),
    ("https:///nohost", "must be an https:// URL"),
])
def test_token_url_refused(url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_token_url(url)


def test_codex_answer_with_everything() -> None:
    access = jwt({"exp": NOW + 3600, "https://api.openai.com/auth": {"chatgpt_account_id": "acct-2"}})
    body = json.dumps({"access_token": access, "refresh_token": "new-refresh",
                       "id_token": "new-id", "expires_in": 10}).encode()
    new = read_answer("chatgpt", 200, body, OLD, NOW)
    assert new == Tokens(access, "new-refresh", NOW + 3600, "new-id", "acct-2")  # exp wins


def test_answer_without_refresh_token_keeps_the_old_one() -> None:
    body = json.dumps({"access_token": "opaque", "expires_in": 28800}).encode()
    new = read_answer("anthropic", 200, body, OLD, NOW)
    assert isinstance(new, Tokens)
    assert new.refresh_token == "old-refresh" and new.id_token == "old-id"
    assert new.expires_at == NOW + 28800 and new.account_id == "acct-1"


def test_answer_without_any_expiry() -> None:
    new = read_answer("anthropic", 200, b'{"access_token": "a", "expires_in": "soon"}', OLD, NOW)
    assert isinstance(new, Tokens) and new.expires_at is None


@pytest.mark.parametrize("body", [b"", b"<html>", b"[]", b'{"access_token": ""}',
                                  b'{"access_token": 5}'])
def test_a_200_without_access_token_is_retried(body: bytes) -> None:
    failed = read_answer("chatgpt", 200, body, OLD, NOW)
    assert isinstance(failed, RefreshFailed) and failed.kind is Failure.RETRY


@pytest.mark.parametrize("status, body, kind, reason", [
    (400, {"error": "invalid_grant", "error_description": "old-refresh is bad"}, Failure.DEAD,
     "log in again (invalid_grant)"),
    (400, {"error": {"code": "refresh_token_reused", "message": "m", "type": "invalid_request_error"}},
     Failure.DEAD, "log in again (refresh_token_reused)"),
    (401, {"error": {"code": "refresh_token_expired"}}, Failure.DEAD,
     "log in again (refresh_token_expired)"),
    (400, {"error": "refresh_token_invalidated"}, Failure.DEAD,
     "log in again (refresh_token_invalidated)"),
    (401, None, Failure.DEAD, "log in again (HTTP 401)"),
    (401, {"error": "whatever"}, Failure.DEAD, "log in again (HTTP 401)"),
    (400, {"error": "invalid_client"}, Failure.DEAD,
     "the token endpoint refused the refresh (400 invalid_client): check token_url and "
     "client_id, or log in again"),
    (403, {"error": "old-refresh has spaces"}, Failure.DEAD,
     "the token endpoint refused the refresh (403): check token_url and client_id, or log in "
     "again"),
    (500, None, Failure.RETRY, "the token endpoint answered 500"),
    (503, {"error": "invalid_grant_but_not_really"}, Failure.RETRY,
     "the token endpoint answered 503"),
    (429, None, Failure.RETRY, "the token endpoint answered 429"),
    (408, None, Failure.RETRY, "the token endpoint answered 408"),
])
def test_failures(status: int, body: Any, kind: Failure, reason: str) -> None:
    raw = json.dumps(body).encode() if body is not None else b"Bad Gateway"
    failed = read_answer("chatgpt", status, raw, OLD, NOW)
    assert failed == RefreshFailed(kind, reason, status)
    assert "old-refresh" not in failed.reason


def test_no_answer_at_all_is_retried() -> None:
    assert classify_failure(None, None) == RefreshFailed(
        Failure.RETRY, "the token endpoint could not be reached", None)


@pytest.mark.parametrize("expires_at, retry_at, plan, at", [
    (NOW + 3600, 0.0, TokenPlan.FRESH, NOW + 3300),
    (NOW + 301, 0.0, TokenPlan.FRESH, NOW + 1),
    (NOW + 300, 0.0, TokenPlan.DUE, NOW),
    (NOW + 10, 0.0, TokenPlan.DUE, NOW - 290),
    (NOW + 10, NOW + 5, TokenPlan.FRESH, NOW + 5),  # a failed try waits, the token is used
    (NOW, 0.0, TokenPlan.EXPIRED, NOW),
    (NOW - 50, NOW + 5, TokenPlan.EXPIRED, NOW + 5),
    (None, 0.0, TokenPlan.FRESH, None),
])
def test_refresh_plan(expires_at: float | None, retry_at: float, plan: TokenPlan,
                      at: float | None) -> None:
    due = refresh_plan(Tokens("a", "r", expires_at), NOW, 300, retry_at)
    assert (due.plan, due.at) == (plan, at)


def test_retry_delay_doubles_up_to_a_cap() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert retry_delay(30) == 300 and retry_delay(0) == 5


def test_is_newer() -> None:
    a = Tokens("a1", "r1", NOW + 10)
    assert is_newer(Tokens("a2", "r2", NOW + 20), a)
    assert not is_newer(Tokens("a0", "r0", NOW + 5), a)
    assert not is_newer(a, a)
    assert not is_newer(Tokens("a2", "r2", None), a)


@pytest.mark.parametrize("values, merged", [
    ([], "oauth-2025-04-20"),
    (["claude-code-20250219"], "claude-code-20250219,oauth-2025-04-20"),
    (["a, b", "b,c"], "a,b,c,oauth-2025-04-20"),
    (["oauth-2025-04-20,x"], "oauth-2025-04-20,x"),
    ([" , ,"], "oauth-2025-04-20"),
])
def test_merge_beta(values: list[str], merged: str) -> None:
    assert merge_beta(values) == merged


def test_tokens_repr_and_secrets() -> None:
    assert "old-access" not in repr(OLD) and "old-refresh" not in repr(OLD)
    assert OLD.secrets() == ["old-access", "old-refresh", "old-id", "acct-1"]


def test_fingerprint_names_a_token_without_holding_it() -> None:
    assert fingerprint("old-access") == fingerprint("old-access") != fingerprint("other")
    assert len(fingerprint("old-access")) == 16 and "old-access" not in fingerprint("old-access")
