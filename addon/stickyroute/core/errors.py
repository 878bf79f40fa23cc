"""Answers the proxy gives itself instead of the provider: provider-shaped errors (no account
available, moves refused), and ChatGPT's workspace discovery.

The message says which account and why, and never carries a credential.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class NoAccount(Exception):
    """No account can serve this request; knows the status and body to answer with."""

    provider: str
    message: str
    status: int = 503
    code: str = "no_account_available"
    retry_after: int | None = None

    def __str__(self) -> str:
        return self.message

    def body(self) -> bytes:
        return error_body(self.provider, self.status, self.message, self.code)

    def headers(self) -> dict[str, str]:
        h = {"content-type": "application/json", "x-stickyroute-error": self.code}
        if self.retry_after is not None:
            h["retry-after"] = str(self.retry_after)
        return h


def error_body(provider: str, status: int, message: str, code: str) -> bytes:
    """An error JSON in the provider's own shape, so SDKs surface the message."""
    if provider == "anthropic":
        kind = {429: "rate_limit_error", 401: "authentication_error"}.get(status, "api_error")
        if status == 503:
            kind = "overloaded_error"
        doc: dict[str, object] = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        kind = {429: "rate_limit_error", 401: "invalid_request_error"}.get(status, "server_error")
        doc = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return json.dumps(doc).encode()


def workspaces_answer(workspace: str) -> bytes:
    """What ChatGPT's workspace discovery (`/backend-api/wham/accounts/check`) answers a client
    whose requests the proxy routes: the client's own workspace, on chatgpt.com, with no
    routing constraint.

    The Codex CLI asks it before its first turn and stops when the workspace it logged in with
    is not listed. Signed with a pool account's token, the provider would list that account's
    workspace instead; but which account serves is the proxy's decision, so the client's own
    workspace is the true answer for it.
    """
    entry = {"id": workspace, "name": None, "structure": "personal",
             "workspace_backend_origin": "https://chatgpt.com",
             "account_routing_override": "NO_CONSTRAINT"}
    return json.dumps({"accounts": [entry], "account_ordering": [workspace]}).encode()
