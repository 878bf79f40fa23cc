"""Subscription logins of the fake: OAuth token endpoints and the access tokens they issue.

Two shapes, as the real providers answer them:
- Codex (auth.openai.com): POST /oauth/token, JSON {client_id, grant_type, refresh_token} ->
  {access_token, refresh_token, id_token, expires_in}; failures as OpenAI error objects with
  `code` refresh_token_reused / refresh_token_invalidated (HTTP 401), or OAuth's invalid_grant.
- Claude (platform.claude.com): POST /v1/oauth/token, JSON {grant_type, refresh_token,
  client_id} -> {access_token, refresh_token, expires_in, ...}; failures OAuth-shaped
  {"error": "invalid_grant"} (HTTP 400).

Access tokens are JWTs nobody verifies, whose `exp` is their expiry (the Codex one carries the
ChatGPT account id claim). Once expired they get a 401 in the provider's shape (ChatGPT
`token_expired`, Anthropic `authentication_error`). Refresh tokens are single-use: sending a
spent one revokes the whole login, its access tokens included, and is counted, so tests can
assert that the proxy never did. Anthropic takes a Bearer token only with the oauth beta flag.

State lives behind the upstream's lock; the clock (wall time, as JWT `exp` is) is injected.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .wire import Reply, anthropic_error, openai_error

CODEX_CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
CLAUDE_CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
CLIENT_IDS = {"chatgpt": CODEX_CLIENT_ID, "anthropic": CLAUDE_CLIENT_ID}
# path -> family whose token endpoint it is
TOKEN_PATHS = {"/oauth/token": "chatgpt", "/v1/oauth/token": "anthropic"}
OAUTH_BETA = "oauth-2025-04-20"
AUTH_CLAIM = "https://api.openai.com/auth"
FAMILIES = ("chatgpt", "anthropic")


@dataclass(frozen=True)
class Issued:
    """Tokens the fake handed out for one login (at creation or by a refresh)."""

    login: str
    family: str
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float
    id_token: str | None = field(default=None, repr=False)
    chatgpt_account_id: str | None = None


@dataclass
class _Login:
    name: str
    account: str  # the fake account whose server-side state requests of this login use
    family: str
    access_ttl: float
    chatgpt_account_id: str | None
    rotate: bool  # hand out a new refresh token on every refresh
    refresh_token: str = ""  # the one valid refresh token
    spent: set[str] = field(default_factory=set)
    access: dict[str, float] = field(default_factory=dict)  # access token -> expiry
    revoked: bool = False
    refreshes: int = 0
    reused: int = 0


@dataclass(frozen=True)
class Check:
    """An Authorization bearer that is one of our access tokens: whose, or the 401 to send."""

    account: str | None
    refusal: Reply | None


class OAuthLogins:
    def __init__(self, clock: Callable[[], float] = time.time,
                 access_ttl: float = 3600.0) -> None:
        self.clock = clock
        self.access_ttl = access_ttl
        self._logins: dict[str, _Login] = {}
        self._by_refresh: dict[str, _Login] = {}  # every refresh token ever issued
        self._by_access: dict[str, _Login] = {}
        self._id_tokens: dict[str, _Login] = {}
        self._seq = itertools.count(1)

    # ---- tests' side ---------------------------------------------------------------------
    def create(self, account: str, family: str = "chatgpt", *, login: str | None = None,
               access_ttl: float | None = None, chatgpt_account_id: str | None = None,
               rotate: bool = True) -> Issued:
        """A new login whose requests count as `account`; returns its first tokens."""
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
        name = login or f"login-{next(self._seq)}"
        if name in self._logins:
            raise ValueError(f"login {name!r} exists")
        if family == "chatgpt" and chatgpt_account_id is None:
            chatgpt_account_id = f"acct-{account}"
        state = _Login(name, account, family,
                       self.access_ttl if access_ttl is None else access_ttl,
                       chatgpt_account_id, rotate)
        self._logins[name] = state
        return self._issue(state, new_refresh=True)

    def refreshes(self, login: str) -> int:
        return self._logins[login].refreshes

    def reused(self, login: str) -> int:
        """Spent refresh tokens sent again for this login (each one revoked it)."""
        return self._logins[login].reused

    def revoked(self, login: str) -> bool:
        return self._logins[login].revoked

    def revoke(self, login: str) -> None:
        """Kill a login as the provider would (a password change, a logout elsewhere)."""
        self._logins[login].revoked = True

    def expire(self, login: str) -> None:
        """End the login's access tokens now, ahead of their `exp` (as a provider may): the
        next request with one gets the provider's 401, and a refresh is due."""
        now = self.clock()
        state = self._logins[login]
        for token in state.access:
            state.access[token] = min(state.access[token], now)

    def secrets(self, login: str | None = None) -> set[str]:
        """Every token this fake ever issued, or those of one login, with the ChatGPT account
        ids (tests search what the proxy wrote or sent for them)."""
        issued = self._by_refresh | self._by_access | self._id_tokens
        out = {token for token, state in issued.items() if login in (None, state.name)}
        out |= {s.chatgpt_account_id for s in self._logins.values()
                if s.chatgpt_account_id and login in (None, s.name)}
        return out

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per login: refreshes, reused, revoked, account, family (no token)."""
        return {s.name: {"account": s.account, "family": s.family, "refreshes": s.refreshes,
                         "reused": s.reused, "revoked": s.revoked}
                for s in self._logins.values()}

    def clear(self) -> None:
        self._logins.clear()
        self._by_refresh.clear()
        self._by_access.clear()
        self._id_tokens.clear()

    # ---- the wire --------------------------------------------------------------------------
    def token_endpoint(self, family: str, body: Any) -> tuple[Reply, str | None]:
        """The answer to a refresh, and the login it was for (None: unknown token)."""
        if not isinstance(body, dict):
            return _oauth_error(400, "invalid_request", "body must be a JSON object"), None
        if body.get("grant_type") != "refresh_token":
            return _oauth_error(400, "unsupported_grant_type",
                                "grant_type must be refresh_token"), None
        if body.get("client_id") != CLIENT_IDS[family]:
            return _oauth_error(400, "invalid_client", "unknown client_id"), None
        token = body.get("refresh_token")
        state = self._by_refresh.get(token) if isinstance(token, str) else None
        if state is None or state.family != family:
            return _oauth_error(400, "invalid_grant", "unknown refresh token"), None
        if token in state.spent:
            state.reused += 1
            state.revoked = True
            return _refused(family, "refresh_token_reused",
                            "Your refresh token has already been used to generate a new access "
                            "token. Please try signing in again."), state.name
        if state.revoked or token != state.refresh_token:
            return _refused(family, "refresh_token_invalidated",
                            "Your refresh token has been invalidated. Please try signing in "
                            "again."), state.name
        state.refreshes += 1
        issued = self._issue(state, new_refresh=state.rotate)
        return Reply(200, _token_answer(issued, self.clock(), state.rotate)), state.name

    def check(self, family: str, headers: Mapping[str, str]) -> Check | None:
        """None when the bearer is none of our access tokens (the caller goes on as before)."""
        scheme, _, token = headers.get("authorization", "").partition(" ")
        state = self._by_access.get(token.strip()) if scheme.lower() == "bearer" else None
        if state is None:
            return None
        if state.family != family:
            return Check(None, _expired(family, "This token is not valid for this API."))
        if family == "anthropic" and OAUTH_BETA not in _flags(headers.get("anthropic-beta", "")):
            return Check(None, anthropic_error(401, "authentication_error",
                                               "OAuth authentication is currently not "
                                               "supported."))
        if family == "chatgpt" and headers.get("chatgpt-account-id") != state.chatgpt_account_id:
            return Check(None, openai_error(401, "Unauthorized: ChatGPT-Account-ID mismatch.",
                                            "invalid_request_error", "account_mismatch"))
        if state.revoked:
            return Check(None, _expired(family, "Your authentication token has been "
                                                "invalidated. Please try signing in again.",
                                        code="token_invalidated"))
        if state.access[token.strip()] <= self.clock():
            return Check(None, _expired(family, "Provided authentication token is expired. "
                                                "Please try signing in again."))
        return Check(state.account, None)

    # ---- inside ----------------------------------------------------------------------------
    def _issue(self, state: _Login, new_refresh: bool) -> Issued:
        now = self.clock()
        exp = now + state.access_ttl
        claims: dict[str, Any] = {"iss": "fakeapi", "sub": state.name, "iat": int(now),
                                  "exp": exp, "jti": secrets.token_hex(8)}
        if state.family == "chatgpt":
            claims[AUTH_CLAIM] = {"chatgpt_account_id": state.chatgpt_account_id,
                                  "chatgpt_plan_type": "pro"}
        access = make_jwt(claims)
        if new_refresh:
            if state.refresh_token:
                state.spent.add(state.refresh_token)
            prefix = "rt_" if state.family == "chatgpt" else "sk-ant-ort01-"
            state.refresh_token = prefix + secrets.token_urlsafe(24)
            self._by_refresh[state.refresh_token] = state
        state.access[access] = exp
        self._by_access[access] = state
        id_token = None
        if state.family == "chatgpt":
            id_token = make_jwt({"iss": "fakeapi", "sub": state.name, "exp": exp,
                                 "email": f"{state.account}@example.test",
                                 AUTH_CLAIM: {"chatgpt_account_id": state.chatgpt_account_id}})
            self._id_tokens[id_token] = state
        return Issued(state.name, state.family, access, state.refresh_token, exp, id_token,
                      state.chatgpt_account_id)


def make_jwt(claims: Mapping[str, Any]) -> str:
    """A JWT whose signature nobody checks: what a reader of `exp` and claims needs.

    The third part is not empty, as in the providers' signed tokens: the Codex CLI refuses an
    auth.json whose tokens have an empty signature part (an unsecured `alg: none` JWT).
    """
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signed = f"{b64(json.dumps({'alg': 'RS256', 'typ': 'JWT'}).encode())}." \
             f"{b64(json.dumps(claims).encode())}"
    return f"{signed}.{b64(hashlib.sha256(signed.encode()).digest())}"


def _flags(value: str) -> set[str]:
    return {f.strip() for f in value.split(",") if f.strip()}


def _token_answer(issued: Issued, now: float, with_refresh: bool) -> dict[str, Any]:
    answer: dict[str, Any] = {"access_token": issued.access_token, "token_type": "Bearer",
                              "expires_in": max(0, int(issued.expires_at - now))}
    if with_refresh:
        answer["refresh_token"] = issued.refresh_token
    if issued.family == "chatgpt":
        answer["id_token"] = issued.id_token
        answer["scope"] = "openid profile email offline_access"
    else:
        answer["scope"] = "user:inference user:profile"
        answer["account"] = {"uuid": issued.login, "email_address": "user@example.test"}
    return answer


def _oauth_error(status: int, code: str, description: str) -> Reply:
    return Reply(status, {"error": code, "error_description": description}, error_code=code)


def _refused(family: str, code: str, message: str) -> Reply:
    """A refresh of a spent token or of a dead login, in the family's shape."""
    if family == "chatgpt":
        return openai_error(401, message, "invalid_request_error", code)
    return _oauth_error(400, "invalid_grant", message)


