"""The live-login holder: seeding, refreshes, failures, due logins, the admin view."""

from __future__ import annotations

from stickyroute.config.oauth import LoginSource, Tokens
from stickyroute.core.logins import Logins
from stickyroute.core.oauth import Failure, RefreshFailed

NOW = 1_800_000_000.0
SRC = LoginSource("chatgpt", "/t/a.json", "https://auth.openai.com/oauth/token", "cid")


def held(expires_in: float, n: int = 1) -> Tokens:
    return Tokens(f"access-{n}", f"refresh-{n}", NOW + expires_in, account_id="acct")


def test_seed_and_sign() -> None:
    logins = Logins()
    logins.seed("a", SRC, held(3600))
    assert "a" in logins and len(logins) == 1
    assert logins.tokens("a") == held(3600)
    assert logins.tokens("other") is None


def test_reseed_keeps_what_is_held_unless_the_file_is_newer() -> None:
    logins = Logins()
    login = logins.seed("a", SRC, held(3600))
    logins.refreshed("a", held(7200, 2))
    moved = LoginSource("chatgpt", "/t/a.json", "http://127.0.0.1:1/t", "cid")
    assert logins.seed("a", moved, held(3600)) is login  # the file lags: keep ours
    assert login.tokens == held(7200, 2) and login.source == moved and login.refreshes == 1
    login.revoked = "log in again (invalid_grant)"
    fresh = logins.seed("a", SRC, held(9000, 3))  # a new login was imported
    assert fresh is not login and fresh.revoked is None and fresh.tokens == held(9000, 3)
    other_file = LoginSource("chatgpt", "/t/b.json", "https://x/t", "cid")
    assert logins.seed("a", other_file, held(10, 4)).tokens == held(10, 4)


def test_failures_back_off_then_a_refresh_clears_them() -> None:
    logins = Logins()
    logins.seed("a", SRC, held(100))
    logins.failed("a", RefreshFailed(Failure.RETRY, "the token endpoint answered 503", 503), NOW)
    logins.failed("a", RefreshFailed(Failure.RETRY, "the token endpoint answered 503", 503), NOW)
    login = logins.get("a")
    assert login is not None
    assert (login.failures, login.retry_at, login.revoked) == (2, NOW + 10, None)
    assert logins.due(NOW, 300) == [] and logins.due(NOW + 10, 300) == [login]
    logins.refreshed("a", held(3600, 2))
    assert (login.failures, login.retry_at, login.last_error) == (0, 0.0, None)


def test_a_dead_login_is_revoked_and_never_due() -> None:
    logins = Logins()
    logins.seed("a", SRC, held(-5))
    logins.failed("a", RefreshFailed(Failure.DEAD, "log in again (refresh_token_reused)", 400),
                  NOW)
    assert logins.due(NOW, 300) == [] and logins.next_due(NOW, 300) is None
    assert logins.view("a", NOW) == {
        "state": "revoked", "reason": "log in again (refresh_token_reused)", "expires_in": -5.0,
        "refreshes": 0, "adopted": 0, "failures": 0,
        "last_error": "log in again (refresh_token_reused)", "file": "/t/a.json"}
    assert logins.adopt("a", held(3600, 2))  # another proxy had refreshed it: alive again
    assert logins.view("a", NOW)["state"] == "live"  # type: ignore[index]


def test_due_expired_first_and_next_due() -> None:
    logins = Logins()
    logins.seed("later", SRC, held(1000, 1))
    logins.seed("soon", SRC, held(200, 2))
    logins.seed("gone", SRC, held(-1, 3))
    logins.seed("opaque", SRC, Tokens("x", "y", None))
    assert [login.alias for login in logins.due(NOW, 300)] == ["gone", "soon"]
    assert logins.next_due(NOW, 300) == NOW - 100  # overdue: the caller runs it now
    logins.retain(["later", "opaque"])
    assert logins.next_due(NOW, 300) == NOW + 700
    assert logins.view("gone", NOW) is None


def test_adopt_takes_only_newer_tokens() -> None:
    logins = Logins()
    logins.seed("a", SRC, held(1000))
    assert not logins.adopt("a", held(500, 2))
    assert not logins.adopt("a", held(1000))
    assert logins.adopt("a", held(2000, 3))
    assert logins.get("a").adopted == 1  # type: ignore[union-attr]


def test_views_and_reprs_hold_no_token() -> None:
    logins = Logins()
    logins.seed("a", SRC, held(100))
    text = repr(logins) + repr(logins.view("a", NOW))
    assert "access-1" not in text and "refresh-1" not in text and "acct" not in text
    assert set(logins.secrets()) == {"access-1", "refresh-1", "acct"}
