"""Usage windows per account: how much of each of its limits an account has used, and until when.

Every answer may say it: Codex / ChatGPT in `x-<limit>-{primary,secondary}-*` headers and in its
`codex.rate_limits` stream event, Anthropic subscriptions in `anthropic-ratelimit-unified-*`
headers, API keys in their per-minute `x-ratelimit-*` / `anthropic-ratelimit-*` headers. This
module reads them into `Reading`s and keeps the latest per account and window in a
`WindowTable`. A window is keyed by its limit family and its LENGTH in minutes, never by its
position: some plans report the weekly window as "primary" and have no 5-hour one.

Pure: `now` (epoch seconds) is passed in; the work of one update or read is bounded by the few
windows an account has, never by the number of accounts. It must never raise on what a
provider (or anything pretending to be one) sends, and keeps nothing of a header but numbers,
times and limit names that pass a strict pattern.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from .headers import lowered
from .outcome import (
    MAX_RESET,
    UNIFIED,
    api_limits,
    codex_reset,
    epoch_time,
    usage_limit_reset,
)

DRAIN_AT = 90.0  # percent of a window used from which an account is draining
DRAIN_MIN_MINUTES = 60  # shorter windows (per-minute API limits) come back too soon to drain
# ...but an account nearly out of one takes no new conversation until it resets (one would be
# refused within seconds): less than 5% of a per-minute limit left.
SHORT_FULL = 95.0
MAX_WINDOWS = 16  # per account; more means a provider invents families: the oldest go
API_MINUTES = 1  # OpenAI's and Anthropic's API-key limits are per minute
# Codex reported these lengths before it sent window-minutes; used only when it is missing.
_CODEX_DEFAULT_MINUTES = {"primary": 300, "secondary": 10080}
_LIMIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
_FAMILY = re.compile(r"^x-([a-z0-9][a-z0-9_-]{0,47})-(primary|secondary)-used-percent$")
# Anthropic window claims: "5h", "7d", "7d_oi", "7d-sonnet", ... ("overage" is not a window)
_CLAIM = re.compile(r"^(\d{1,4})(m|h|d)(?:[-_]([a-z0-9_-]{1,32}))?$")
_CLAIM_UNITS = {"m": 1, "h": 60, "d": 1440}
# The names an answer's rate-limit and usage headers start with: read into one dict, as
# mitmproxy's Headers.get scans and case-folds every field per name (~30 names an answer).
_LIMIT_PREFIXES = ("x-", "anthropic-ratelimit-")


class Status(StrEnum):
    OK = "ok"
    DRAINING = "draining"  # at or above sticky_drain_at: new conversations go elsewhere
    LIMITED = "limited"  # used up or refused by the provider until it resets


@dataclass(frozen=True, slots=True)
class Window:
    minutes: int
    used_percent: float  # 0..100
    resets_at: float | None  # epoch seconds
    limit: str = ""  # "": the account-wide limit; else a named family (one model, say)
    rejected: bool = False  # the provider says this window refuses requests now

    @property
    def key(self) -> tuple[str, int]:
        return self.limit, self.minutes


class Credits(NamedTuple):
    """Codex's paid credits: an account past its windows may still serve on credits."""

    has_credits: bool
    unlimited: bool
    balance: str | None


class Reading(NamedTuple):
    """What one answer (or stream event) says about an account's windows."""

    windows: tuple[Window, ...] = ()
    credits: Credits | None = None
    rejected_until: float | None = None  # the provider refuses requests until then

    def __bool__(self) -> bool:
        return bool(self.windows) or self.credits is not None or self.rejected_until is not None


class WindowView(NamedTuple):
    """One window as the admin API shows it."""

    minutes: int
    used_percent: float
    resets_at: float | None
    status: Status
    limit: str

    def as_dict(self) -> dict[str, object]:
        return {"minutes": self.minutes, "used_percent": self.used_percent,
                "resets_at": self.resets_at, "status": self.status.value, "limit": self.limit}


