"""What the real CLIs ask for besides the model API, answered the way the providers do.

Claude Code reads its organisation's policy (`/api/claude_code/policy_limits`) before the first
turn and retries until it gets one; Codex in ChatGPT mode lists models, asks which workspaces its
token may use (`/backend-api/wham/accounts/check`) and where their backend lives, and looks for
plugins and apps. Each answer here is the smallest one the CLI accepts, and depends only on the
credential the request arrived with, as a real provider's would: the fake never trusts what a
client says about itself. Hosts that are not a provider's get a 404, so a test that sends every
host to the fake stays offline without hanging on anything.

Never answers a model request (handler.ROUTES does); never raises on odd input.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from .wire import Reply, anthropic_error

PROVIDER_HOSTS = frozenset({"api.openai.com", "api.anthropic.com", "chatgpt.com"})
CHATGPT_ORIGIN = "https://chatgpt.com"

# Claude Code's own default when no organisation restricts anything.
NO_POLICY = {"restrictions": {}, "compliance_taints": [], "monitoring_notice": None,
             "defaults": {}}


def reply(method: str, target: str, headers: Mapping[str, str],
          chatgpt_accounts: Mapping[str, tuple[str, str]]) -> Reply | None:
    """The answer to a non-model request, or None to let the caller answer it generically.

    `chatgpt_accounts`: the fake's ChatGPT tokens, token -> (account name, workspace id).
    """
    host = (headers.get("x-fake-original-host") or "").lower()
    path = urlsplit(target).path
    if host and host not in PROVIDER_HOSTS:
        return Reply(404, {"error": f"the fake upstream does not serve {host}"})
    if method == "GET" and path == "/api/claude_code/policy_limits":
        return Reply(200, NO_POLICY)
    if path.startswith("/api/") and host == "api.anthropic.com" and path not in _ECHOED:
        # feature flags, telemetry, bootstrap data: absent for an API-key organisation
        return anthropic_error(404, "not_found_error", f"{path} is not served by the fake")
    if path.startswith("/backend-api/"):
        scheme, _, token = headers.get("authorization", "").partition(" ")
        known = chatgpt_accounts.get(token.strip()) if scheme.lower() == "bearer" else None
        return _chatgpt(method, path, known[1] if known else None)
    return None


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
