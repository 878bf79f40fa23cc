"""What the fake answers the real CLIs' non-model calls: by the credential, never by the client."""

import pytest

from fakeapi.startup import CHATGPT_ORIGIN, NO_POLICY, reply

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
