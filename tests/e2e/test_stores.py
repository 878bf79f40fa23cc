"""Issue 5 end to end: pins survive a mitmdump restart (file store) and are shared by two
mitmdump processes through a real redis-server, also across a Redis outage."""

from __future__ import annotations

import concurrent.futures
import json
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import redis

from devtools.harness import (
    OPENAI_KEYS,
    REDIRECT_ADDON,
    STICKY_ADDON,
    Mitmdump,
    openai_client,
    redirect_options,
    write_accounts,
)
from fakeapi import FakeUpstream
from tests.e2e.helpers import MitmdumpFactory
from tests.e2e.redis_server import RedisServer


def start(factory: MitmdumpFactory, fake: FakeUpstream, tmp: Path, confdir: Path,
          **options: Any) -> Mitmdump:
    accounts = tmp / "accounts.yaml"
    if not accounts.exists():
        write_accounts(accounts)
    return factory([STICKY_ADDON, REDIRECT_ADDON],
                   {"sticky_accounts": str(accounts), **redirect_options(fake), **options},
                   confdir=confdir)


def turn(proxy: Mitmdump, session: str, text: str, previous: str | None = None) -> Any:
    kw: dict[str, Any] = {"extra_headers": {"session_id": session}}
    if previous:
        kw["previous_response_id"] = previous
    with openai_client(proxy) as client:
        return client.responses.create(model="gpt-5", input=text, **kw)


def served_by(fake: FakeUpstream) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for e in fake.requests():
        assert e["status"] == 200, e
        out[e["body"]["prompt_cache_key"]].append(e["account"])
    return out


def test_pins_survive_restarts(fake_upstream: FakeUpstream, mitmdump_factory: MitmdumpFactory,
                               tmp_path: Path) -> None:
    confdir = tmp_path / "conf"
    last: dict[str, str] = {}
    for round_ in range(3):  # three processes, one after another, same confdir
        proxy = start(mitmdump_factory, fake_upstream, tmp_path, confdir)
        if round_:
            assert proxy.wait_for_output(r"restored 20 pins")
        for conv in range(20):
            # every later turn chains on the previous response, which only its account knows
            r = turn(proxy, f"restart-{conv}", f"conv {conv} turn {round_}", last.get(str(conv)))
            last[str(conv)] = r.id
        assert "Traceback" not in proxy.output()
        proxy.stop()
    state = confdir / "stickyroute-state.json"
    assert oct(os.stat(state).st_mode & 0o777) == "0o600"
    by_conv = served_by(fake_upstream)
    assert len(by_conv) == 20 and all(len(v) == 3 for v in by_conv.values())
    assert all(len(set(v)) == 1 for v in by_conv.values()), by_conv
    assert len({v[0] for v in by_conv.values()}) == 3  # spread over all accounts
    assert not any(k in state.read_text() for k in OPENAI_KEYS)


def test_chains_survive_a_restart(fake_upstream: FakeUpstream,
                                  mitmdump_factory: MitmdumpFactory, tmp_path: Path) -> None:
    """No session header, no prompt_cache_key: only previous_response_id ties the turns. The
    state file is one the options name (a folder the store creates)."""
    confdir, state = tmp_path / "conf", tmp_path / "sticky" / "state.json"
    last: dict[int, str] = {}
    for round_ in range(2):
        # a different strategy after the restart: only the saved chains can route right
        proxy = start(mitmdump_factory, fake_upstream, tmp_path, confdir,
                      sticky_inject_cache_key=False, sticky_store=str(state),
                      sticky_strategy=("round-robin", "fill-first")[round_])
        with openai_client(proxy) as client:
            for conv in range(6):
                kw = {"previous_response_id": last[conv]} if conv in last else {}
                last[conv] = client.responses.create(model="gpt-5", input=f"c{conv} r{round_}",
                                                     **kw).id
        proxy.stop()
    entries = fake_upstream.requests()
    assert len(entries) == 12 and all(e["status"] == 200 for e in entries), entries
    assert not any(e["error_code"] for e in entries)
    assert state.exists() and not (confdir / "stickyroute-state.json").exists()


def good_file() -> str:
    return json.dumps({"format": "stickyroute-state", "version": 1, "saved": 1.0,
                       "pin_fields": [], "sections": {}, "pins": []})


@pytest.mark.parametrize("kind, content", [
    ("corrupt", "\x00\x01 not json {{{"),
    ("empty", ""),
    ("truncated", good_file()[:40]),
    ("wrong-version", good_file().replace('"version": 1', '"version": 7')),
])
def test_bad_state_file_starts_empty_and_routes(fake_upstream: FakeUpstream,
                                                mitmdump_factory: MitmdumpFactory,
                                                tmp_path: Path, kind: str, content: str) -> None:
    confdir = tmp_path / "conf"
    confdir.mkdir()
    (confdir / "stickyroute-state.json").write_text(content)
    proxy = start(mitmdump_factory, fake_upstream, tmp_path, confdir)
    assert proxy.wait_for_output(r"is unusable \(.+\); moved it to .+\.corrupt-\d+")
    turn(proxy, f"after-{kind}", "hello")
    turn(proxy, f"after-{kind}", "again")
    assert [len(set(v)) for v in served_by(fake_upstream).values()] == [1]
    assert [p for p in os.listdir(confdir) if ".corrupt-" in p]


# ---- two proxies, one Redis ----

@pytest.fixture
def redis_server():
    with RedisServer() as server:
        yield server


