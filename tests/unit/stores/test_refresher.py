"""The refresher with an injected POST: single flight, save before use, failures, a share."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from stickyroute.config.loginfile import read_login
from stickyroute.config.oauth import LoginSource, Tokens
from stickyroute.core.logins import Logins
from stickyroute.core.oauth import Failure, RefreshFailed, fingerprint
from stickyroute.stores.refresher import Refresher, SharedLogin, save_to_file
from tests.helpers import Clock, LoginDisk, TokenEndpoint, run_async

NOW = 1_800_000_000.0


SRC = LoginSource("anthropic", "/nowhere/a.json", "https://platform.claude.com/v1/oauth/token",
                  "cid")
OLD = Tokens("access-0", "refresh-0", NOW + 100)


def make(post: TokenEndpoint, share: Any = None,
         logins: Logins | None = None) -> tuple[Refresher, Logins, LoginDisk]:
    logins = logins or Logins()
    if "a" not in logins:
        logins.seed("a", SRC, OLD)
    disk = LoginDisk(logins)
    disk.files[SRC.file] = OLD
    refresher = Refresher(logins, post, save=disk.save, load=disk.load, share=share,
                          clock=Clock(NOW), poll=0)
    return refresher, logins, disk


@run_async
async def test_concurrent_callers_share_one_refresh() -> None:
    post = TokenEndpoint()
    post.gate = asyncio.Event()
    refresher, logins, disk = make(post)
    calls = [asyncio.create_task(refresher.refresh("a", stale=fingerprint("access-0"))) for _ in range(5)]
    await asyncio.sleep(0)
    assert refresher.running("a")
    post.gate.set()
    results = await asyncio.gather(*calls)
    assert len(post.calls) == 1
    assert post.calls[0] == {"grant_type": "refresh_token", "refresh_token": "refresh-0",
                             "client_id": "cid"}
    assert all(r == Tokens("access-1", "refresh-1", NOW + 3600) for r in results)
    assert logins.tokens("a") == results[0] and disk.files[SRC.file] == results[0]
    # a late 401 for the old token: already replaced, nothing is sent again
    assert await refresher.refresh("a", stale=fingerprint("access-0")) == results[0]
    assert len(post.calls) == 1 and not refresher.running("a")


@run_async
async def test_drain_waits_for_refreshes_in_flight() -> None:
    post = TokenEndpoint()
    post.gate = asyncio.Event()
    refresher, logins, disk = make(post)
    await refresher.drain()  # nothing in flight
    task = asyncio.create_task(refresher.refresh("a"))
    await asyncio.sleep(0)
    drained = asyncio.create_task(refresher.drain())
    await asyncio.sleep(0)
    assert not drained.done()
    post.gate.set()
    await drained
    assert disk.files[SRC.file] == logins.tokens("a") == await task != OLD


@run_async
async def test_the_file_is_written_before_the_tokens_are_used() -> None:
    refresher, logins, disk = make(TokenEndpoint())
    await refresher.refresh("a")
    assert disk.held_at_save == [OLD]  # while saving, requests still signed with the old token
    assert logins.get("a").refreshes == 1  # type: ignore[union-attr]


@run_async
async def test_a_save_failure_still_uses_the_new_tokens(caplog: pytest.LogCaptureFixture) -> None:
    refresher, logins, disk = make(TokenEndpoint())
    disk.broken = True
    with caplog.at_level(logging.ERROR, "stickyroute"):
        result = await refresher.refresh("a")
    assert isinstance(result, Tokens) and logins.tokens("a") == result
    assert "could not save the refreshed login" in caplog.text


@run_async
async def test_answer_without_refresh_token_keeps_the_old_one() -> None:
    refresher, logins, _ = make(TokenEndpoint((200, {"access_token": "access-x",
                                                     "expires_in": 60})))
    result = await refresher.refresh("a")
    assert result == Tokens("access-x", "refresh-0", NOW + 60)


@run_async
async def test_a_dead_login_is_revoked_and_never_sent_again(
        caplog: pytest.LogCaptureFixture) -> None:
    post = TokenEndpoint((400, {"error": "invalid_grant", "error_description": "refresh-0"}))
    refresher, logins, disk = make(post)
    with caplog.at_level(logging.INFO, "stickyroute"):
        result = await refresher.refresh("a")
    assert result == RefreshFailed(Failure.DEAD, "log in again (invalid_grant)", 400)
    assert logins.get("a").revoked == "log in again (invalid_grant)"  # type: ignore[union-attr]
    again = await refresher.refresh("a")
    assert isinstance(again, RefreshFailed) and again.kind is Failure.DEAD
    assert len(post.calls) == 1 and disk.files[SRC.file] == OLD
    assert "refresh-0" not in caplog.text and "access-0" not in caplog.text


@pytest.mark.parametrize("answer, reason", [
    (ConnectionRefusedError(111, "refused"), "the token endpoint could not be reached"),
    (TimeoutError(), "the token endpoint could not be reached"),
    ((503, {"error": "overloaded"}), "the token endpoint answered 503"),
])
@run_async
async def test_transient_failures_back_off(answer: Any, reason: str) -> None:
    refresher, logins, _ = make(TokenEndpoint(answer))
    result = await refresher.refresh("a")
    assert isinstance(result, RefreshFailed) and result.kind is Failure.RETRY
    assert result.reason == reason
    login = logins.get("a")
    assert login is not None and login.failures == 1 and login.retry_at == NOW + 5
    assert logins.tokens("a") == OLD and login.revoked is None
    assert await refresher.refresh_due(300) == {}  # backing off


@run_async
async def test_an_unexpected_error_is_a_retry(caplog: pytest.LogCaptureFixture) -> None:
    refresher, logins, _ = make(TokenEndpoint(RuntimeError("boom")))
    with caplog.at_level(logging.ERROR, "stickyroute"):
        result = await refresher.refresh("a")
    assert result == RefreshFailed(Failure.RETRY, "the refresh failed unexpectedly")
    assert logins.get("a").failures == 1  # type: ignore[union-attr]


@run_async
async def test_newer_tokens_on_disk_are_taken_without_a_refresh() -> None:
    post = TokenEndpoint()
    refresher, logins, disk = make(post)
    disk.files[SRC.file] = Tokens("access-new", "refresh-new", NOW + 5000)
    assert await refresher.refresh("a") == Tokens("access-new", "refresh-new", NOW + 5000)
    assert post.calls == [] and logins.get("a").adopted == 1  # type: ignore[union-attr]


@run_async
async def test_refresh_due_only_touches_due_logins() -> None:
    logins = Logins()
    logins.seed("a", SRC, OLD)
    logins.seed("b", LoginSource("anthropic", "/nowhere/b.json", SRC.token_url, "cid"),
                Tokens("access-b", "refresh-b", NOW + 3600))
    post = TokenEndpoint()
    refresher, _, _ = make(post, logins=logins)
    assert list(await refresher.refresh_due(300)) == ["a"]
    assert [c["refresh_token"] for c in post.calls] == ["refresh-0"]


@run_async
async def test_unknown_account() -> None:
    refresher, _, _ = make(TokenEndpoint())
    assert await refresher.refresh("zz") == RefreshFailed(Failure.DEAD,
                                                          "no OAuth login for this account")


@run_async
async def test_save_to_file_keeps_the_shape(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"claudeAiOauth": {"accessToken": "a", "refreshToken": "r",
                                                  "expiresAt": 1, "scopes": ["s"]}}))
    source = LoginSource("anthropic", str(path), SRC.token_url, "cid")
    save_to_file(source, Tokens("a2", "r2", NOW), NOW)
    assert json.loads(path.read_text())["claudeAiOauth"] == {
        "accessToken": "a2", "refreshToken": "r2", "expiresAt": int(NOW * 1000),
        "scopes": ["s"]}
    gone = LoginSource("chatgpt", str(tmp_path / "gone.json"), SRC.token_url, "cid")
    save_to_file(gone, Tokens("a3", "r3", None, "id3", "acct3"), NOW)
    assert read_login(gone.file).tokens == Tokens("a3", "r3", None, "id3", "acct3")


# ---- several proxies on one share ---------------------------------------------------------------
class MemoryShare:
    """The TokenShare contract in memory (the Redis one is tested against a real server)."""

    def __init__(self) -> None:
        self.lock: str | None = None
        self.login: SharedLogin | None = None
        self.down = False

    async def acquire(self, alias: str, owner: str, ttl: float) -> bool:
        self._check()
        if self.lock is None:
            self.lock = owner
            return True
        return False

    async def release(self, alias: str, owner: str) -> None:
        self._check()
        if self.lock == owner:
            self.lock = None

    async def load(self, alias: str) -> SharedLogin | None:
        self._check()
        return self.login

    async def publish(self, alias: str, spent: str, login: SharedLogin) -> bool:
        self._check()
        if self.login is not None and self.login.tokens.refresh_token != spent:
            return False
        self.login = login
        return True

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("down")


@run_async
async def test_two_proxies_refresh_once() -> None:
    share = MemoryShare()
    post = TokenEndpoint()
    post.gate = asyncio.Event()
    first, logins1, _ = make(post, share)
    second, logins2, disk2 = make(post, share)
    one = asyncio.create_task(first.refresh("a"))
    await asyncio.sleep(0)
    two = asyncio.create_task(second.refresh("a"))
    for _ in range(5):
        await asyncio.sleep(0)
    post.gate.set()
    r1, r2 = await asyncio.gather(one, two)
    assert len(post.calls) == 1
    assert r1 == r2 == logins1.tokens("a") == logins2.tokens("a") == disk2.files[SRC.file]
    assert logins2.get("a").adopted == 1 and share.lock is None  # type: ignore[union-attr]
    assert await second.refresh_due(300) == {} and len(post.calls) == 1


@run_async
async def test_a_published_dead_login_is_not_tried_again_elsewhere() -> None:
    share = MemoryShare()
    post = TokenEndpoint((400, {"error": {"code": "refresh_token_reused"}}))
    first, _, _ = make(post, share)
    second, logins2, _ = make(post, share)
    assert (await first.refresh("a")).kind is Failure.DEAD  # type: ignore[union-attr]
    result = await second.refresh("a")
    assert result == RefreshFailed(Failure.DEAD, "log in again (refresh_token_reused)")
    assert len(post.calls) == 1 and logins2.get("a").revoked  # type: ignore[union-attr]


@run_async
async def test_a_holder_that_gave_up_lets_the_next_one_try() -> None:
    share = MemoryShare()
    post = TokenEndpoint((503, {}))
    post.gate = asyncio.Event()
    first, _, _ = make(post, share)
    second, logins2, _ = make(post, share)
    one = asyncio.create_task(first.refresh("a"))
    await asyncio.sleep(0)
    two = asyncio.create_task(second.refresh("a"))
    for _ in range(5):
        await asyncio.sleep(0)
    post.gate.set()
    r1, r2 = await asyncio.gather(one, two)
    assert isinstance(r1, RefreshFailed) and r1.kind is Failure.RETRY
    assert r2 == Tokens("access-1", "refresh-1", NOW + 3600) == logins2.tokens("a")
    assert [c["refresh_token"] for c in post.calls] == ["refresh-0", "refresh-0"]


@run_async
async def test_no_refresh_without_the_share() -> None:
    share = MemoryShare()
    share.down = True
    post = TokenEndpoint()
    refresher, logins, _ = make(post, share)
    result = await refresher.refresh("a")
    assert isinstance(result, RefreshFailed) and result.kind is Failure.RETRY
    assert "shared store is unreachable" in result.reason and post.calls == []
    assert logins.get("a").failures == 1  # type: ignore[union-attr]


def test_seed_logins_from_the_accounts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from stickyroute.config.accounts import parse_accounts
    from stickyroute.stores.refresher import seed_logins
    from tests.unit.config.test_loginfile import CLAUDE_DOC

    (tmp_path / "c.json").write_text(json.dumps(CLAUDE_DOC))
    (tmp_path / "d.json").write_text(json.dumps(CLAUDE_DOC))
    accounts = parse_accounts(
        "accounts:\n  - {alias: c, provider: anthropic, oauth_file: c.json}\n"
        "  - {alias: d, provider: anthropic, oauth_file: d.json}\n"
        "  - {alias: k, provider: anthropic, api_key: sk}\n", base_dir=tmp_path, env={})
    logins = Logins()
    logins.seed("gone", SRC, OLD)
    assert seed_logins(logins, accounts.accounts) == []
    assert "gone" not in logins and "c" in logins and "d" in logins and len(logins) == 2
    assert logins.tokens("c") == Tokens("sk-ant-oat01-a", "sk-ant-ort01-r",
                                        CLAUDE_DOC["claudeAiOauth"]["expiresAt"] / 1000)
    (tmp_path / "c.json").unlink()
    (tmp_path / "d.json").write_text("{}")
    fresh = Logins()
    with caplog.at_level(logging.WARNING, "stickyroute"):
        assert seed_logins(logins, accounts.accounts) == []  # held in memory: still usable
        assert seed_logins(fresh, accounts.accounts) == ["c", "d"]
    assert "keeping the login held in memory" in caplog.text
    assert "sk-ant" not in caplog.text


# ---- phase 2: callers that go away, dead logins that come back --------------------------------
@run_async
async def test_a_caller_that_goes_away_never_cuts_a_spent_refresh() -> None:
    post = TokenEndpoint()
    post.gate = asyncio.Event()
    refresher, logins, disk = make(post)
    caller = asyncio.create_task(refresher.refresh("a"))
    await asyncio.sleep(0.01)
    assert len(post.calls) == 1  # the refresh token is on the wire
    caller.cancel()  # the client disconnected, or the background task was cancelled
    await asyncio.sleep(0)
    assert refresher.running("a")
    post.gate.set()
    await refresher.drain()
    new = logins.tokens("a")
    assert new is not None and new.access_token == "access-1" and disk.files[SRC.file] == new
    assert not refresher.running("a") and caller.cancelled()


@run_async
async def test_revive_takes_a_new_login_from_the_file_only() -> None:
    from stickyroute.config.accounts import Account

    post = TokenEndpoint((400, {"error": "invalid_grant"}))
    refresher, logins, disk = make(post)
    accounts = [Account("a", "anthropic", "", oauth=SRC), Account("k", "openai", "sk")]
    await refresher.refresh("a")
    assert logins.get("a").revoked is not None  # type: ignore[union-attr]
    assert await refresher.revive(accounts) == []  # the file still holds the dead login
    disk.files[SRC.file] = Tokens("access-new", "refresh-new", NOW + 9000)  # imported again
    assert await refresher.revive(accounts) == ["a"]
    login = logins.get("a")
    assert login is not None and login.revoked is None and login.tokens.access_token == "access-new"
    assert len(post.calls) == 1  # reviving never refreshes
    logins.retain([])  # a login that was never loaded: taken once its file reads
    assert await refresher.revive(accounts) == ["a"] and "a" in logins


@run_async
async def test_revive_takes_a_live_login_another_proxy_shared() -> None:
    class Share:
        def __init__(self) -> None:
            self.login: SharedLogin | None = None

        async def load(self, alias: str) -> SharedLogin | None:
            return self.login

    from stickyroute.config.accounts import Account

    share = Share()
    refresher, logins, disk = make(TokenEndpoint((400, {"error": "invalid_grant"})))
    await refresher.refresh("a")
    refresher.share = share  # type: ignore[assignment]
    accounts = [Account("a", "anthropic", "", oauth=SRC)]
    share.login = SharedLogin(OLD, "log in again (invalid_grant)")  # dead there too
    assert await refresher.revive(accounts) == []
    fresh = Tokens("access-9", "refresh-9", NOW + 5000)
    share.login = SharedLogin(fresh)
    assert await refresher.revive(accounts) == ["a"]
    assert logins.tokens("a") == fresh and disk.files[SRC.file] == fresh
