"""Step 6 (learn): what an upstream answer says about the account's health, per provider.

Pure: (status, headers, JSON error body) in, an Outcome out. It reads only status, rate-limit
headers and the error's type/code; it must never copy a header value or body text that could
carry a credential into a reason (reasons are shown to operators and clients).
"""

from __future__ import annotations

import email.utils
import functools
import math
import re
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple


class Kind(StrEnum):
    OK = "ok"  # the account served the request
    RATE_LIMITED = "rate_limited"
    QUOTA = "quota"  # usage or billing quota exhausted
    REVOKED = "revoked"  # 401/403: the credential is no good
    OVERLOADED = "overloaded"  # 5xx, 529
    CONNECTION = "connection"  # connection error or timeout
    NEUTRAL = "neutral"  # the client's fault (400, 404, ...): says nothing about the account
    REFRESHED = "refreshed"  # a login's access token was refused and is refreshed: send again
    STOPPED = "stopped"  # cut by the proxy's own shutdown: says nothing about the account


class Outcome(NamedTuple):
    kind: Kind
    reason: str | None = None  # for display: "429 rate_limit_exceeded", never a header value
    reset: float | None = None  # absolute time the provider says the limit resets


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
# x-ratelimit-{remaining,reset,limit}-{requests,tokens}; anthropic-ratelimit-{what}-{field}
_RESET_PAIRS = (
    ("x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"),
    ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
    *((f"anthropic-ratelimit-{w}-remaining", f"anthropic-ratelimit-{w}-reset")
      for w in ("requests", "tokens", "input-tokens", "output-tokens")),
)
_LIMIT_PAIRS = (
    ("x-ratelimit-remaining-requests", "x-ratelimit-limit-requests"),
    ("x-ratelimit-remaining-tokens", "x-ratelimit-limit-tokens"),
    *((f"anthropic-ratelimit-{w}-remaining", f"anthropic-ratelimit-{w}-limit")
      for w in ("requests", "tokens", "input-tokens", "output-tokens")),
)
_RESET_OF = dict(_RESET_PAIRS)
_LIMIT_NAME = {remaining: remaining.removeprefix("x-ratelimit-remaining-").removeprefix(
    "anthropic-ratelimit-").removesuffix("-remaining") for remaining, _ in _LIMIT_PAIRS}
UNIFIED = "anthropic-ratelimit-unified-"  # Anthropic subscriptions' usage windows
QUOTA_CODES = frozenset({"insufficient_quota", "usage_limit_reached", "billing_hard_limit_reached",
                         "usage_not_included", "quota_exceeded"})
_SAFE_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_RESET = 8 * 86400.0  # Codex weekly windows; anything later is a parsing accident


@functools.lru_cache(maxsize=1024)  # every answer has a few; the same ones come back
def parse_duration(text: str) -> float | None:
    """OpenAI's reset form: '1s', '6m0s', '20ms', '1h2m3.5s', or plain seconds."""
    text = text.strip()
    if not text.endswith(("s", "m", "h")):  # no unit: plain seconds or nothing (never float()
        try:  # a unit form first: the exception cost more than the parse)
            return max(0.0, float(text))
        except ValueError:
            return None
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNITS[u] for n, u in parts)


def parse_retry_after(value: str, now: float) -> float | None:
    """Retry-After as delay-seconds or an HTTP date -> absolute time (None if unparsable)."""
    value = value.strip()
    try:
        return now + max(0.0, float(value))
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def parse_timestamp(value: str) -> float | None:
    """RFC 3339 (anthropic-ratelimit-*-reset) -> epoch seconds."""
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _reset_value(name: str, value: str, now: float) -> float | None:
    if name.startswith("anthropic-"):
        return parse_timestamp(value)
    d = parse_duration(value)
    return None if d is None else now + d


def reset_time(headers: Mapping[str, str], now: float) -> float | None:
    """When a limit resets: retry-after-ms, Retry-After, then the exhausted limits' resets."""
    reset: float | None = None
    if "retry-after-ms" in headers:
        try:
            reset = now + max(0.0, float(headers["retry-after-ms"])) / 1000
        except ValueError:
            reset = None
    if reset is None and "retry-after" in headers:
        reset = parse_retry_after(headers["retry-after"], now)
    if reset is None:
        exhausted, known = [], []
        for remaining, reset_name in _RESET_PAIRS:
            if reset_name in headers:
                t = _reset_value(reset_name, headers[reset_name], now)
                if t is not None:
                    known.append(t)
                    if headers.get(remaining, "").strip() == "0":
                        exhausted.append(t)
        # An exhausted limit says which reset matters; otherwise the soonest one is the guess.
        reset = max(exhausted) if exhausted else (min(known) if known else None)
    if reset is None:
        return None
    return min(reset, now + MAX_RESET)


def _error_fields(body: Any) -> tuple[str | None, dict[str, Any]]:
    """The error's type/code and the error object, from the providers' error shapes."""
    if not isinstance(body, dict):
        return None, {}
    err = body.get("error")
    if not isinstance(err, dict):
        err = body if "type" in body or "code" in body else {}
    for key in ("code", "type"):
        value = err.get(key)
        if isinstance(value, str) and value in QUOTA_CODES:
            return value, err
    for key in ("code", "type"):
        value = err.get(key)
        if isinstance(value, str) and _SAFE_CODE.match(value):
            return value, err
    return None, err