def two(factory: MitmdumpFactory, fake: FakeUpstream, tmp: Path, server: RedisServer,
        **options: Any) -> tuple[Mitmdump, Mitmdump]:
    return tuple(start(factory, fake, tmp, tmp / f"conf{i}", sticky_store=server.url,
                       sticky_strategy=strategy, **options)  # type: ignore[return-value]
                 for i, strategy in enumerate(("round-robin", "fill-first")))


def test_a_chain_started_on_one_proxy_continues_on_the_other(
        fake_upstream: FakeUpstream, mitmdump_factory: MitmdumpFactory, tmp_path: Path,
        redis_server: RedisServer) -> None:
    """No session header, no prompt_cache_key: only previous_response_id ties the turns, and
    each turn goes to the other proxy, which never saw the response it continues."""
    a, b = two(mitmdump_factory, fake_upstream, tmp_path, redis_server,
               sticky_inject_cache_key=False)
    last: dict[int, str] = {}
    for t in range(3):
        proxy = (a, b)[t % 2]
        with openai_client(proxy) as client:
            for conv in range(6):
                kw = {"previous_response_id": last[conv]} if conv in last else {}
                last[conv] = client.responses.create(model="gpt-5", input=f"c{conv} t{t}",
                                                     **kw).id
    entries = fake_upstream.requests()
    assert len(entries) == 18 and not any(e["error_code"] for e in entries), entries
    assert all(e["status"] == 200 for e in entries)
    by_conv: dict[int, set[str]] = defaultdict(set)
    for i, e in enumerate(entries):
        by_conv[i % 6].add(e["account"])
    assert all(len(v) == 1 for v in by_conv.values()), by_conv
    assert len(set().union(*by_conv.values())) > 1  # a's round-robin spread them: b had to ask
    assert "Traceback" not in a.output() + b.output()


def test_two_proxies_share_pins(fake_upstream: FakeUpstream, mitmdump_factory: MitmdumpFactory,
                                tmp_path: Path, redis_server: RedisServer) -> None:
    # This test is about agreement, not about the timeout: on a starved 2-CPU machine a burst
    # of 40 TLS handshakes can delay Redis's answer past the 100 ms default, and a request that
    # stops waiting routes from memory by design (the outage test below covers that path).
    a, b = two(mitmdump_factory, fake_upstream, tmp_path, redis_server, sticky_store_timeout=500)
    prev: dict[int, str] = {}
    for t in range(4):  # turns alternate between the proxies, chained on the last response
        for conv in range(10):
            r = turn((a, b)[(t + conv) % 2], f"alt-{conv}", f"conv {conv} turn {t}", prev.get(conv))
            prev[conv] = r.id
    by_conv = served_by(fake_upstream)
    assert len(by_conv) == 10 and all(len(set(v)) == 1 for v in by_conv.values()), by_conv
    assert len({v[0] for v in by_conv.values()}) > 1  # a round-robin proxy spread them
    fake_upstream.reset_log()

    def first(args: tuple[Mitmdump, str]) -> str:
        return turn(args[0], args[1], "first words").id

    jobs = [(p, f"together-{i}") for i in range(10) for p in (a, b, a, b)]
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        list(pool.map(first, jobs))
    by_conv = served_by(fake_upstream)
    assert len(by_conv) == 10 and all(len(v) == 4 for v in by_conv.values())
    assert all(len(set(v)) == 1 for v in by_conv.values()), by_conv
    keys = redis.Redis.from_url(redis_server.url).keys("stickyroute:pin:*")
    assert len(keys) == 20


def test_redis_outage_keeps_requests_flowing_and_reconciles(
        fake_upstream: FakeUpstream, mitmdump_factory: MitmdumpFactory, tmp_path: Path,
        redis_server: RedisServer) -> None:
    a, b = two(mitmdump_factory, fake_upstream, tmp_path, redis_server)
    for conv in range(6):
        turn(a, f"early-{conv}", "before the outage")
    failures, done = 0, 0

    def one(args: tuple[Mitmdump, str, int]) -> bool:
        try:
            turn(args[0], args[1], f"during {args[2]}")
            return True
        except Exception:
            return False

    jobs = [((a, b)[i % 2], f"early-{i % 6}" if i % 3 else f"outage-{i}", i) for i in range(60)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(one, j) for j in jobs[:20]]
        redis_server.kill()  # mid-run
        futures += [pool.submit(one, j) for j in jobs[20:]]
        for f in futures:
            done += 1
            failures += not f.result()
    assert (done, failures) == (60, 0)
    assert a.wait_for_output("unavailable") and b.wait_for_output("unavailable")
    # during the outage both proxies pin the same new conversations, each on its own pick
    for conv in range(5):
        turn(a, f"split-{conv}", "a first")
        time.sleep(0.01)
        turn(b, f"split-{conv}", "b second")
    redis_server.start()  # same port, empty: nothing survived
    assert a.wait_for_output(r"redis .* is back", timeout=20)
    assert b.wait_for_output(r"redis .* is back", timeout=20)
    time.sleep(1.5)  # one more tick each: both have re-synced and adopted the winners
    r = redis.Redis.from_url(redis_server.url, decode_responses=True)
    assert r.get("stickyroute:pin:openai/" + "x") is None  # sanity: keys carry the provider
    pinned = r.keys("stickyroute:pin:*")
    assert sum("outage-" in k for k in pinned) == len([j for j in jobs if "outage" in j[1]])
    assert sum("split-" in k for k in pinned) == 5
    fake_upstream.reset_log()
    for conv in range(5):  # from now on both proxies agree
        turn(a, f"split-{conv}", "after a")
        turn(b, f"split-{conv}", "after b")
    by_conv = served_by(fake_upstream)
    assert all(len(set(v)) == 1 for v in by_conv.values()), by_conv
    assert "Traceback" not in a.output() + b.output()
