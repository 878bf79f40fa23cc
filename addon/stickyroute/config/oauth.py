"""An OAuth login of a subscription account as configured: its tokens, where its file lives, how
it is refreshed (token URL, client id), and the JWT claims its tokens carry.

The claims (expiry, ChatGPT account id) are read without a signature check: the tokens come from
our own login file or the provider's answer, never from a client. A token must never appear in
an error message or a repr.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

CODEX_TOKEN_URL = "https://auth.openai.com/oauth/token"
CODEX_CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
CLAUDE_TOKEN_URL = "https://platform.claude.com/v1/oauth/token"
CLAUDE_CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
# provider -> (token_url, client_id) when the accounts file names none
DEFAULTS: dict[str, tuple[str, str]] = {
    "chatgpt": (CODEX_TOKEN_URL, CODEX_CLIENT_ID),
    "anthropic": (CLAUDE_TOKEN_URL, CLAUDE_CLIENT_ID),
}
OPENAI_AUTH_CLAIM = "https://api.openai.com/auth"



@dataclass(frozen=True)
class Tokens:
    """One login's current tokens. expires_at: epoch seconds, None when unknown."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float | None = None
    id_token: str | None = field(default=None, repr=False)
    account_id: str | None = field(default=None, repr=False)  # ChatGPT-Account-ID

    def secrets(self) -> list[str]:
        return [v for v in (self.access_token, self.refresh_token, self.id_token,
                            self.account_id) if v]


@dataclass(frozen=True)
class LoginSource:
    """Where an account's login lives and how it is refreshed (from the accounts file)."""

    provider: str  # chatgpt | anthropic
    file: str
    token_url: str
    client_id: str


# ---- JWT claims ------------------------------------------------------------------------------
def jwt_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT, unverified; None for anything that is not one."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[1]:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, UnicodeError):
        return None
    return claims if isinstance(claims, dict) else None


def jwt_expiry(token: str) -> float | None:
    exp = (jwt_claims(token) or {}).get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
        return None
    return float(exp)


def chatgpt_account_id(token: str) -> str | None:
    auth = (jwt_claims(token) or {}).get(OPENAI_AUTH_CLAIM)
    value = auth.get("chatgpt_account_id") if isinstance(auth, dict) else None
    return value if isinstance(value, str) and value else None


# ---- accounts-file values --------------------------------------------------------------------
def check_token_url(url: str) -> str:
    """The URL if a refresh may be sent there: https, or plain http to a loopback host only."""
    split = urlsplit(url)
    host = split.hostname or ""
    if split.scheme not in ("https", "http") or not host:
        raise ValueError(f"token_url must be an https:// URL, got {url!r}")
    if split.scheme == "http" and not _loopback(host):
        raise ValueError(f"token_url must use https (plain http only to a loopback host), "
                         f"got {url!r}")
    return url


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
