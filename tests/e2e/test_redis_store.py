"""stores/redis.py against a real redis-server (a fresh one per test on a free loopback port),
and two proxies' glue in one process sharing it."""

import asyncio
import json
import logging

import redis.asyncio as aioredis
from mitmproxy.test import taddons

from stickyroute.core.pins import Pin, PinTable
from stickyroute.stores.base import Local
from stickyroute.stores.redis import RedisStore
from tests.helpers import ACCOUNTS, addons, flow, resp_body, respond


class Mono:
    t = 0.0

    def __call__(self):
        return self.t


def local(aliases=("oa", "ob")):
    return Local(PinTable(idle_timeout=3600, max_age=86400), {}, list(aliases))


def run(coro):
    return asyncio.run(coro)


def test_first_writer_wins_and_ttl_is_set(redis_server):
    async def go():
        a, b = RedisStore(redis_server.url, "t:"), RedisStore(redis_server.url, "t:")
        won = await a.claim(Pin("openai/s1", "oa", 1000.0, 1000.0))
        lost = await b.claim(Pin("openai/s1", "ob", 1001.0, 1001.0))
        assert won is not None and won[1] is True and won[0].alias == "oa"
        assert lost is not None and lost[1] is False and lost[0].alias == "oa"
        assert lost[0].created == 1000.0
        r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        assert await r.get("t:pin:openai/s1") == "oa|1000.0"
        assert 3_590_000 < await r.pttl("t:pin:openai/s1") <= 3_600_000
        assert await r.keys("*") and all(k.startswith("t:") for k in await r.keys("*"))
        for s in (a, b, r):
            await s.aclose() if s is r else await s.close(local(), 1002.0)
    run(go())


def test_ttl_is_capped_by_max_age_and_dead_pins_are_replaced(redis_server):
    async def go():
        s = RedisStore(redis_server.url, "t:")
        s.idle_timeout, s.max_age = 3600, 100
        await s.claim(Pin("k", "oa", 1000.0, 1000.0))
        r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        assert 99_000 < await r.pttl("t:pin:k") <= 100_000
        # a pin past its max age (by its own created time) loses to a new claim
        await r.set("t:pin:old", "oa|1.0")
        again = await s.claim(Pin("old", "ob", 1000.0, 1000.0))
        assert again is not None and again[0].alias == "ob" and again[1] is True
        await r.aclose()
        await s.close(local(), 1000.0)
    run(go())


def test_flush_refreshes_moves_removes_and_adopts_the_winner(redis_server):
    async def go():
        a, b = RedisStore(redis_server.url, "t:"), RedisStore(redis_server.url, "t:")
        la, lb = local(), local()
        # both proxies pinned "s" while they could not see each other; a wrote first
        pa, _ = la.pins.put("s", "oa", 10.0)
        pb, _ = lb.pins.put("s", "ob", 11.0)
        a.changed(pa, "new")
        await a.flush(la, 12.0)
        b.changed(pb, "hit")
        await b.flush(lb, 12.0)
        assert lb.pins.get("s", 12.0).alias == "oa" and b.adopted == 1
        # a move overwrites for everyone; the other proxy follows on its next refresh
        moved, _ = la.pins.put("s", "ob", 13.0)
        a.changed(moved, "moved")
        await a.flush(la, 13.0)
        lb.pins.put("s", "oa", 13.0)
        b.changed(lb.pins.get("s", 13.0), "hit")
        await b.flush(lb, 14.0)
        assert lb.pins.get("s", 14.0).alias == "ob"
        # shared session counts follow the move
        await a._refresh_counts(la, 14.0)
        assert a.shared_sessions() == {"oa": 0, "ob": 1}
        a.changed(moved, "removed")
        await a.flush(la, 15.0)
        r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        assert await r.get("t:pin:s") is None
        await r.aclose()
        await a.close(la, 15.0)
        await b.close(lb, 15.0)
    run(go())