class Tightest(NamedTuple):
    """The account-wide window closest to its limit: what placement compares."""

    used_percent: float
    resets_at: float | None
    minutes: int = 0  # its length: the reset of a per-minute window says nothing for placement


class Drain(NamedTuple):
    """An account started (True) or stopped (False) draining: worth one log line."""

    alias: str
    draining: bool
    window: Window | None  # the window that made it drain (None when it stopped)


# ---- reading answers -------------------------------------------------------------------
def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        n = float(value)
    except (TypeError, ValueError):
        return None
    return n if math.isfinite(n) else None


def _percent(value: Any) -> float | None:
    n = _number(value)
    return None if n is None else min(100.0, max(0.0, n))


def _minutes(value: Any) -> int | None:
    n = _number(value)
    return int(n) if n is not None and 0 < n <= 366 * 1440 else None


def _reset(t: float | None, now: float) -> float | None:
    return None if t is None else min(t, now + MAX_RESET)


def _limit_name(family: str, headers: Mapping[str, str]) -> str:
    """"" for Codex's account-wide family; else the family's name as the provider gives it."""
    if family == "codex":
        return ""
    named = headers.get(f"x-{family}-limit-name", "").strip()
    return named if _LIMIT_NAME.match(named) else family.replace("-", "_")


def from_headers(headers: Mapping[str, str], now: float) -> Reading:
    """Every usage window an answer's headers report (an empty Reading when none)."""
    headers = lowered(headers, _LIMIT_PREFIXES)
    windows: list[Window] = []
    families: set[str] = set()
    anthropic_claims: set[str] = set()
    for low in headers:
        m = _FAMILY.match(low)
        if m:
            families.add(m.group(1))
        elif low.startswith(UNIFIED) and low.endswith("-utilization"):
            anthropic_claims.add(low[len(UNIFIED):-len("-utilization")])
    for family in sorted(families):
        limit = _limit_name(family, headers)
        for position in ("primary", "secondary"):
            prefix = f"x-{family}-{position}"
            used = _percent(headers.get(f"{prefix}-used-percent"))
            if used is None:
                continue
            minutes = _minutes(headers.get(f"{prefix}-window-minutes")) or (
                _CODEX_DEFAULT_MINUTES[position])
            windows.append(Window(minutes, used, _reset(codex_reset(headers, prefix, now), now),
                                  limit, rejected=used >= 100))
    for claim in sorted(anthropic_claims):
        m = _CLAIM.match(claim)
        share = _number(headers.get(f"{UNIFIED}{claim}-utilization"))
        if m is None or share is None:
            continue
        reset = epoch_time(headers.get(f"{UNIFIED}{claim}-reset", ""))
        status = headers.get(f"{UNIFIED}{claim}-status", "").strip().lower()
        windows.append(Window(int(m.group(1)) * _CLAIM_UNITS[m.group(2)],
                              min(100.0, max(0.0, share * 100)), _reset(reset, now),
                              m.group(3) or "", rejected=status == "rejected"))
    limits = api_limits(headers, now)
    if limits:  # one per-minute window: the tightest of the key's limits
        tight = min(limits, key=lambda x: x.left)
        windows.append(Window(API_MINUTES, round((1 - tight.left) * 100, 2),
                              _reset(tight.reset, now)))
    return Reading(tuple(windows), _credits(headers), usage_limit_reset(headers, now))


def _credits(headers: Mapping[str, str]) -> Credits | None:
    has = _flag(headers.get("x-codex-credits-has-credits"))
    if has is None:
        return None
    balance = headers.get("x-codex-credits-balance", "").strip()
    return Credits(has, bool(_flag(headers.get("x-codex-credits-unlimited"))),
                   balance if _LIMIT_NAME.match(balance) else None)


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if value is not None else ""
    return {"true": True, "1": True, "false": False, "0": False}.get(text)


