"""The live-login holder: seeding, refreshes, failures, due logins, the admin view."""

from __future__ import annotations

from stickyroute.config.accounts import Account
from stickyroute.config.oauth import LoginSource, Tokens
from stickyroute.core.health import Health
from stickyroute.core.health import State as HealthState
from stickyroute.core.logins import Logins, after_refusal, sync_health
from stickyroute.core.oauth import Failure, RefreshFailed
from stickyroute.core.outcome import Kind, Outcome

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
        "refreshed_at": None, "refreshes": 0, "adopted": 0, "failures": 0,
        "refresh_failures": 1, "retry_in": None,
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


# ---- phase 2: the margin's bound, saved dead logins, account health --------------------------
def test_the_margin_is_at_most_half_the_token_life() -> None:
    logins = Logins()
    logins.seed("a", SRC, held(3600))
    login = logins.get("a")
    assert login is not None and login.plan(NOW, 300).at == NOW + 3300  # from a file: as is
    logins.refreshed("a", Tokens("access-2", "refresh-2", NOW + 4), NOW)  # lives 4 s
    assert login.plan(NOW, 300).at == NOW + 2  # not due again at once
    assert login.plan(NOW, 1).at == NOW + 3  # a smaller margin stays
    assert login.plan(NOW + 4, 300).plan.value == "expired"


def test_counters_survive_a_new_login_of_the_same_account() -> None:
    logins = Logins()
    logins.seed("a", SRC, held(100))
    logins.refreshed("a", held(200, 2), NOW)
    logins.failed("a", RefreshFailed(Failure.DEAD, "log in again (invalid_grant)", 400), NOW)
    fresh = logins.seed("a", SRC, held(9000, 3))
    assert (fresh.refreshes, fresh.refresh_failures, fresh.revoked) == (1, 1, None)


def test_dead_logins_are_saved_by_their_spent_refresh_token() -> None:
    logins = Logins()
    logins.seed("a", SRC, held(100))
    logins.seed("b", SRC, held(100, 2))
    logins.failed("a", RefreshFailed(Failure.DEAD, "log in again (invalid_grant)", 400), NOW)
    saved = logins.export_state()
    assert list(saved) == ["a"] and saved["a"]["reason"] == "log in again (invalid_grant)"
    assert "refresh-1" not in repr(saved)
    # after a restart: the file still holds the dead login -> dead; a new login -> alive
    again = Logins()
    again.seed("a", SRC, held(100))
    again.seed("b", SRC, held(100, 2))
    again.import_state(saved, NOW)
    assert again.get("a").revoked == "log in again (invalid_grant)"  # type: ignore[union-attr]
    new = Logins()
    new.seed("a", SRC, held(9000, 7))
    new.import_state(saved, NOW)
    assert new.get("a").revoked is None  # type: ignore[union-attr]
    for broken in (None, [], {"a": "x"}, {"a": {"reason": 3, "spent": "y"}}, {"zz": {}}):
        new.import_state(broken, NOW)  # ignored, never raises
    assert new.get("a").revoked is None  # type: ignore[union-attr]


def _accounts() -> list[Account]:
    return [Account("a", "chatgpt", "", "acct", oauth=SRC), Account("key", "openai", "sk-x"),
            Account("b", "chatgpt", "", "acct", oauth=SRC)]


def test_health_follows_the_logins() -> None:
    logins, health = Logins(), Health()
    logins.seed("a", SRC, held(100))  # "b" has no login (its file could not be read)
    changes = sync_health(logins, health, _accounts(), NOW)
    assert [(c.alias, c.after.value) for c in changes] == [("b", "disabled")]
    assert health.describe("b", NOW).reason == "no login: its oauth_file could not be read"
    assert health.available("a", NOW) and health.available("key", NOW)

    logins.failed("a", RefreshFailed(Failure.DEAD, "log in again (invalid_grant)", 400), NOW)
    sync_health(logins, health, _accounts(), NOW)
    assert health.describe("a", NOW) == (HealthState.DISABLED,
                                         "revoked: log in again (invalid_grant)", None)
    assert sync_health(logins, health, _accounts(), NOW) == []  # idempotent

    logins.seed("b", SRC, held(100, 2))
    logins.adopt("a", held(500, 3), NOW)  # a new login (or another proxy's refresh)
    back = sync_health(logins, health, _accounts(), NOW)
    assert sorted((c.alias, c.after.value) for c in back) == [("a", "healthy"), ("b", "healthy")]


def test_an_expired_token_whose_refresh_fails_cools_until_the_next_try() -> None:
    logins, health = Logins(), Health()
    logins.seed("a", SRC, held(-1))
    logins.seed("b", SRC, held(100, 2))
    for alias in ("a", "b"):
        logins.failed(alias, RefreshFailed(Failure.RETRY, "the token endpoint answered 503",
                                           503), NOW)
    sync_health(logins, health, _accounts(), NOW)
    assert health.describe("a", NOW) == (
        HealthState.COOLING, "login refresh failing: the token endpoint answered 503", NOW + 5)
    assert health.available("b", NOW)  # its token still works: nothing changes for requests
    assert health.available("a", NOW + 5)


def test_only_our_own_reasons_are_cleared() -> None:
    logins, health = Logins(), Health()
    logins.seed("a", SRC, held(100))
    health.disable("a", "disabled by an operator", NOW)
    health.record("b", Outcome(Kind.REVOKED, "credential rejected (401)"), NOW)
    logins.seed("b", SRC, held(100, 2))
    assert sync_health(logins, health, _accounts(), NOW) == []
    assert not health.available("a", NOW) and not health.available("b", NOW)


def test_what_a_refused_token_means_after_its_refresh() -> None:
    assert after_refusal(held(100), 0.0).kind is Kind.REFRESHED
    dead = after_refusal(RefreshFailed(Failure.DEAD, "log in again (invalid_grant)"), 0.0)
    assert dead == Outcome(Kind.REVOKED, "revoked: log in again (invalid_grant)")
    retry = after_refusal(RefreshFailed(Failure.RETRY, "the token endpoint answered 502"),
                          NOW + 5)
    assert (retry.kind, retry.reset) == (Kind.RATE_LIMITED, NOW + 5)
    assert retry.reason == "login refresh failing: the token endpoint answered 502"


def test_what_comes_back_for_a_forgotten_login_is_dropped() -> None:
    logins = Logins()
    logins.seed("a", SRC, held(100))
    logins.retain([])  # its account left the accounts file while its refresh ran
    logins.refreshed("a", held(200, 2), NOW)
    logins.failed("a", RefreshFailed(Failure.DEAD, "log in again (invalid_grant)", 400), NOW)
    assert not logins.adopt("a", held(300, 3), NOW) and "a" not in logins
