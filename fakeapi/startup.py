"""What the real CLIs ask for besides the model API, answered the way the providers do.

Claude Code reads its organisation's policy (`/api/claude_code/policy_limits`) before the first
turn and retries until it gets one; logged in with a subscription (OAuth) it reads its profile
(`/api/oauth/profile`: account, organisation, plan) instead. Codex in ChatGPT mode lists models,
asks which workspaces its token may use (`/backend-api/wham/accounts/check`) and where their
backend lives, and looks for plugins and apps. Each answer here is the smallest one the CLI
accepts, and depends only on the credential the request arrived with (a ChatGPT token, or an
access token of one of the fake's logins), as a real provider's would: the fake never trusts what
a client says about itself. Hosts that are not a provider's get a 404, so a test that sends every
host to the fake stays offline without hanging on anything.

Never answers a model request (handler.ROUTES does); never raises on odd input.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from .oauth import Check
from .wire import Reply, anthropic_error

PROVIDER_HOSTS = frozenset({"api.openai.com", "api.anthropic.com", "chatgpt.com"})
CHATGPT_ORIGIN = "https://chatgpt.com"

# Claude Code's own default when no organisation restricts anything.
NO_POLICY = {"restrictions": {}, "compliance_taints": [], "monitoring_notice": None,
             "defaults": {}}


# family, headers -> whose login access token the request carries (None: no login's)
LoginCheck = Callable[[str, Mapping[str, str]], Check | None]


def _no_logins(family: str, headers: Mapping[str, str]) -> Check | None:
    return None


def reply(method: str, target: str, headers: Mapping[str, str],
          chatgpt_accounts: Mapping[str, tuple[str, str]],
          logins: LoginCheck = _no_logins) -> Reply | None:
    """The answer to a non-model request, or None to let the caller answer it generically.

    `chatgpt_accounts`: the fake's ChatGPT tokens, token -> (account name, workspace id);
    `logins`: the fake's check of a login's access token (OAuthLogins.check).
    """
    host = (headers.get("x-fake-original-host") or "").lower()
    path = urlsplit(target).path
    if host and host not in PROVIDER_HOSTS:
        return Reply(404, {"error": f"the fake upstream does not serve {host}"})
    if method == "GET" and path == "/api/claude_code/policy_limits":
        return Reply(200, NO_POLICY)
    if path.startswith("/api/oauth/") and host == "api.anthropic.com":
        return _claude_login(method, path, logins("anthropic", headers))
    if path.startswith("/api/") and host == "api.anthropic.com" and path not in _ECHOED:
        # feature flags, telemetry, bootstrap data: absent for an API-key organisation
        return anthropic_error(404, "not_found_error", f"{path} is not served by the fake")
    if path.startswith("/backend-api/"):
        scheme, _, token = headers.get("authorization", "").partition(" ")
        known = chatgpt_accounts.get(token.strip()) if scheme.lower() == "bearer" else None
        if known is not None:
            return _chatgpt(method, path, known[1])
        login = logins("chatgpt", headers)
        if login is not None and login.refusal is not None:
            return login.refusal  # expired, revoked, or sent with another workspace's id
        # the check matched ChatGPT-Account-ID to the login's own workspace
        return _chatgpt(method, path, headers.get("chatgpt-account-id") if login else None)
    return None


def _claude_login(method: str, path: str, login: Check | None) -> Reply:
    """Claude Code's subscription calls: only a login's access token gets an answer."""
    if login is None:
        return anthropic_error(401, "authentication_error",
                               "OAuth authentication is required for this endpoint.")
    if login.refusal is not None:
        return login.refusal
    if method == "GET" and path == "/api/oauth/profile" and login.account is not None:
        return Reply(200, _profile(login.account))
    # usage, roles, account settings, ...: Claude Code goes on without them
    return anthropic_error(404, "not_found_error", f"{path} is not served by the fake")


def _profile(account: str) -> dict[str, object]:
    """The profile of the login's account: a Claude Max subscriber of a personal organisation."""
    ids = {part: str(uuid.uuid5(uuid.NAMESPACE_URL, f"fakeapi:{part}:{account}"))
           for part in ("account", "organization")}
    return {
        "account": {"uuid": ids["account"], "email": f"{account}@example.test",
                    "full_name": account, "display_name": account, "has_claude_max": True,
                    "has_claude_pro": False, "created_at": "2025-01-01T00:00:00Z"},
        "organization": {"uuid": ids["organization"], "name": f"{account}'s Organization",
                         "organization_type": "claude_max",
                         "billing_type": "stripe_subscription",
                         "rate_limit_tier": "default_claude_max_20x",
                         "has_extra_usage_enabled": False,
                         "subscription_created_at": "2025-01-01T00:00:00Z"},
    }


# Paths whose generic echo (handler._echo) tests rely on; Claude Code reads its `settings`.
_ECHOED = frozenset({"/api/claude_code/settings"})


def _chatgpt(method: str, path: str, account_id: str | None) -> Reply | None:
    if account_id is None:
        return Reply(401, {"detail": "Unauthorized: unknown token."})
    if method == "GET" and path == "/backend-api/codex/models":
        return Reply(200, {"models": []})  # Codex keeps its built-in model list
    if method == "GET" and path == "/backend-api/wham/accounts/check":
        return Reply(200, _workspaces(account_id))
    if path == "/backend-api/codex/responses":
        return None  # a model request with the wrong method: the generic answer
    return Reply(404, {"detail": "Not Found"})  # plugins, apps, user settings, ...


def _workspaces(account_id: str) -> dict[str, object]:
    """The workspaces a token may use: its own, served from chatgpt.com without a constraint."""
    workspace = {"id": account_id, "name": None, "structure": "personal", "plan_type": "plus",
                 "workspace_backend_origin": CHATGPT_ORIGIN,
                 "account_routing_override": "NO_CONSTRAINT"}
    return {"accounts": [workspace], "account_ordering": [account_id]}