def from_codex_event(event: Any, now: float) -> Reading:
    """Codex's `codex.rate_limits` event (SSE data or WebSocket frame), already parsed.

    {"type": "codex.rate_limits", "rate_limits": {"allowed", "limit_reached", "primary":
    {"used_percent", "window_minutes", "reset_at" | "reset_after_seconds"}, "secondary": ...},
    "credits": {"has_credits", "unlimited", "balance"}, "metered_limit_name" | "limit_name"}
    """
    if not isinstance(event, Mapping) or event.get("type") != "codex.rate_limits":
        return Reading()
    details = event.get("rate_limits")
    details = details if isinstance(details, Mapping) else {}
    family = event.get("metered_limit_name") or event.get("limit_name") or "codex"
    family = family.strip().lower().replace("-", "_") if isinstance(family, str) else "codex"
    limit = "" if family == "codex" else (family if _LIMIT_NAME.match(family) else "other")
    windows: list[Window] = []
    for position in ("primary", "secondary"):
        w = details.get(position)
        used = _percent(w.get("used_percent")) if isinstance(w, Mapping) else None
        if not isinstance(w, Mapping) or used is None:
            continue
        at, after = _number(w.get("reset_at")), _number(w.get("reset_after_seconds"))
        reset = at if at is not None and at > 0 else (
            now + max(0.0, after) if after is not None else None)
        minutes = _minutes(w.get("window_minutes")) or _CODEX_DEFAULT_MINUTES[position]
        windows.append(Window(minutes, used, _reset(reset, now), limit, rejected=used >= 100))
    credits = event.get("credits")
    creds = None
    if isinstance(credits, Mapping) and isinstance(credits.get("has_credits"), bool):
        balance = credits.get("balance")
        creds = Credits(credits["has_credits"], credits.get("unlimited") is True,
                        balance if isinstance(balance, str) and _LIMIT_NAME.match(balance)
                        else None)
    rejected_until = None
    if limit == "" and (details.get("limit_reached") is True or details.get("allowed") is False):
        # The used-up window is the one to wait for; both used up: the later one.
        ends = [w.resets_at for w in windows if w.rejected and w.resets_at is not None] or [
            w.resets_at for w in windows if w.resets_at is not None]
        rejected_until = max(ends) if ends else None
    return Reading(tuple(windows), creds, rejected_until)


# ---- the table ---------------------------------------------------------------------------
@dataclass(slots=True)
class _Account:
    windows: dict[tuple[str, int], tuple[Window, float]] = field(default_factory=dict)
    credits: Credits | None = None
    draining: bool = False  # as of the last record(): a change is what gets logged
    rejected_until: float | None = None


