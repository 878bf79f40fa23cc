"""OAuth logins of subscription accounts (Codex CLI / ChatGPT, Claude Code): the wire, pure.

Owns what a refresh sends and how its answer reads: the token request per provider, parsing the
answer (the old refresh token stays when no new one comes), classifying failures (a dead login
versus a try-again), when a token is due for a refresh, and the `anthropic-beta` merge. The
login itself (its tokens, where it lives, its JWT claims) is config/oauth.py's.

No I/O and no clock here: `now` (wall-clock epoch seconds) is always passed in. A token must
never appear in a reason, an error message or a repr.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from stickyroute.config.oauth import LoginSource, Tokens, chatgpt_account_id, jwt_expiry

OAUTH_BETA = "oauth-2025-04-20"  # Anthropic takes a Bearer token only with this beta

# Error codes that mean the refresh token is spent or dead: only a new login helps.
DEAD_CODES = frozenset({"invalid_grant", "refresh_token_reused", "refresh_token_expired",
                        "refresh_token_invalidated"})
RETRY_FIRST = 5.0  # seconds before the first retry after a transient failure
RETRY_MAX = 300.0
_CODE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # an error code safe to show


def fingerprint(token: str) -> str:
    """A short, stable name for a token that may be kept in flow metadata (not the token)."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


# ---- the refresh request and its answer --------------------------------------------------------
@dataclass(frozen=True)
class TokenRequest:
    url: str
    body: bytes = field(repr=False)  # holds the refresh token
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),
                                            ("accept", "application/json"))


def refresh_request(source: LoginSource, tokens: Tokens) -> TokenRequest:
    """The POST that trades this login's refresh token for new tokens."""
    if source.provider == "chatgpt":
        body = {"client_id": source.client_id, "grant_type": "refresh_token",
                "refresh_token": tokens.refresh_token}
    elif source.provider == "anthropic":
        body = {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token,
                "client_id": source.client_id}
    else:
        raise ValueError(f"provider {source.provider!r} has no OAuth login")
    return TokenRequest(source.token_url, json.dumps(body).encode())


class Failure(StrEnum):
    DEAD = "dead"  # the login cannot be refreshed again: log in again
    RETRY = "retry"  # the endpoint is down or odd: try later with the same refresh token


@dataclass(frozen=True)
class RefreshFailed:
    kind: Failure
    reason: str  # for people: never holds a token
    status: int | None = None  # None: no HTTP answer at all


def read_answer(provider: str, status: int, body: bytes, old: Tokens,
                now: float) -> Tokens | RefreshFailed:
    """New tokens from a token endpoint's answer, or why not."""
    data = _json(body)
    if status != 200:
        return classify_failure(status, data)
    access = data.get("access_token") if data else None
    if not isinstance(access, str) or not access:
        return RefreshFailed(Failure.RETRY, "the token endpoint answered 200 without an "
                                            "access_token", status)
    assert data is not None
    refresh = data.get("refresh_token")
    id_token = data.get("id_token")
    expires_at = jwt_expiry(access)
    expires_in = data.get("expires_in")
    if expires_at is None and isinstance(expires_in, int | float) \
            and not isinstance(expires_in, bool) and math.isfinite(expires_in):
        expires_at = now + float(expires_in)
    account_id = old.account_id
    if provider == "chatgpt":
        account_id = chatgpt_account_id(access) or account_id
    return Tokens(
        access_token=access,
        refresh_token=refresh if isinstance(refresh, str) and refresh else old.refresh_token,
        expires_at=expires_at,
        id_token=id_token if isinstance(id_token, str) and id_token else old.id_token,
        account_id=account_id,
    )


def classify_failure(status: int | None, data: Mapping[str, Any] | None) -> RefreshFailed:
    """Dead login (log in again) or a failure worth retrying; status None: no answer at all."""
    if status is None:
        return RefreshFailed(Failure.RETRY, "the token endpoint could not be reached", None)
    codes = _error_codes(data)
    dead = next((c for c in codes if c in DEAD_CODES), None)
    if dead is not None or status == 401:
        return RefreshFailed(Failure.DEAD, f"log in again ({dead or f'HTTP {status}'})", status)
    if status >= 500 or status in (408, 429):
        return RefreshFailed(Failure.RETRY, f"the token endpoint answered {status}", status)
    shown = next((c for c in codes if _CODE_RE.match(c)), None)
    detail = f"{status} {shown}" if shown else str(status)
    # invalid_client and the like: the refresh token is unspent, but retrying cannot help.
    return RefreshFailed(Failure.DEAD, f"the token endpoint refused the refresh ({detail}): "
                                       "check token_url and client_id, or log in again", status)


def _json(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeError):
        return None
    return data if isinstance(data, dict) else None


def _error_codes(data: Mapping[str, Any] | None) -> list[str]:
    """Every error code an answer carries: OAuth's `error`, OpenAI's `error.code`/`type`."""
    if not data:
        return []
    out: list[Any] = [data.get("code")]
    error = data.get("error")
    if isinstance(error, dict):
        out += [error.get("code"), error.get("type")]
    else:
        out.append(error)
    return [c for c in out if isinstance(c, str) and c]


# ---- when to refresh ---------------------------------------------------------------------------
class TokenPlan(StrEnum):
    FRESH = "fresh"  # use it; nothing to do
    DUE = "due"  # use it; a background refresh should run now
    EXPIRED = "expired"  # do not send it: refresh first


@dataclass(frozen=True)
class Due:
    plan: TokenPlan
    at: float | None  # when the next refresh is due (None: never on its own)


def refresh_plan(tokens: Tokens, now: float, margin: float, retry_at: float = 0.0) -> Due:
    """What to do with this token now; a refresh is due `margin` seconds before it expires.

    `retry_at` (after a failed try) postpones a due refresh, never the use of a valid token.
    Unknown expiry: always FRESH; a 401 from the provider is what triggers its refresh.
    """
    if tokens.expires_at is None:
        return Due(TokenPlan.FRESH, None)
    if tokens.expires_at <= now:
        return Due(TokenPlan.EXPIRED, max(now, retry_at))
    due_at = max(tokens.expires_at - margin, retry_at)
    return Due(TokenPlan.DUE if due_at <= now else TokenPlan.FRESH, due_at)


def retry_delay(failures: int) -> float:
    """Seconds to wait after the `failures`-th transient failure in a row."""
    return min(RETRY_FIRST * 2.0 ** max(0, failures - 1), RETRY_MAX)


def is_newer(candidate: Tokens, current: Tokens) -> bool:
    """Whether candidate tokens replace current ones (a later expiry; unknown counts as older)."""
    if candidate.refresh_token == current.refresh_token \
            and candidate.access_token == current.access_token:
        return False
    return (candidate.expires_at or 0.0) > (current.expires_at or 0.0)


# ---- signing ---------------------------------------------------------------------------------
def merge_beta(values: Iterable[str], flag: str = OAUTH_BETA) -> str:
    """One `anthropic-beta` value: the client's flags in order, `flag` added once at the end."""
    flags: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if part and part not in flags:
                flags.append(part)
    if flag not in flags:
        flags.append(flag)
    return ",".join(flags)