def test_chains_and_health_are_shared(redis_server):
    async def go():
        a, b = RedisStore(redis_server.url, "t:"), RedisStore(redis_server.url, "t:")
        a.save_chain("openai/c/resp_1", "openai/s1", "oa", ttl=60)
        a.save_health("oa", {"state": "cooling", "reason": "429", "until": 1060.0})
        await a.flush(local(), 1000.0)
        assert await b.load_chain("openai/c/resp_1") == ("openai/s1", "oa")
        assert await b.load_chain("openai/c/resp_unknown") is None
        r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        assert 50_000 < await r.pttl("t:chain:openai/c/resp_1") <= 60_000
        await r.set("t:chain:openai/c/old", "openai/s-old-format")  # unreadable: unknown
        assert await b.load_chain("openai/c/old") is None
        await r.aclose()
        assert await b.load_health() == {"oa": {"state": "cooling", "reason": "429", "until": 1060.0}}
        await a.close(local(), 1000.0)
        await b.close(local(), 1000.0)
    run(go())


def test_redis_down_answers_none_at_once_logs_once_and_resyncs(redis_server, caplog):
    async def go():
        mono = Mono()
        s = RedisStore(redis_server.url, "t:", clock=mono)
        la = local()
        assert await s.claim(Pin("before", "oa", 1.0, 1.0)) is not None
        redis_server.kill()
        with caplog.at_level(logging.INFO, "stickyroute"):
            assert await s.claim(Pin("during-1", "oa", 2.0, 2.0)) is None
            assert s.up  # one failure may be a slow answer
            assert await s.claim(Pin("during-1", "oa", 2.0, 2.0)) is None
            assert not s.up
            for i in range(20):  # no wait, no new log line, while it is down
                assert await s.claim(Pin(f"during-{i}", "oa", 2.0, 2.0)) is None
            # pins written while it was down
            p1, _ = la.pins.put("during-1", "oa", 2.0)
            s.changed(p1, "new")
            p2, _ = la.pins.put("contested", "ob", 2.0)
            s.changed(p2, "new")
            await s.tick(la, 3.0)  # before the retry time: nothing happens
            mono.t = 1.0
            await s.tick(la, 3.0)  # probe fails: backoff grows
            assert not s.up
            redis_server.start()
            # meanwhile another proxy claimed "contested" first
            other = RedisStore(redis_server.url, "t:")
            await other.claim(Pin("contested", "oa", 2.5, 2.5))
            mono.t = 10.0
            await s.tick(la, 4.0)
            assert s.up
        assert caplog.text.count("unavailable") == 1 and "is back" in caplog.text
        r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        assert (await r.get("t:pin:during-1")).startswith("oa|")
        assert la.pins.get("contested", 4.0).alias == "oa"  # first writer won the reconciliation
        await r.aclose()
        await other.close(local(), 5.0)
        await s.close(la, 5.0)
    run(go())


# ---- the glue: two proxies in one process, one Redis ----


def two_proxies(tmp_path, redis_server):
    accounts = tmp_path / "accounts.yaml"
    accounts.write_text(ACCOUNTS)
    proxies = []
    for strategy in ("round-robin", "fill-first"):  # deliberately disagreeing strategies
        addon = addons()
        ctx = taddons.context(*addon)
        tctx = ctx.__enter__()
        tctx.configure(addon.options, sticky_accounts=str(accounts), sticky_strategy=strategy)
        addon.state.store = RedisStore(redis_server.url, "t:")
        proxies.append((addon, ctx))
    return proxies