def _expired(family: str, message: str, code: str = "token_expired") -> Reply:
    if family == "anthropic":
        return anthropic_error(401, "authentication_error", message)
    return openai_error(401, message, "invalid_request_error", code)


# ---- login files, as the CLIs write them ------------------------------------------------------
def codex_auth(issued: Issued, account_id: str | None = None) -> dict[str, Any]:
    """A Codex CLI auth.json for these tokens."""
    return {
        "OPENAI_API_KEY": None,
        "tokens": {"id_token": issued.id_token, "access_token": issued.access_token,
                   "refresh_token": issued.refresh_token,
                   "account_id": account_id or issued.chatgpt_account_id},
        "last_refresh": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


def claude_credentials(issued: Issued) -> dict[str, Any]:
    """A Claude Code .credentials.json for these tokens."""
    return {"claudeAiOauth": {
        "accessToken": issued.access_token, "refreshToken": issued.refresh_token,
        "expiresAt": int(issued.expires_at * 1000),
        "scopes": ["user:inference", "user:profile", "user:sessions:claude_code"],
        "subscriptionType": "max", "rateLimitTier": "default_claude_max_20x"}}


def write_login_file(path: str | Path, issued: Issued) -> Path:
    """Write the login file the family's CLI would have written (mode 0600)."""
    p = Path(path)
    doc = codex_auth(issued) if issued.family == "chatgpt" else claude_credentials(issued)
    text = json.dumps(doc, indent=2) if issued.family == "chatgpt" else json.dumps(doc)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.")
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, p)
    return p
