"""The Redis token share against a real redis-server: lock, compare-and-set, two proxies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from stickyroute.config.oauth import LoginSource, Tokens
from stickyroute.core.logins import Logins
from stickyroute.core.oauth import Failure, RefreshFailed
from stickyroute.stores.redislayout import Keys
from stickyroute.stores.refresher import Refresher, SharedLogin
from stickyroute.stores.tokenshare import RedisTokenShare, parse_shared
from tests.e2e.redis_server import RedisServer
from tests.helpers import Clock, LoginDisk, TokenEndpoint, run_async

NOW = 1_800_000_000.0

KEYS = Keys("test:")
T1 = Tokens("access-1", "refresh-1", NOW + 100, "id-1", "acct")
T2 = Tokens("access-2", "refresh-2", NOW + 200, None, "acct")


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as s:
        yield s


@pytest.fixture
def url(server: RedisServer) -> Iterator[str]:
    yield server.url

    async def flush() -> None:
        client = aioredis.Redis.from_url(server.url)
        await client.flushdb()
        await client.aclose()

    asyncio.run(flush())


def share_for(url: str) -> RedisTokenShare:
    return RedisTokenShare(aioredis.Redis.from_url(url, decode_responses=True), KEYS)


@run_async
async def test_lock_is_exclusive_has_a_ttl_and_only_its_owner_frees_it(url: str) -> None:
    share = share_for(url)
    assert await share.acquire("a", "me", 60)
    assert not await share.acquire("a", "other", 60)
    assert 0 < await share.client.pttl(KEYS.login_lock("a")) <= 60_000
    await share.release("a", "other")
    assert not await share.acquire("a", "other", 60)
    await share.release("a", "me")
    assert await share.acquire("a", "other", 60)
    assert await share.acquire("b", "me", 60)  # one lock per login
    await share.client.aclose()


@run_async
async def test_publish_is_a_compare_and_set_on_the_spent_refresh_token(url: str) -> None:
    share = share_for(url)
    assert await share.load("a") is None
    assert await share.publish("a", "refresh-0", SharedLogin(T1))
    assert await share.load("a") == SharedLogin(T1)
    # a proxy that spent refresh-0 late (its lock ran out) cannot overwrite the newer login
    assert not await share.publish("a", "refresh-0", SharedLogin(T2))
    assert await share.publish("a", "refresh-1", SharedLogin(T2))
    assert await share.load("a") == SharedLogin(T2)
    assert await share.publish("a", "refresh-2", SharedLogin(T2, "log in again (invalid_grant)"))
    assert await share.load("a") == SharedLogin(T2, "log in again (invalid_grant)")
    raw = await share.client.hgetall(KEYS.login("a"))
    assert "refresh-2" not in raw["rt"]  # compared by hash
    # a dead login is replaced by a live one, whatever refresh token that one spent (a new
    # login); another dead one does not replace it
    t3 = Tokens("access-3", "refresh-3", NOW + 300)
    assert not await share.publish("a", "refresh-x", SharedLogin(t3, "log in again (x)"))
    assert await share.publish("a", "refresh-x", SharedLogin(t3))
    assert await share.load("a") == SharedLogin(t3)
    assert not await share.publish("a", "refresh-y", SharedLogin(T1))  # live again: CAS holds
    await share.client.aclose()


@pytest.mark.parametrize("data", [
    {"tokens": "{"}, {"tokens": "[]"}, {"tokens": json.dumps({"access_token": "a"})},
    {"tokens": json.dumps({"access_token": "", "refresh_token": "r"})}, {"rt": "x"},
])
def test_broken_values_are_ignored(data: dict[str, str]) -> None:
    assert parse_shared(data) is None


@run_async
async def test_two_proxies_on_one_redis_refresh_once(url: str) -> None:
    source = LoginSource("chatgpt", "/nowhere/a.json", "https://auth.openai.com/oauth/token",
                         "cid")
    old = Tokens("access-0", "refresh-0", NOW + 100, None, "acct")
    post = TokenEndpoint()
    post.gate = asyncio.Event()
    proxies = []
    for _ in range(3):
        logins = Logins()
        logins.seed("a", source, old)
        disk = LoginDisk(logins)
        proxies.append((Refresher(logins, post, save=disk.save, load=disk.load,
                                  share=share_for(url), clock=Clock(NOW), poll=0.005),
                        logins, disk))
    tasks = [asyncio.create_task(r.refresh("a")) for r, _, _ in proxies]
    await asyncio.sleep(0.05)
    post.gate.set()
    results = await asyncio.gather(*tasks)
    assert len(post.calls) == 1
    assert all(r == results[0] for r in results) and isinstance(results[0], Tokens)
    for _, logins, disk in proxies:
        assert logins.tokens("a") == results[0] and disk.files[source.file] == results[0]
    first = proxies[0][0]
    assert first.share is not None and await first.share.load("a") == SharedLogin(results[0])
    assert await first.share.acquire("a", "x", 1)  # nobody kept the lock
    await first.share.release("a", "x")

    # the login dies at the next refresh: the others learn it without spending the token
    post.answers.append((401, {"error": {"code": "refresh_token_reused"}}))
    dead = await first.refresh("a")
    assert isinstance(dead, RefreshFailed) and dead.kind is Failure.DEAD
    for refresher, logins, _ in proxies[1:]:
        assert await refresher.refresh("a") == RefreshFailed(
            Failure.DEAD, "log in again (refresh_token_reused)")
        assert logins.get("a").revoked  # type: ignore[union-attr]
    assert len(post.calls) == 2
    for refresher, _, _ in proxies:
        assert refresher.share is not None
        await refresher.share.client.aclose()  # type: ignore[attr-defined]
