"""What the fake answers the real CLIs' non-model calls: by the credential, never by the client."""

import pytest

from fakeapi.oauth import Check
from fakeapi.startup import CHATGPT_ORIGIN, NO_POLICY, reply
from fakeapi.wire import Reply

SEATS = {"tok-seat-1": ("chatgpt-seat-1", "ws-team"), "tok-other": ("chatgpt-x", "ws-x")}


def ask(method, target, host=None, token=None, **headers):
    if host:
        headers["x-fake-original-host"] = host
    if token:
        headers["authorization"] = f"Bearer {token}"
    return reply(method, target, headers, SEATS)


def test_claude_code_gets_an_empty_policy_and_no_extras() -> None:
    policy = ask("GET", "/api/claude_code/policy_limits", "api.anthropic.com")
    assert policy is not None and (policy.status, policy.body) == (200, NO_POLICY)
    flags = ask("POST", "/api/eval/sdk-abc", "api.anthropic.com")
    assert flags is not None and flags.status == 404 and flags.body["type"] == "error"
    # settings keep the generic echo, which Claude Code reads as "no managed settings"
    assert ask("GET", "/api/claude_code/settings", "api.anthropic.com") is None


def test_workspaces_follow_the_token_not_the_client() -> None:
    check = ask("GET", "/backend-api/wham/accounts/check", "chatgpt.com", "tok-seat-1",
                **{"chatgpt-account-id": "ws-x"})
    assert check is not None and check.status == 200
    [workspace] = check.body["accounts"]
    assert workspace["id"] == "ws-team" and check.body["account_ordering"] == ["ws-team"]
    assert workspace["workspace_backend_origin"] == CHATGPT_ORIGIN
    assert workspace["account_routing_override"] == "NO_CONSTRAINT"
    unknown = ask("GET", "/backend-api/wham/accounts/check", "chatgpt.com", "client-own-jwt")
    assert unknown is not None and unknown.status == 401


@pytest.mark.parametrize("method, target, status", [
    ("GET", "/backend-api/codex/models?client_version=0.169.0", 200),
    ("GET", "/backend-api/ps/plugins/installed?limit=200", 404),
    ("POST", "/backend-api/ps/mcp", 404),
    ("GET", "/backend-api/wham/settings/user", 404),
])
def test_chatgpt_extras(method: str, target: str, status: int) -> None:
    answer = ask(method, target, "chatgpt.com", "tok-seat-1")
    assert answer is not None and answer.status == status
    if status == 200:
        assert answer.body == {"models": []}


@pytest.mark.parametrize("host", ["api.github.com", "statsig.anthropic.com", "ab.chatgpt.com"])
def test_hosts_of_no_provider_get_a_quick_404(host: str) -> None:
    answer = ask("GET", "/anything", host, "tok-seat-1")
    assert answer is not None and answer.status == 404 and host in answer.body["error"]


def test_direct_requests_keep_the_generic_answers() -> None:
    assert ask("GET", "/v1/models") is None
    assert ask("GET", "/echo/anything") is None
    assert ask("GET", "/api/claude_code/settings?x=1") is None


# ---- subscription logins: answered by the login's access token -----------------------------
def logins_with(tokens: dict[str, Check]):
    def check(family, headers):
        scheme, _, token = headers.get("authorization", "").partition(" ")
        return tokens.get(token) if family in ("anthropic", "chatgpt") else None
    return check


LOGINS = logins_with({
    "at-claude": Check("sub-claude", None),
    "at-expired": Check(None, Reply(401, {"type": "error"}, error_code="authentication_error")),
    "at-codex": Check("sub-codex", None),
})


def login_ask(method, target, host, token=None, **headers):
    if token:
        headers["authorization"] = f"Bearer {token}"
    return reply(method, target, {"x-fake-original-host": host, **headers}, SEATS, LOGINS)


def test_claude_code_profile_is_the_logins_own() -> None:
    profile = login_ask("GET", "/api/oauth/profile", "api.anthropic.com", "at-claude")
    assert profile is not None and profile.status == 200
    assert profile.body["account"]["email"] == "sub-claude@example.test"
    assert profile.body["organization"]["organization_type"] == "claude_max"
    assert profile.body["account"]["uuid"] != profile.body["organization"]["uuid"]
    again = login_ask("GET", "/api/oauth/profile", "api.anthropic.com", "at-claude")
    assert again is not None and again.body == profile.body  # stable per account


@pytest.mark.parametrize("token, headers, status", [
    (None, {}, 401),  # no login
    ("sk-ant-api-key", {"x-api-key": "sk-ant-api-key"}, 401),  # an API key is no login
    ("at-expired", {}, 401),  # the login's own refusal
])
def test_claude_code_profile_needs_a_live_login(token, headers, status) -> None:
    answer = login_ask("GET", "/api/oauth/profile", "api.anthropic.com", token, **headers)
    assert answer is not None and answer.status == status and answer.body["type"] == "error"


def test_other_subscription_calls_are_absent() -> None:
    usage = login_ask("GET", "/api/oauth/usage", "api.anthropic.com", "at-claude")
    assert usage is not None and usage.status == 404


def test_chatgpt_calls_take_a_logins_access_token() -> None:
    models = login_ask("GET", "/backend-api/codex/models", "chatgpt.com", "at-codex",
                       **{"chatgpt-account-id": "acct-codex"})
    assert models is not None and (models.status, models.body) == (200, {"models": []})
    check = login_ask("GET", "/backend-api/wham/accounts/check", "chatgpt.com", "at-codex",
                      **{"chatgpt-account-id": "acct-codex"})
    assert check is not None and check.body["account_ordering"] == ["acct-codex"]
    refused = login_ask("GET", "/backend-api/codex/models", "chatgpt.com", "at-expired")
    assert refused is not None and refused.status == 401
