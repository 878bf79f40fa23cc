"""The live tokens of OAuth accounts: one mutable Login per account, read at signing time.

Account values stay immutable; what changes while the proxy runs (the tokens, failed tries,
a dead login's reason) lives here. Only the refresher replaces tokens; planning reads
`get(alias)` when it signs a request (an expired token is refreshed first) and the admin
surface `view(alias, now)`.
`sync_health` makes account health follow the logins: a dead or missing login takes its
account out of rotation (soft pins move, hard pins get a clear 503), a login that gets new
tokens puts it back. Saved with the pins (a Section): which logins died, so a restart does
not send their spent refresh tokens again.

Pure and clock-free: every call takes `now` (wall-clock epoch seconds). A view, a reason or a
repr never holds a token.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from stickyroute.config.accounts import Account
from stickyroute.config.oauth import LoginSource, Tokens

from .health import Health, State
from .oauth import (
    Due,
    Failure,
    RefreshFailed,
    TokenPlan,
    fingerprint,
    is_newer,
    refresh_plan,
    retry_delay,
)
from .outcome import Kind, Outcome

# How account health names a login problem; a reason with one of the first two prefixes is
# ours to clear once the login works again.
REVOKED = "revoked: "
NO_LOGIN = "no login: "
REFRESH_FAILING = "login refresh failing: "


@dataclass
class Login:
    alias: str
    source: LoginSource
    tokens: Tokens
    revoked: str | None = None  # why the login is dead ("log in again (...)"); None: alive
    failures: int = 0  # transient failures in a row
    retry_at: float = 0.0  # no refresh try before this
    last_error: str | None = None
    refreshes: int = 0
    adopted: int = 0  # tokens taken from another proxy or from the file
    refresh_failures: int = 0  # every failed try, for the metrics
    got_at: float | None = None  # when these tokens came (None: read from the file)

    def plan(self, now: float, margin: float) -> Due:
        """refresh_plan, with the margin at most half the token's life: a margin longer than
        the tokens live would refresh again as soon as a refresh is done."""
        expires, got = self.tokens.expires_at, self.got_at
        if expires is not None and got is not None:
            margin = min(margin, max(0.0, (expires - got) / 2))
        return refresh_plan(self.tokens, now, margin, self.retry_at)

    def expired(self, now: float) -> bool:
        return self.tokens.expires_at is not None and self.tokens.expires_at <= now


@dataclass
class Logins:
    _by_alias: dict[str, Login] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._by_alias)

    def __contains__(self, alias: object) -> bool:
        return alias in self._by_alias

    def get(self, alias: str) -> Login | None:
        return self._by_alias.get(alias)

    def tokens(self, alias: str) -> Tokens | None:
        """What to sign a request of this account with right now."""
        login = self._by_alias.get(alias)
        return login.tokens if login is not None else None

    def seed(self, alias: str, source: LoginSource, tokens: Tokens) -> Login:
        """Take a login read from its file (at start, or after the accounts file changed).

        What is held stays when the file is not newer (we wrote it, or it lags behind); a
        newer file (a fresh import, a login again) replaces it and clears a dead state.
        """
        held = self._by_alias.get(alias)
        if held is not None and held.source.file == source.file \
                and held.source.provider == source.provider and not is_newer(tokens, held.tokens):
            held.source = source  # token_url or client_id may have changed
            return held
        login = self._by_alias[alias] = Login(alias, source, tokens)
        if held is not None:  # the counters go on (a new login of the same account)
            login.refreshes, login.adopted = held.refreshes, held.adopted
            login.refresh_failures = held.refresh_failures
        return login

    def retain(self, aliases: Iterable[str]) -> list[str]:
        """Forget logins of accounts no longer configured; returns their aliases."""
        keep = set(aliases)
        gone = [a for a in self._by_alias if a not in keep]
        for alias in gone:
            del self._by_alias[alias]
        return gone

    # A login may be forgotten (its account left the accounts file) while its refresh runs:
    # what comes back for it is then dropped here, never an error.
    def refreshed(self, alias: str, tokens: Tokens, now: float | None = None) -> None:
        login = self._by_alias.get(alias)
        if login is None:
            return
        login.tokens, login.failures, login.retry_at, login.last_error = tokens, 0, 0.0, None
        login.got_at = now
        login.refreshes += 1

    def adopt(self, alias: str, tokens: Tokens, now: float | None = None) -> bool:
        """Take newer tokens someone else got (another proxy, the file); False if not newer."""
        login = self._by_alias.get(alias)
        if login is None or not is_newer(tokens, login.tokens):
            return False
        login.tokens, login.failures, login.retry_at, login.last_error = tokens, 0, 0.0, None
        login.revoked = None
        login.got_at = now
        login.adopted += 1
        return True

    def failed(self, alias: str, failure: RefreshFailed, now: float) -> None:
        login = self._by_alias.get(alias)
        if login is None:
            return
        login.last_error = failure.reason
        login.refresh_failures += 1
        if failure.kind is Failure.DEAD:
            login.revoked = failure.reason
            return
        login.failures += 1
        login.retry_at = now + retry_delay(login.failures)

    def due(self, now: float, margin: float) -> list[Login]:
        """Live logins whose refresh is due now (expired ones first)."""
        out = [login for login in self._by_alias.values() if login.revoked is None
               and login.plan(now, margin).plan is not TokenPlan.FRESH
               and login.retry_at <= now]
        return sorted(out, key=lambda login: login.tokens.expires_at or 0.0)

    def next_due(self, now: float, margin: float) -> float | None:
        """When the earliest refresh of a live login falls due (None: none ever)."""
        times = [at for login in self._by_alias.values() if login.revoked is None
                 for at in (login.plan(now, margin).at,) if at is not None]
        return min(times, default=None)

    def __iter__(self) -> Iterator[Login]:
        return iter(list(self._by_alias.values()))

    def secrets(self) -> list[str]:
        return [s for login in self._by_alias.values() for s in login.tokens.secrets()]

    # ---- saved with the pins (a store Section) -------------------------------------------
    def export_state(self) -> dict[str, dict[str, str]]:
        """The dead logins: their reason and their spent refresh token's fingerprint."""
        return {login.alias: {"reason": login.revoked,
                              "spent": fingerprint(login.tokens.refresh_token)}
                for login in self._by_alias.values() if login.revoked is not None}

    def import_state(self, data: Any, now: float) -> None:
        """A login saved as dead stays dead while its file still holds the same refresh token;
        a file with another one (a new login) is alive."""
        if not isinstance(data, dict):
            return
        for alias, d in data.items():
            login = self._by_alias.get(str(alias))
            if login is None or login.revoked is not None or not isinstance(d, dict):
                continue
            reason, spent = d.get("reason"), d.get("spent")
            if isinstance(reason, str) and reason and spent == fingerprint(
                    login.tokens.refresh_token):
                login.revoked = login.last_error = reason

    def view(self, alias: str, now: float) -> dict[str, Any] | None:
        """What the admin API and dashboard show of a login: state and timing, no token."""
        login = self._by_alias.get(alias)
        if login is None:
            return None
        expires = login.tokens.expires_at
        return {
            "state": "revoked" if login.revoked else (
                "expired" if expires is not None and expires <= now else "live"),
            "reason": login.revoked,
            "expires_in": None if expires is None else round(expires - now, 1),
            "refreshed_at": login.got_at,
            "refreshes": login.refreshes,
            "adopted": login.adopted,
            "failures": login.failures,
            "refresh_failures": login.refresh_failures,
            "retry_in": round(login.retry_at - now, 1) if login.retry_at > now else None,
            "last_error": login.last_error,
            "file": login.source.file,
        }


