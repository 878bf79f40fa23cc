"""stores/share.py: chains and account health shared by two proxies through one real
redis-server."""

import asyncio

import pytest
from mitmproxy.test import taddons

from stickyroute.core.health import Health
from stickyroute.core.outcome import Kind, Outcome
from stickyroute.core.pins import PinTable
from stickyroute.stores.base import Local
from stickyroute.stores.redis import RedisStore
from stickyroute.stores.share import HealthSync
from tests.helpers import ACCOUNTS, addons, flow, resp_body, respond


@pytest.fixture
def proxies(tmp_path, redis_server):
    """Two proxies in one process with disagreeing strategies and the response glue."""
    accounts = tmp_path / "accounts.yaml"
    accounts.write_text(ACCOUNTS)
    out, contexts = [], []
    for strategy in ("round-robin", "fill-first"):
        route = addons()
        follow = route.follow
        ctx = taddons.context(*route)
        tctx = ctx.__enter__()
        contexts.append(ctx)
        tctx.configure(route.options, sticky_accounts=str(accounts), sticky_strategy=strategy)
        route.state.store = RedisStore(redis_server.url, "t:")
        out.append((route, follow))
    yield out
    for ctx in contexts:
        ctx.__exit__(None, None, None)


async def until_stored(store: RedisStore, key: str) -> None:
    """The chain write is sent in the background right after it is noted; wait for it."""
    for _ in range(200):
        if await store.load_chain(key) is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{key} never reached redis")


def test_chain_started_on_one_proxy_is_followed_on_the_other(proxies):
    (a, fa), (b, _) = proxies

    async def go():
        started = {}
        for conv in range(4):  # round-robin on a: both accounts get conversations
            f = flow(body={"model": "gpt-fake", "input": f"conv {conv}"})
            pending = a.route.request(f)
            if pending is not None:
                await pending
            respond(f, fa, resp_body(f"resp_{conv}", reasoning=f"rs_{conv}"))
            started[f"resp_{conv}"] = f.metadata["stickyroute"]["account"]
        assert set(started.values()) == {"oa", "ob"}
        client = f.metadata["stickyroute"]["client"]
        await until_stored(b.state.store, f"openai/{client}/resp_3")
        for rid, alias in started.items():
            f = flow(body={"model": "gpt-fake", "previous_response_id": rid, "input": "next"})
            pending = b.route.request(f)
            assert pending is not None  # unknown here: b asks the store once
            await pending
            meta = f.metadata["stickyroute"]
            assert meta["account"] == alias and meta["hard"], (rid, meta)
            assert meta["session_source"].startswith("chain:")
            # learned: the next turn on b is routed at once, no round trip
            again = flow(body={"model": "gpt-fake", "previous_response_id": rid, "input": "x"})
            assert b.route.request(again) is None
            assert again.metadata["stickyroute"]["account"] == alias
        # A request without previous_response_id never waits for the store.
        plain = flow(body={"model": "gpt-fake", "input": "hi"}, headers=[("session-id", "s")])
        pending = b.route.request(plain)
        assert pending is not None  # a new session claims (that is the pins' round trip)
        await pending
        assert b.route.request(flow(body={"model": "gpt-fake", "input": "hi"},
                              headers=[("session-id", "s")])) is None
        # Unknown everywhere: asked once, then routed like any new request.
        f = flow(body={"model": "gpt-fake", "previous_response_id": "resp_nowhere", "input": "x"})
        pending = b.route.request(f)
        assert pending is not None
        await pending
        assert f.metadata["stickyroute"]["account"] in ("oa", "ob")
        assert not f.metadata["stickyroute"]["session_source"].startswith("chain:")
        for p in (a, b):
            await p.state.store.close(Local(p.state.pins), 1.0)
    asyncio.run(go())


def test_chain_lookup_with_redis_down_routes_at_once(proxies, redis_server):
    (_, _), (b, _) = proxies

    async def go():
        redis_server.kill()
        f = flow(body={"model": "gpt-fake", "previous_response_id": "resp_x", "input": "x"})
        pending = b.route.request(f)
        if pending is not None:
            await asyncio.wait_for(pending, 2)
        assert f.metadata["stickyroute"]["account"] in ("oa", "ob")
        await b.state.store.close(Local(b.state.pins), 1.0)
    asyncio.run(go())


def shared_health(redis_server):
    """A Health per proxy wired to its store the way persist.py wires it."""
    out = []
    for _ in range(2):
        health, store, sync = Health(rng=lambda: 0.0), RedisStore(redis_server.url, "t:"), HealthSync()
        health.on_change = (lambda h, s, y: lambda alias, event, now: y.publish(
            h, s, alias, event, now))(health, store, sync)
        out.append((health, store, sync))
    return out


def test_health_changes_reach_the_other_proxy(redis_server):
    (h1, s1, y1), (h2, s2, y2) = shared_health(redis_server)
    aliases = ["oa", "ob"]

    async def go():
        h1.record("oa", Outcome(Kind.RATE_LIMITED, "rate limited (429)", 1100.0), 1000.0)
        h1.disable("ob", "operator", 1000.0)
        await s1.flush(Local(PinTable()), 1000.0)
        assert await y2.pull(h2, s2, aliases, 1001.0) == 2
        assert h2.describe("oa", 1001.0)._asdict() == {"state": "cooling", "reason": "rate limited (429)",
                                             "until": 1100.0}
        assert h2.describe("ob", 1001.0).state == "disabled"
        assert await y2.pull(h2, s2, aliases, 1002.0) == 0  # seen: not merged again
        assert await y1.pull(h1, s1, aliases, 1002.0) == 0  # its own changes: nothing
        # A shorter cooldown elsewhere never shortens ours; a later one extends it.
        h2.record("oa", Outcome(Kind.RATE_LIMITED, "rate limited (429)", 1200.0), 1003.0)
        await s2.flush(Local(PinTable()), 1003.0)
        assert await y1.pull(h1, s1, aliases, 1004.0) == 1
        assert h1.describe("oa", 1004.0).until == 1200.0
        # The operator's enable on proxy 2 enables it on proxy 1 too.
        h2.enable("ob", 1005.0)
        await s2.flush(Local(PinTable()), 1005.0)
        assert await y1.pull(h1, s1, aliases, 1006.0) == 1
        assert h1.available("ob", 1006.0)
        # Accounts this proxy does not have are ignored.
        assert await y1.pull(h1, s1, ["oa"], 1007.0) == 0
        for s in (s1, s2):
            await s.close(Local(PinTable()), 1010.0)
    asyncio.run(go())