def _quota_reset(err: dict[str, Any], now: float) -> float | None:
    at, after = err.get("resets_at"), err.get("resets_in_seconds")
    if isinstance(at, int | float) and not isinstance(at, bool) and at > 0:
        return min(float(at), now + MAX_RESET)
    if isinstance(after, int | float) and not isinstance(after, bool):
        return now + min(max(0.0, float(after)), MAX_RESET)
    return None


def classify(status: int | None, headers: Mapping[str, str], body: Any,
             now: float) -> Outcome:
    """The health outcome of one upstream answer (status None: no answer, connection error)."""
    if status is None:
        return Outcome(Kind.CONNECTION, "connection error")
    code, err = _error_fields(body)
    label = f"{status} {code}" if code else str(status)
    if code in QUOTA_CODES:
        return Outcome(Kind.QUOTA, f"quota exhausted ({label})", _quota_reset(err, now)
                       or usage_limit_reset(headers, now) or reset_time(headers, now))
    if status == 429:
        window = usage_limit_reset(headers, now)
        if window is not None:  # a subscription window is used up: cool until it resets
            return Outcome(Kind.QUOTA, f"usage limit reached ({label})", window)
        return Outcome(Kind.RATE_LIMITED, f"rate limited ({label})", reset_time(headers, now))
    if status in (401, 403):
        return Outcome(Kind.REVOKED, f"credential rejected ({label})")
    if status == 529 or status >= 500:
        return Outcome(Kind.OVERLOADED, f"upstream error ({label})", reset_time(headers, now))
    if status < 400:
        return Outcome(Kind.OK)
    return Outcome(Kind.NEUTRAL, label)


class Limit(NamedTuple):
    """One API-key limit an answer reports (requests, tokens, ...): the share left, 0..1."""

    name: str
    left: float
    reset: float | None


def api_limits(headers: Mapping[str, str], now: float) -> list[Limit]:
    """The x-ratelimit-* / anthropic-ratelimit-* remaining/limit pairs the headers carry."""
    out: list[Limit] = []
    for remaining_name, limit_name in _LIMIT_PAIRS:
        # .get, not [...] in a try: most pairs are absent from any one answer, and an
        # exception per absent name cost more than the rest of the reading
        remaining_text, limit_text = headers.get(remaining_name), headers.get(limit_name)
        if remaining_text is None or limit_text is None:
            continue
        try:
            remaining, limit = float(remaining_text), float(limit_text)
        except ValueError:
            continue
        if limit > 0 and math.isfinite(remaining) and math.isfinite(limit):
            reset_name = _RESET_OF[remaining_name]
            reset_text = headers.get(reset_name)
            t = _reset_value(reset_name, reset_text, now) if reset_text is not None else None
            out.append(Limit(_LIMIT_NAME[remaining_name], min(1.0, max(0.0, remaining / limit)),
                             t))
    return out


def epoch_time(value: str) -> float | None:
    """A reset given as epoch seconds (Codex, Anthropic's unified limits) or RFC 3339."""
    try:
        t = float(value)
    except ValueError:
        return parse_timestamp(value)
    return t if math.isfinite(t) and t > 0 else None


def codex_reset(headers: Mapping[str, str], prefix: str, now: float) -> float | None:
    """`{prefix}-reset-at` (epoch s), else now + `{prefix}-reset-after-seconds`."""
    at = headers.get(f"{prefix}-reset-at")
    if at is not None and (t := epoch_time(at)) is not None:
        return t
    d = parse_duration(headers.get(f"{prefix}-reset-after-seconds", ""))
    return None if d is None else now + d


def usage_limit_reset(headers: Mapping[str, str], now: float) -> float | None:
    """When a subscription's used-up window resets, if the answer says one is used up.

    Anthropic: `anthropic-ratelimit-unified-status: rejected` with the unified reset (else the
    latest reset of the windows whose own status is rejected). Codex: an account-wide window
    at 100% (the latest reset of those, as both must have reset before a request passes).
    """
    resets: list[float] = []
    if headers.get(f"{UNIFIED}status", "").strip().lower() == "rejected":
        unified = epoch_time(headers.get(f"{UNIFIED}reset", ""))
        if unified is not None:
            resets.append(unified)
        else:
            for name in list(headers):
                low = name.lower()
                if (low.startswith(UNIFIED) and low.endswith("-status")
                        and headers[name].strip().lower() == "rejected"):
                    t = epoch_time(headers.get(low.removesuffix("-status") + "-reset", ""))
                    if t is not None:
                        resets.append(t)
    for position in ("primary", "secondary"):
        prefix = f"x-codex-{position}"
        try:
            used = float(headers[f"{prefix}-used-percent"])
        except (KeyError, ValueError):
            continue
        if used >= 100 and (t := codex_reset(headers, prefix, now)) is not None:
            resets.append(t)
    return min(max(resets), now + MAX_RESET) if resets else None