class WindowTable:
    """The latest reading of every window of every account.

    A window whose reset time has passed reads as a fresh, empty window (lazily, on read): the
    provider's next answer says more. A window reported without a reset time is trusted for
    its own length after it was seen.
    """

    def __init__(self, drain_at: float = DRAIN_AT) -> None:
        self.drain_at = drain_at
        self._accounts: dict[str, _Account] = {}
        self.seen_any = False  # some account reported a window: placement has data to use

    def __len__(self) -> int:
        return len(self._accounts)

    def record(self, alias: str, reading: Reading, now: float) -> Drain | None:
        """Take one answer's reading; returns the drain change it caused, if any."""
        if not reading:
            return None
        acct = self._accounts.get(alias)
        if acct is None:
            acct = self._accounts[alias] = _Account()
        self.seen_any = self.seen_any or bool(reading.windows)
        for w in reading.windows:
            acct.windows.pop(w.key, None)  # re-inserted last: the oldest stay at the front
            acct.windows[w.key] = (w, now)
            if len(acct.windows) > MAX_WINDOWS:
                acct.windows.pop(next(iter(acct.windows)))
        if reading.credits is not None:
            acct.credits = reading.credits
        if reading.rejected_until is not None:
            acct.rejected_until = reading.rejected_until
        cause = self._drain_cause(acct, now)
        if (cause is not None) is acct.draining:
            return None
        acct.draining = cause is not None
        return Drain(alias, acct.draining, cause)

    def _live(self, acct: _Account, now: float) -> Iterable[Window]:
        for w, seen in acct.windows.values():
            end = w.resets_at if w.resets_at is not None else seen + w.minutes * 60
            if end > now:
                yield w

    def _drain_cause(self, acct: _Account, now: float) -> Window | None:
        worst = None
        for w in self._live(acct, now):
            if (w.limit == "" and w.minutes >= DRAIN_MIN_MINUTES
                    and w.used_percent >= self.drain_at
                    and (worst is None or w.used_percent > worst.used_percent)):
                worst = w
        return worst

    def status(self, w: Window) -> Status:
        if w.rejected or w.used_percent >= 100:
            return Status.LIMITED
        return Status.DRAINING if w.used_percent >= self.drain_at else Status.OK

    # ---- what placement and release ask --------------------------------------------------
    def draining(self, alias: str, now: float) -> bool:
        """At or above sticky_drain_at of an account-wide window (5-hour, weekly, ...)."""
        acct = self._accounts.get(alias)
        return acct is not None and self._drain_cause(acct, now) is not None

    def limited(self, alias: str, now: float) -> bool:
        """The provider refuses this account's requests until a window resets."""
        acct = self._accounts.get(alias)
        if acct is None:
            return False
        if acct.rejected_until is not None and acct.rejected_until > now:
            return True
        return any(w.limit == "" and self.status(w) is Status.LIMITED
                   for w in self._live(acct, now))

    def takes_new(self, alias: str, now: float) -> bool:
        """May a NEW conversation go here? Not when draining, limited, or nearly out of a
        per-minute limit (it would be refused within seconds); one pass over its windows."""
        acct = self._accounts.get(alias)
        if acct is None:
            return True
        if acct.rejected_until is not None and acct.rejected_until > now:
            return False
        for w in self._live(acct, now):
            if w.limit != "":
                continue
            if w.rejected or w.used_percent >= 100:
                return False
            if w.minutes >= DRAIN_MIN_MINUTES:
                if w.used_percent >= self.drain_at:
                    return False
            elif w.used_percent > SHORT_FULL:
                return False
        return True

    def state(self, alias: str, now: float) -> Status:
        """The account's own state for the dashboard: limited, draining or ok."""
        if self.limited(alias, now):
            return Status.LIMITED
        return Status.DRAINING if self.draining(alias, now) else Status.OK

    def tightest(self, alias: str, now: float, min_minutes: int = 0) -> Tightest | None:
        """The account-wide window (of `min_minutes` or more) with the least headroom (None:
        nothing known)."""
        acct = self._accounts.get(alias)
        if acct is None:
            return None
        best: Window | None = None
        for w in self._live(acct, now):
            if (w.limit == "" and w.minutes >= min_minutes
                    and (best is None or w.used_percent > best.used_percent)):
                best = w
        return Tightest(best.used_percent, best.resets_at, best.minutes) if best else None

    # ---- what the admin surface shows ------------------------------------------------------
    def windows(self, alias: str, now: float) -> list[WindowView]:
        """Every window of an account, account-wide first, shortest first; a reset one empty."""
        acct = self._accounts.get(alias)
        if acct is None:
            return []
        out = []
        for w, seen in acct.windows.values():
            end = w.resets_at if w.resets_at is not None else seen + w.minutes * 60
            if end <= now:  # reset since: a new, empty window of the same length
                w = Window(w.minutes, 0.0, None, w.limit)
            out.append(WindowView(w.minutes, w.used_percent, w.resets_at, self.status(w),
                                  w.limit))
        return sorted(out, key=lambda v: (v.limit != "", v.limit, v.minutes))

    def credits(self, alias: str) -> Credits | None:
        acct = self._accounts.get(alias)
        return acct.credits if acct else None

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the windows of accounts no longer in the file."""
        keep = set(keep)
        for alias in [a for a in self._accounts if a not in keep]:
            del self._accounts[alias]
