"""Issue 17 end to end: stopping mitmdump (SIGINT or SIGTERM) while requests are in flight.

One scenario, run with the file store (SIGINT and SIGTERM) and with Redis (SIGINT):
- held:   turns stalled at the fake upstream when the signal comes (never answered before exit);
- stream: chain-only conversations (previous_response_id, no session header) whose first answer
          is still streaming when the signal comes;
- keep-alive: clients with an open connection send their next turn while the proxy stops
          (one of them meets a 429, which must not start a failover retry);
- late:   new conversations that start while the proxy stops.
devtools/slow_stop_addon.py keeps the stop open until the test has done all that (mitmproxy
serves traffic while addons' `done` hooks run; that addon makes the window deterministic).

Then the proxy restarts on the same store. What must hold:
- the stop is no outcome of any account: no cooldown, no failover retry, no "moved"; every cut
  request is logged as stopped by shutdown; nothing unhealthy is saved or restored;
- every conversation the fake served has its pin in the saved state, on that account, and
  every answer a client received has its chain link saved;
- after the restart, every conversation's next turn lands on the account that served it.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import redis

from devtools.harness import (
    REDIRECT_ADDON,
    REPO,
    STICKY_ADDON,
    Mitmdump,
    openai_client,
    raw_client,
    redirect_options,
    write_accounts,
)
from fakeapi import FakeUpstream
from tests.e2e.helpers import MitmdumpFactory
from tests.e2e.redis_server import RedisServer

SLOW_STOP_ADDON = REPO / "devtools" / "slow_stop_addon.py"
PROBE_ADDON = REPO / "devtools" / "sticky_probe.py"
PREFIX = "stickyroute:"
HELD = ["held-0", "held-1", "held-2", "held-new"]  # held-new: its first turn is the held one
STREAMS = ["stream-0", "stream-1"]
KEEP_ALIVE = ["ka-0", "ka-1", "ka-2"]  # ka-0 meets a 429 while the proxy stops
LATE = ["late-0", "late-1", "late-2"]
WARM = ["warm-0", "warm-1"]
BREAKS = ("previous_response_not_found", "invalid_encrypted_content")


class Conversation:
    """One conversation's client-side view: what it sent, the last answer id it received."""

    def __init__(self, name: str, header: bool = True, chain: bool = True) -> None:
        self.name = name
        self.header = header  # False: only previous_response_id ties its turns together
        self.chain = chain  # False: Codex style, no previous_response_id (a soft pin)
        self.turns = 0
        self.previous: str | None = None
        self.received: list[str] = []  # ids of every answer this client got
        self.errors: list[str] = []

    def call(self, client: Any, **extra: Any) -> Any:
        headers = {"x-test-conv": self.name, **extra.pop("headers", {})}
        if self.header:
            headers["session_id"] = self.name
        kw: dict[str, Any] = {"extra_headers": headers}
        if self.previous and self.chain:
            kw["previous_response_id"] = self.previous
        text = f"{self.name} turn {self.turns}"
        try:
            if extra.get("stream"):
                final = None
                with client.responses.create(model="gpt-5", input=text, stream=True,
                                             **kw) as events:
                    for event in events:
                        if event.type == "response.completed":
                            final = event.response
                if final is None:
                    raise RuntimeError("stream ended without response.completed")
                answer = final
            else:
                answer = client.responses.create(model="gpt-5", input=text, **kw)
        except Exception as e:  # noqa: BLE001 - a stop may cut or refuse the turn
            self.errors.append(f"turn {self.turns}: {type(e).__name__}: {e}")
            return None
        self.turns += 1
        self.previous = answer.id
        self.received.append(answer.id)
        return answer

    def turn(self, proxy: Mitmdump, **extra: Any) -> Any:
        with openai_client(proxy, timeout=30.0) as client:
            return self.call(client, **extra)


