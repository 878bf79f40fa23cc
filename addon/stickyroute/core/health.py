"""Step 6 (learn): account health — healthy, cooling down, disabled — as a transition table.

Pure and clock-free: every call takes `now` (wall-clock seconds). The state machine is the
TABLE below (data, not `if` chains); the rest computes cooldown ends. Reasons are kept for
display and never hold a credential. Expiry is lazy (on read), O(1) per call.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from stickyroute.config.accounts import Account

from .outcome import Kind, Outcome

DISABLED_BY_FILE = "enabled: false in the accounts file"
DISABLED_BY_OPERATOR = "disabled by an operator"


class State(StrEnum):
    HEALTHY = "healthy"
    COOLING = "cooling"
    DISABLED = "disabled"


class Event(StrEnum):
    OK = "ok"
    RATE_LIMITED = "rate_limited"
    QUOTA = "quota"
    REVOKED = "revoked"
    OVERLOADED = "overloaded"
    CONNECTION = "connection"
    EXPIRE = "expire"  # the cooldown's end passed
    DISABLE = "disable"  # an operator took the account out
    ENABLE = "enable"  # an operator put it back
    CHANGED = "changed"  # its entry in the accounts file changed (a new key, say)


class Until(StrEnum):
    CLEAR = "clear"  # no end time
    KEEP = "keep"  # leave the current end time alone
    RESET = "reset"  # the provider's reset time (else the backoff ladder), never earlier
    BACKOFF = "backoff"  # exponential: BACKOFF_BASE * 2**failures, capped


# (state, event) -> (next state, end time rule). A pair not listed changes nothing.
TABLE: dict[tuple[State, Event], tuple[State, Until]] = {
    (State.HEALTHY, Event.OK): (State.HEALTHY, Until.CLEAR),
    (State.HEALTHY, Event.RATE_LIMITED): (State.COOLING, Until.RESET),
    (State.HEALTHY, Event.QUOTA): (State.COOLING, Until.RESET),
    (State.HEALTHY, Event.REVOKED): (State.DISABLED, Until.CLEAR),
    (State.HEALTHY, Event.OVERLOADED): (State.COOLING, Until.BACKOFF),
    (State.HEALTHY, Event.CONNECTION): (State.COOLING, Until.BACKOFF),
    (State.HEALTHY, Event.DISABLE): (State.DISABLED, Until.CLEAR),
    # An answer to a request sent before the cooldown began proves nothing: keep cooling.
    (State.COOLING, Event.OK): (State.COOLING, Until.KEEP),
    (State.COOLING, Event.RATE_LIMITED): (State.COOLING, Until.RESET),
    (State.COOLING, Event.QUOTA): (State.COOLING, Until.RESET),
    (State.COOLING, Event.REVOKED): (State.DISABLED, Until.CLEAR),
    (State.COOLING, Event.OVERLOADED): (State.COOLING, Until.BACKOFF),
    (State.COOLING, Event.CONNECTION): (State.COOLING, Until.BACKOFF),
    (State.COOLING, Event.EXPIRE): (State.HEALTHY, Until.CLEAR),
    (State.COOLING, Event.DISABLE): (State.DISABLED, Until.CLEAR),
    (State.COOLING, Event.ENABLE): (State.HEALTHY, Until.CLEAR),
    # Disabled stays disabled whatever traffic says, until a person or the file acts.
    (State.DISABLED, Event.ENABLE): (State.HEALTHY, Until.CLEAR),
    (State.DISABLED, Event.CHANGED): (State.HEALTHY, Until.CLEAR),
    (State.DISABLED, Event.DISABLE): (State.DISABLED, Until.CLEAR),
}
EVENT_FOR: dict[Kind, Event] = {
    Kind.OK: Event.OK, Kind.RATE_LIMITED: Event.RATE_LIMITED, Kind.QUOTA: Event.QUOTA,
    Kind.REVOKED: Event.REVOKED, Kind.OVERLOADED: Event.OVERLOADED,
    Kind.CONNECTION: Event.CONNECTION,
}
BACKOFF_BASE = 2.0
BACKOFF_MAX = 300.0
MIN_COOLDOWN = 1.0  # even 'Retry-After: 0' takes the account out of the current burst
QUOTA_DEFAULT = 3600.0  # quota exhausted and the provider did not say until when
RAMP = 30.0  # seconds over which an account back from a cooldown takes all new sessions


class HealthView(NamedTuple):
    state: State
    reason: str | None
    until: float | None  # when a cooldown ends


@dataclass(slots=True)
class AccountHealth:
    state: State = State.HEALTHY
    reason: str | None = None
    until: float | None = None
    failures: int = 0  # consecutive backoff steps; an OK while healthy resets it
    recovered: float | None = None  # when it last became healthy again (for the ramp)


class Health:
    def __init__(self, rng: Callable[[], float] = random.random) -> None:
        self.rng = rng
        self._accounts: dict[str, AccountHealth] = {}
        # Called on every change of state or cooldown end, except a cooldown running out
        # (each proxy sees that by itself): (alias, event, now). persist.py shares it.
        self.on_change: Callable[[str, Event, float], None] | None = None

    def _get(self, alias: str, now: float) -> AccountHealth:
        h = self._accounts.get(alias)
        if h is None:
            h = self._accounts[alias] = AccountHealth()
        elif h.state is State.COOLING and h.until is not None and h.until <= now:
            self._apply(alias, h, Event.EXPIRE, h.until, None)
        return h

    def _apply(self, alias: str, h: AccountHealth, event: Event, now: float,
               outcome: Outcome | None, reason: str | None = None) -> bool:
        """Run one transition; False when the table has no entry (nothing changes)."""
        step = TABLE.get((h.state, event))
        if step is None:
            return False
        before = (h.state, h.until)
        h.state, rule = step
        if rule is not Until.KEEP:
            h.until = self._end(h, rule, event, outcome, now)
        if h.state is State.HEALTHY:
            if event is Event.EXPIRE:  # back by itself: ramp in (a person's enable is trusted)
                h.recovered = now
            elif event is not Event.OK:
                h.recovered = None
            if event is not Event.EXPIRE:  # after a cooldown, a new failure backs off longer
                h.failures = 0
            h.reason = None
        elif rule is not Until.KEEP:
            h.reason = reason or (outcome.reason if outcome else None) or event.value
        if self.on_change is not None and event is not Event.EXPIRE and (
                (h.state, h.until) != before or event is Event.DISABLE):
            self.on_change(alias, event, now)
        return True

    @staticmethod
    def _end(h: AccountHealth, rule: Until, event: Event, outcome: Outcome | None,
             now: float) -> float | None:
        if rule is Until.CLEAR:
            return None
        reset = outcome.reset if outcome else None
        if rule is Until.RESET and reset is None and event is Event.QUOTA:
            reset = now + QUOTA_DEFAULT
        if rule is Until.BACKOFF or reset is None:
            reset = now + min(BACKOFF_BASE * 2 ** h.failures, BACKOFF_MAX)
            h.failures += 1
        return max(h.until or now, reset, now + MIN_COOLDOWN)

    # ---- what traffic teaches ------------------------------------------------------------
    def record(self, alias: str, outcome: Outcome, now: float) -> tuple[State, State]:
        """Learn from one upstream answer; returns (state before, state after)."""
        h = self._get(alias, now)
        before = h.state
        event = EVENT_FOR.get(outcome.kind)
        if event is not None:
            self._apply(alias, h, event, now, outcome)
        return before, h.state

    # ---- what operators and the accounts file do ---------------------------------------
    def disable(self, alias: str, reason: str, now: float) -> None:
        self._apply(alias, self._get(alias, now), Event.DISABLE, now, None, reason)

    def enable(self, alias: str, now: float) -> bool:
        """False when the accounts file keeps it out (only the file can put it back)."""
        h = self._get(alias, now)
        if h.reason == DISABLED_BY_FILE:
            return False
        self._apply(alias, h, Event.ENABLE, now, None)
        return True

    def changed(self, alias: str, now: float) -> None:
        """The account's entry in the accounts file changed: a revoked key may be fixed."""
        self._apply(alias, self._get(alias, now), Event.CHANGED, now, None)

    def new_accounts(self, before: Iterable[Account], after: Iterable[Account],
                     now: float) -> None:
        """The accounts file was (re)loaded: changed entries get a fresh start, gone ones go,
        and `enabled: false` takes an account out like an operator's disable would (this
        proxy's file says so: it is not shared with other proxies)."""
        old = {a.alias: a for a in before}
        after = list(after)
        share, self.on_change = self.on_change, None
        try:
            for a in after:
                if a.alias in old and old[a.alias] != a:
                    self.changed(a.alias, now)
                if not a.enabled:
                    self.disable(a.alias, DISABLED_BY_FILE, now)
        finally:
            self.on_change = share
        self.forget(a.alias for a in after)

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the health of accounts no longer in the file."""
        keep = set(keep)
        for alias in [a for a in self._accounts if a not in keep]:
            del self._accounts[alias]

    # ---- saved with the pins (persist.py's Section) ---------------------------------------
    def export_state(self) -> dict[str, dict[str, Any]]:
        """Accounts that are not healthy, JSON-able: a restart keeps cooldowns and disabled."""
        return {alias: {"state": h.state.value, "reason": h.reason, "until": h.until,
                        "failures": h.failures}
                for alias, h in self._accounts.items()
                if h.state is not State.HEALTHY and h.reason != DISABLED_BY_FILE}

    def import_state(self, data: Any, now: float) -> None:
        if not isinstance(data, dict):
            return
        for alias, d in data.items():
            try:
                state, until = State(d["state"]), d.get("until")
                h = AccountHealth(state, str(d.get("reason") or state.value),
                                  float(until) if until is not None else None,
                                  int(d.get("failures", 0)))
            except (KeyError, TypeError, ValueError):
                continue  # an unreadable entry: that account starts healthy
            current = self._accounts.get(str(alias))
            if current is not None and current.reason == DISABLED_BY_FILE:
                continue  # today's file has the say
            if state is not State.HEALTHY and (h.until is None or h.until > now
                                               or state is State.DISABLED):
                self._accounts[str(alias)] = h

    # ---- shared with other proxies (a shared store) -------------------------------------
    def shared_state(self, alias: str, event: Event, now: float) -> dict[str, Any]:
        """What other proxies need to know of this account's last change."""
        h = self._get(alias, now)
        return {"state": h.state.value, "reason": h.reason, "until": h.until,
                "event": event.value, "at": now}

    def merge(self, alias: str, d: Any, now: float) -> bool:
        """Take another proxy's change (from shared_state): its disable and its operator's
        enable apply here too; its cooldown when it ends later than ours. No on_change call.
        True when something changed."""
        try:
            state, until = State(d["state"]), d.get("until")
            until = float(until) if until is not None else None
            reason = str(d.get("reason") or state.value)
            event = str(d.get("event") or "")
        except (KeyError, TypeError, ValueError):
            return False
        h = self._get(alias, now)
        if state is State.DISABLED and h.state is not State.DISABLED:
            h.state, h.reason, h.until, h.recovered = State.DISABLED, reason, None, None
        elif (state is State.COOLING and until is not None and until > now
              and h.state is not State.DISABLED and (h.until or 0.0) < until):
            h.state, h.reason, h.until, h.recovered = State.COOLING, reason, until, None
        elif (state is State.HEALTHY and event == Event.ENABLE.value
              and h.state is not State.HEALTHY and h.reason != DISABLED_BY_FILE):
            h.state, h.reason, h.until, h.failures, h.recovered = (
                State.HEALTHY, None, None, 0, None)
        else:
            return False
        return True

    # ---- what routing asks -------------------------------------------------------------
    def available(self, alias: str, now: float) -> bool:
        return self._get(alias, now).state is State.HEALTHY

    def takes_new(self, alias: str, now: float) -> bool:
        """May a NEW session be pinned here? Gradually after a recovery. (How near its limits
        an account is, is the usage windows' say: windows.WindowTable.takes_new.)"""
        h = self._get(alias, now)
        if h.state is not State.HEALTHY:
            return False
        if h.recovered is not None and now - h.recovered < RAMP:
            return self.rng() < (now - h.recovered) / RAMP
        return True

    def describe(self, alias: str, now: float) -> HealthView:
        h = self._get(alias, now)
        return HealthView(h.state, h.reason, h.until)

    def retry_after(self, aliases: Iterable[str], now: float) -> float | None:
        """Seconds until the first of these accounts stops cooling (None: none is cooling)."""
        ends = [h.until for a in aliases
                if (h := self._get(a, now)).state is State.COOLING and h.until is not None]
        return max(0.0, min(ends) - now) if ends else None