def test_concurrent_first_requests_on_two_proxies_pin_one_account(tmp_path, redis_server):
    (p1, c1), (p2, c2) = two_proxies(tmp_path, redis_server)

    async def go():
        flows = []
        for i in range(40):
            session = f"conv-{i // 4}"  # 4 concurrent first requests per session, 2 per proxy
            flows.append((p1 if i % 2 else p2, flow(body={"input": "x"}, headers=[("session-id", session)])))
        await asyncio.gather(*(r for p, f in flows if (r := p.route.request(f)) is not None))
        by_session: dict[str, set[str]] = {}
        for _, f in flows:
            by_session.setdefault(f.request.headers["session-id"], set()).add(
                f.metadata["stickyroute"]["account"])
        assert all(len(accts) == 1 for accts in by_session.values()), by_session
        assert len(p1.state.claims) == 0 and len(p2.state.claims) == 0
        # later turns: local hits, no claim, same account
        for _, f in flows[:8]:
            again = flow(body={"input": "y"}, headers=[("session-id", f.request.headers["session-id"])])
            assert p2.route.request(again) is None
            assert again.metadata["stickyroute"]["account"] == f.metadata["stickyroute"]["account"]
        for p in (p1, p2):
            await p.state.store.close(Local(p.state.pins), 1.0)
    run(go())
    c1.__exit__(None, None, None)
    c2.__exit__(None, None, None)


def test_one_claim_per_session_in_one_proxy(tmp_path, redis_server):
    (p1, c1), _ = two_proxies(tmp_path, redis_server)
    calls = []
    real = p1.state.store.claim

    async def counting(pin):
        calls.append(pin.session)
        return await real(pin)

    p1.state.store.claim = counting

    async def go():
        fs = [flow(body={"input": "x"}, headers=[("session-id", "same")]) for _ in range(10)]
        await asyncio.gather(*(p1.route.request(f) or asyncio.sleep(0) for f in fs))
        assert len(calls) == 1
        assert len({f.metadata["stickyroute"]["account"] for f in fs}) == 1
        assert [f.metadata["stickyroute"]["affinity"] for f in fs].count("new") == 1
        await p1.state.store.close(Local(p1.state.pins), 1.0)
    run(go())
    c1.__exit__(None, None, None)


def test_redis_down_requests_route_from_memory(tmp_path, redis_server):
    (p1, c1), _ = two_proxies(tmp_path, redis_server)

    async def go():
        redis_server.kill()
        f = flow(body={"input": "x"}, headers=[("session-id", "offline")])
        await p1.route.request(f)
        assert f.metadata["stickyroute"]["affinity"] == "new"
        f2 = flow(body={"input": "x"}, headers=[("session-id", "offline")])
        assert p1.route.request(f2) is None  # a local hit: Redis not asked
        assert f2.metadata["stickyroute"]["account"] == f.metadata["stickyroute"]["account"]
        await p1.state.store.close(Local(p1.state.pins), 1.0)
    run(go())
    c1.__exit__(None, None, None)


def test_saved_values_hold_no_credentials(tmp_path, redis_server):
    (p1, c1), _ = two_proxies(tmp_path, redis_server)

    async def go():
        f = flow(body={"model": "gpt-fake", "input": "x"}, headers=[("session-id", "c")])
        await p1.route.request(f)
        respond(f, p1.follow, resp_body("resp_1", reasoning="rs_1"))  # a chain to share
        p1.state.health.on_change = lambda alias, event, now: p1.state.store.save_health(
            alias, p1.state.health.shared_state(alias, event, now))  # as persist.py wires it
        p1.state.health.disable("ob", "by hand", 1000.0)
        p1.state.store.changed(p1.state.pins.get(next(iter(p1.state.pins)).session, 1000.0), "hit")
        await p1.state.store.flush(Local(p1.state.pins), 1000.0)
        r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        read = {"string": r.get, "hash": r.hgetall, "set": r.smembers,
                "zset": lambda k: r.zrange(k, 0, -1, withscores=True)}
        saved = {k: (kind, await read[kind](k))
                 for k in await r.keys("*") for kind in [await r.type(k)]}
        # pins, session counts, the chain and the health change: every kind of value is there
        assert {kind for kind, _ in saved.values()} == {"string", "zset", "hash"}
        assert any(k.startswith("t:chain:") for k in saved), saved
        dump = json.dumps(saved)  # key names and values
        secrets = p1.state.accounts.secrets()
        assert secrets and not [s for s in secrets if s in dump], dump
        await r.aclose()
        await p1.state.store.close(Local(p1.state.pins), 1.0)
    run(go())
    c1.__exit__(None, None, None)