def start(factory: MitmdumpFactory, fake: FakeUpstream, tmp: Path, store: str, name: str,
          *scripts: Path) -> Mitmdump:
    accounts = tmp / "accounts.yaml"
    if not accounts.exists():
        write_accounts(accounts)
    options = {"sticky_accounts": str(accounts), "sticky_store": store,
               **redirect_options(fake)}
    if SLOW_STOP_ADDON in scripts:
        options["slow_stop_file"] = str(tmp / f"{name}.release")
    return factory([STICKY_ADDON, REDIRECT_ADDON, *scripts], options, confdir=tmp / "conf")


def wait_until(what: str, check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def served(fake: FakeUpstream) -> dict[str, list[str]]:
    """conversation -> accounts that answered it 200, in order (held turns count: the fake
    logs a turn before it stalls it, so those reached the provider)."""
    out: dict[str, list[str]] = defaultdict(list)
    for e in fake.requests():
        conv = (e.get("headers") or {}).get("x-test-conv")
        if conv and e.get("status") == 200 and e.get("account"):
            out[conv].append(e["account"])
    return out


def saved_state(store: str, state_file: Path) -> tuple[dict[str, str], dict[str, str], Any]:
    """(session id -> alias, response id -> alias, unhealthy accounts) as the store keeps them."""
    if store.startswith("redis://"):
        r = redis.Redis.from_url(store, decode_responses=True)
        pins = {k.removeprefix(PREFIX + "pin:").rsplit("/", 1)[-1]: v.rpartition("|")[0]
                for k in r.scan_iter(PREFIX + "pin:*") if (v := r.get(k)) is not None}
        chains = {k.rsplit("/", 1)[-1]: json.loads(v)[1]
                  for k in r.scan_iter(PREFIX + "chain:*") if (v := r.get(k)) is not None}
        health = {a: json.loads(v) for a, v in r.hgetall(PREFIX + "health").items()}
        r.close()
        return pins, chains, health
    doc = json.loads(state_file.read_text())
    pins = {row[0].rsplit("/", 1)[-1]: row[1] for row in doc["pins"]}
    chains = {row[0].rsplit("/", 1)[-1]: row[2] for row in doc["sections"].get("chains", [])}
    return pins, chains, doc["sections"].get("health", {})


def probe(proxy: Mitmdump) -> dict[str, Any]:
    with raw_client(proxy) as client:
        return client.get("http://sticky.probe/state").json()  # type: ignore[no-any-return]


@pytest.fixture
def redis_url() -> Any:
    with RedisServer() as server:
        yield server.url


@pytest.mark.parametrize("how, store_kind", [
    (signal.SIGINT, "file"),
    (signal.SIGTERM, "file"),
    (signal.SIGINT, "redis"),
], ids=["sigint-file", "sigterm-file", "sigint-redis"])
def test_a_stop_is_no_account_failure_and_loses_no_pin(
        fake_upstream: FakeUpstream, mitmdump_factory: MitmdumpFactory, tmp_path: Path,
        request: pytest.FixtureRequest, how: signal.Signals, store_kind: str) -> None:
    fake = fake_upstream
    state_file = tmp_path / "pins.json"
    store = request.getfixturevalue("redis_url") if store_kind == "redis" else str(state_file)
    convs = {n: Conversation(n) for n in [*WARM, *HELD, *KEEP_ALIVE, *LATE]}
    convs.update({n: Conversation(n, header=False) for n in STREAMS})
    convs["ka-0"] = Conversation("ka-0", chain=False)  # soft: a 429 would send it elsewhere
    proxy = start(mitmdump_factory, fake, tmp_path, store, "first", SLOW_STOP_ADDON)

    # ---- before the stop: pinned conversations, open keep-alive connections ----------------
    for name in [*WARM, *HELD[:3]]:
        assert convs[name].turn(proxy) is not None, convs[name].errors
    keep_alive = {name: openai_client(proxy, timeout=30.0) for name in KEEP_ALIVE}
    for name, client in keep_alive.items():
        assert convs[name].call(client) is not None, convs[name].errors

    # ---- in flight when the signal comes -------------------------------------------------
    fake.add_fault(kind="stall", count=len(HELD))  # answered only after the proxy is gone
    threads = [threading.Thread(target=convs[n].turn, args=(proxy,), daemon=True) for n in HELD]
    for t in threads:
        t.start()
    wait_until("the held turns to reach the fake",
               lambda: len(fake.requests(fault="stall")) == len(HELD))
    streams = [threading.Thread(target=convs[n].turn, args=(proxy,), daemon=True,
                                kwargs={"stream": True,
                                        "headers": {"x-fake-chunk-delay": "0.2"}})
               for n in STREAMS]
    for t in streams:
        t.start()
    wait_until("the streams to start", lambda: all(served(fake).get(n) for n in STREAMS))

    # ---- the stop -----------------------------------------------------------------------
    assert proxy.proc is not None
    proxy.proc.send_signal(how)
    assert proxy.wait_for_output(r"slow-stop: the proxy is stopping", timeout=10)
    ka0_account = served(fake)["ka-0"][0]
    fake.add_fault(account=ka0_account, kind="429", count=1, retry_after=1)
    for name, client in keep_alive.items():  # next turns on the open connections
        convs[name].call(client)
        client.close()
    for name in LATE:  # new conversations, new connections
        convs[name].turn(proxy)
    for t in streams:
        t.join(30)
    (tmp_path / "first.release").write_text("release")
    proxy.proc.wait(60)
    first_output = proxy.stop()
    fake.clear_faults()
    for t in threads:
        t.join(30)

    problems: list[str] = []
    # ---- the stop was no outcome of any account ------------------------------------------
    for marker in ("connection error", "retried ", "| moved from "):
        lines = [line for line in first_output.splitlines() if marker in line]
        if lines:
            problems.append(f"the stop counted against accounts ({marker!r}): {lines}")
    stopped = first_output.count("stopped by shutdown")
    if stopped < len(HELD):
        problems.append(f"{stopped} requests logged as stopped by shutdown, expected at least "
                        f"{len(HELD)} (the held ones)")

    # ---- every pin and chain link a request carried upstream was saved -------------------
    pins, chains, health = saved_state(store, state_file)
    by_conv = served(fake)
    for name, conv in convs.items():
        if conv.header and by_conv.get(name) and pins.get(name) != by_conv[name][-1]:
            problems.append(f"{name}: served by {by_conv[name]} before the restart, saved pin "
                            f"{pins.get(name)}")
        for rid in conv.received:
            if rid not in chains:
                problems.append(f"{name}: the client received {rid}, its chain link was not "
                                "saved")
    unhealthy = {a: h for a, h in health.items()
                 if not isinstance(h, dict) or h.get("state") != "healthy"}
    if unhealthy:
        problems.append(f"saved health not healthy after the stop: {unhealthy}")

    # ---- the restart: the same accounts, nothing cooling ---------------------------------
    proxy = start(mitmdump_factory, fake, tmp_path, store, "second", PROBE_ADDON)
    cooling = {a: s["health"] for a, s in probe(proxy)["accounts"].items()
               if s["health"]["state"] != "healthy"}
    if cooling:
        problems.append(f"accounts not healthy after the restart: {cooling}")
    before = {n: list(v) for n, v in served(fake).items()}
    for name, conv in convs.items():
        if conv.turn(proxy) is None:
            problems.append(f"{name}: next turn after the restart failed: {conv.errors[-1]}")
    for name, accounts in served(fake).items():
        if len(set(accounts)) > 1:
            problems.append(f"{name}: served by {accounts} (before the restart: "
                            f"{before.get(name)})")
    breaks = [e for e in fake.requests() if e.get("error_code") in BREAKS]
    if breaks:
        problems.append(f"affinity breaks: {[(e['headers'].get('x-test-conv'), e['error_code'])
                                             for e in breaks]}")
    fake.release_stalls()
    assert not problems, "\n".join(problems) + "\n---- first mitmdump ----\n" + first_output
