"""Per-account usage windows of the fake: what subscription accounts report, and enforce.

Off until a test asks: a `UsagePlan` given to FakeUpstream meters every account, `set_usage`
one account. A metered account's every API call adds its `step` percent to each of its
windows; its answers carry the provider's window headers (`x-codex-*` on OpenAI / ChatGPT
answers, `anthropic-ratelimit-unified-*` on Anthropic ones) and, where Codex reads it (ChatGPT
SSE streams, every Responses WebSocket turn), a `codex.rate_limits` event first. A window at
100% refuses requests with the provider's limit-reached 429 until it resets; a window whose
reset time passed starts again empty. Callers hold the upstream's lock; the wall clock (epoch
seconds) is injected.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .wire import Reply, anthropic_error, sse

WARNING_AT = 80.0  # percent from which Anthropic says allowed_warning
_CLAIMS = {300: "five_hour", 10080: "seven_day"}  # Anthropic's representative-claim names


@dataclass(frozen=True)
class UsagePlan:
    """The windows every metered account starts with, and what one request adds to each."""

    windows: tuple[int, ...] = (300, 10080)  # minutes; the first is reported as primary
    steps: tuple[float, ...] = (1.0, 0.1)  # percent added per request, per window


@dataclass
class Meter:
    minutes: int
    used: float  # percent
    resets_at: float  # epoch seconds
    step: float

    def as_dict(self) -> dict[str, Any]:
        return {"minutes": self.minutes, "used_percent": self.used, "resets_at": self.resets_at,
                "step": self.step}


@dataclass
class UsageTable:
    plan: UsagePlan | None
    clock: Callable[[], float]
    _accounts: dict[str, list[Meter]] = field(default_factory=dict)

    # ---- control ----
    def set(self, account: str, minutes: int, used_percent: float | None = None,
            resets_in: float | None = None, step: float | None = None) -> Meter:
        """Set (or add) one window of an account; unset fields keep their value."""
        if minutes < 1:
            raise ValueError("a window lasts at least one minute")
        if used_percent is not None and not 0 <= used_percent <= 100:
            raise ValueError("used_percent is from 0 to 100")
        now = self.clock()
        meters = self._meters(account, now, create=True)
        meter = next((m for m in meters if m.minutes == minutes), None)
        if meter is None:
            meter = Meter(minutes, 0.0, now + minutes * 60, 0.0)
            meters.append(meter)
        if used_percent is not None:
            meter.used = float(used_percent)
        if resets_in is not None:
            meter.resets_at = now + float(resets_in)
        if step is not None:
            meter.step = float(step)
        return meter

    def of(self, account: str) -> list[dict[str, Any]]:
        return [m.as_dict() for m in self._meters(account, self.clock())]

    def reset(self) -> None:
        self._accounts.clear()

    # ---- per request ----
    def refuse(self, account: str, family: str) -> Reply | None:
        """The limit-reached 429 when a window of this account is used up."""
        now = self.clock()
        meters = self._meters(account, now)
        full = [m for m in meters if m.used >= 100]
        if not full:
            return None
        reset = max(m.resets_at for m in full)
        seconds = max(0, math.ceil(reset - now))
        if family == "anthropic":
            reply = anthropic_error(429, "rate_limit_error",
                                    "This request would exceed your account's rate limit "
                                    "(fake usage window).")
        else:
            body = {"error": {"type": "usage_limit_reached",
                              "message": "The usage limit has been reached",
                              "plan_type": "plus", "resets_at": int(reset),
                              "resets_in_seconds": seconds}}
            reply = Reply(429, body, error_code="usage_limit_reached")
        reply.headers.update(self._headers(meters, family, now))
        return reply

    def charge(self, account: str, family: str, reply: Reply, websocket: bool) -> None:
        """Count one served request and put the windows on its answer."""
        now = self.clock()
        meters = self._meters(account, now)
        if not meters or reply.status != 200 or reply.usage is None:
            return
        for m in meters:
            m.used = min(100.0, m.used + m.step)
        reply.headers.update(self._headers(meters, family, now))
        if reply.events is not None and family != "anthropic" and (
                websocket or family == "chatgpt"):
            reply.events.insert(0, sse("codex.rate_limits", self._event(meters, now)))

    # ---- shapes ----
    def _meters(self, account: str, now: float, create: bool = False) -> list[Meter]:
        meters = self._accounts.get(account)
        if meters is None:
            if self.plan is None and not create:
                return []
            plan = self.plan or UsagePlan(windows=(), steps=())
            meters = self._accounts[account] = [
                Meter(minutes, 0.0, now + minutes * 60, step)
                for minutes, step in zip(plan.windows, plan.steps, strict=True)]
        for m in meters:
            if m.resets_at <= now:  # the window is over: a new one starts empty
                m.used, m.resets_at = 0.0, now + m.minutes * 60
        return meters

    def _headers(self, meters: list[Meter], family: str, now: float) -> dict[str, str]:
        return _anthropic_headers(meters) if family == "anthropic" else _codex_headers(meters, now)

    def _event(self, meters: list[Meter], now: float) -> dict[str, Any]:
        limits: dict[str, Any] = {"allowed": all(m.used < 100 for m in meters),
                                  "limit_reached": any(m.used >= 100 for m in meters)}
        for position, m in zip(("primary", "secondary"), meters, strict=False):
            limits[position] = {"used_percent": m.used, "window_minutes": m.minutes,
                                "reset_after_seconds": max(0, math.ceil(m.resets_at - now)),
                                "reset_at": int(m.resets_at)}
        return {"type": "codex.rate_limits", "plan_type": "plus", "rate_limits": limits,
                "credits": {"has_credits": False, "unlimited": False, "balance": "0"}}


def _codex_headers(meters: list[Meter], now: float) -> dict[str, str]:
    h: dict[str, str] = {}
    for position, m in zip(("primary", "secondary"), meters, strict=False):
        prefix = f"x-codex-{position}"
        h[f"{prefix}-used-percent"] = f"{m.used:g}"
        h[f"{prefix}-window-minutes"] = str(m.minutes)
        h[f"{prefix}-reset-at"] = str(int(m.resets_at))
        h[f"{prefix}-reset-after-seconds"] = str(max(0, math.ceil(m.resets_at - now)))
    h.update({"x-codex-credits-has-credits": "False", "x-codex-credits-unlimited": "False",
              "x-codex-credits-balance": "0"})
    return h


def _claim(minutes: int) -> str:
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


def _status(used: float) -> str:
    if used >= 100:
        return "rejected"
    return "allowed_warning" if used >= WARNING_AT else "allowed"


def _anthropic_headers(meters: list[Meter]) -> dict[str, str]:
    if not meters:
        return {}
    p = "anthropic-ratelimit-unified-"
    h: dict[str, str] = {}
    for m in meters:
        claim = _claim(m.minutes)
        h[f"{p}{claim}-utilization"] = f"{m.used / 100:.4g}"
        h[f"{p}{claim}-reset"] = str(int(m.resets_at))
        h[f"{p}{claim}-status"] = _status(m.used)
    # The binding window: a used-up one (the latest to reset), else the fullest.
    full = [m for m in meters if m.used >= 100]
    binding = max(full, key=lambda m: m.resets_at) if full else max(meters, key=lambda m: m.used)
    h[f"{p}status"] = _status(binding.used)
    h[f"{p}reset"] = str(int(binding.resets_at))
    h[f"{p}representative-claim"] = _CLAIMS.get(binding.minutes, _claim(binding.minutes))
    return h
