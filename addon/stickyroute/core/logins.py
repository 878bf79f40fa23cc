"""The live tokens of OAuth accounts: one mutable Login per account, read at signing time.

Account values stay immutable; what changes while the proxy runs (the tokens, failed tries,
a dead login's reason) lives here. Only the refresher replaces tokens; the glue reads
`tokens(alias)` when it signs a request and `view(alias, now)` for the admin surface.

Pure and clock-free: every call takes `now` (wall-clock epoch seconds). A view, a reason or a
repr never holds a token.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from stickyroute.config.oauth import LoginSource, Tokens

from .oauth import Due, Failure, RefreshFailed, TokenPlan, is_newer, refresh_plan, retry_delay


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

    def plan(self, now: float, margin: float) -> Due:
        return refresh_plan(self.tokens, now, margin, self.retry_at)


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
        return login

    def retain(self, aliases: Iterable[str]) -> list[str]:
        """Forget logins of accounts no longer configured; returns their aliases."""
        keep = set(aliases)
        gone = [a for a in self._by_alias if a not in keep]
        for alias in gone:
            del self._by_alias[alias]
        return gone

    def refreshed(self, alias: str, tokens: Tokens) -> None:
        login = self._by_alias[alias]
        login.tokens, login.failures, login.retry_at, login.last_error = tokens, 0, 0.0, None
        login.refreshes += 1

    def adopt(self, alias: str, tokens: Tokens) -> bool:
        """Take newer tokens someone else got (another proxy, the file); False if not newer."""
        login = self._by_alias[alias]
        if not is_newer(tokens, login.tokens):
            return False
        login.tokens, login.failures, login.retry_at, login.last_error = tokens, 0, 0.0, None
        login.revoked = None
        login.adopted += 1
        return True

    def failed(self, alias: str, failure: RefreshFailed, now: float) -> None:
        login = self._by_alias[alias]
        login.last_error = failure.reason
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

    def secrets(self) -> list[str]:
        return [s for login in self._by_alias.values() for s in login.tokens.secrets()]

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
            "refreshes": login.refreshes,
            "adopted": login.adopted,
            "failures": login.failures,
            "last_error": login.last_error,
            "file": login.source.file,
        }