# ---- account health follows the logins ----------------------------------------------------
class HealthChange(NamedTuple):
    alias: str
    before: State
    after: State
    reason: str | None


def sync_health(logins: Logins, health: Health, accounts: Iterable[Account],
                now: float) -> list[HealthChange]:
    """Take each OAuth account's login state into its health; returns what changed.

    Missing or dead login: out of rotation (the REVOKED event: disabled, with the reason).
    Token expired while its refresh keeps failing: cooling until the next try. A working login
    whose account is out for a login reason of ours: back (the CHANGED event, as when the
    accounts file fixes a key: it is not an operator's enable, other proxies keep their view).
    Idempotent: calling it again changes nothing.
    """
    changes: list[HealthChange] = []
    for account in accounts:
        if account.oauth is None:
            continue
        alias = account.alias
        login = logins.get(alias)
        view = health.describe(alias, now)
        dead = (NO_LOGIN + "its oauth_file could not be read" if login is None
                else REVOKED + login.revoked if login.revoked is not None else None)
        if dead is not None:
            if view.state is not State.DISABLED:
                health.record(alias, Outcome(Kind.REVOKED, dead), now)
        elif login is not None and login.expired(now) and login.retry_at > now:
            if view.state is State.HEALTHY:
                why = REFRESH_FAILING + (login.last_error or "no answer yet")
                health.record(alias, Outcome(Kind.RATE_LIMITED, why, login.retry_at), now)
        elif view.state is State.DISABLED and (view.reason or "").startswith((REVOKED, NO_LOGIN)):
            health.changed(alias, now)
        after = health.describe(alias, now)
        if after.state is not view.state:
            changes.append(HealthChange(alias, view.state, after.state, after.reason))
    return changes


def after_refusal(result: Tokens | RefreshFailed, retry_at: float) -> Outcome:
    """What a provider's 401 on a login's access token says once the login's refresh answered:
    send the request again (new tokens), the login is dead, or it cools until the next try."""
    if isinstance(result, Tokens):
        return Outcome(Kind.REFRESHED, "access token refused (401); login refreshed")
    if result.kind is Failure.DEAD:
        return Outcome(Kind.REVOKED, REVOKED + result.reason)
    return Outcome(Kind.RATE_LIMITED, REFRESH_FAILING + result.reason, retry_at or None)
