"""Step 1: which provider family and which API a request is for, from host and path only.

Never looks at the body. A host that no account covers is not ours: it returns None and the
request must pass through untouched.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class Endpoint(StrEnum):
    RESPONSES = "responses"
    CHAT = "chat"
    MESSAGES = "messages"
    WORKSPACES = "workspaces"  # ChatGPT's workspace discovery, which the proxy answers itself
    OTHER = "other"


class Route(NamedTuple):
    provider: str
    endpoint: Endpoint


_ENDPOINTS: tuple[tuple[str, Endpoint], ...] = (
    ("/responses", Endpoint.RESPONSES),  # /v1/responses, /backend-api/codex/responses
    ("/chat/completions", Endpoint.CHAT),
    ("/messages", Endpoint.MESSAGES),
    ("/backend-api/wham/accounts/check", Endpoint.WORKSPACES),
)


def endpoint_for(path: str) -> Endpoint:
    """Classify a request path (query ignored) into the API it addresses."""
    path = path.split("?", 1)[0].rstrip("/")
    for suffix, endpoint in _ENDPOINTS:
        if path.endswith(suffix):
            return endpoint
    return Endpoint.OTHER


def classify(provider: str | None, path: str) -> Route | None:
    """`provider` is the family that owns the request's host (None: no account covers it)."""
    if provider is None:
        return None
    endpoint = endpoint_for(path)
    if endpoint is Endpoint.MESSAGES and provider != "anthropic":
        endpoint = Endpoint.OTHER
    if endpoint in (Endpoint.RESPONSES, Endpoint.CHAT) and provider == "anthropic":
        endpoint = Endpoint.OTHER
    if endpoint is Endpoint.WORKSPACES and provider != "chatgpt":
        endpoint = Endpoint.OTHER
    return Route(provider, endpoint)
