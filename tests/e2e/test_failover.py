"""Failover end to end: real SDK clients -> real mitmdump (stickyroute) -> fake upstream with
injected faults. Each test prints which account served each request and what the client saw.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from devtools.harness import (
    OPENAI_KEYS,
    REDIRECT_ADDON,
    REPO,
    STICKY_ADDON,
    Mitmdump,
    anthropic_client,
    async_openai_client,
    make_fake,
    openai_client,
    raw_client,
    redirect_options,
)
from fakeapi import FakeUpstream
from tests.e2e.helpers import MitmdumpFactory

PROBE_ADDON = REPO / "devtools" / "sticky_probe.py"
ENC = "reasoning.encrypted_content"
FOUR = {**OPENAI_KEYS, "sk-test-openai-d": "openai-d", "sk-ant-test-a": "anthropic-a",
        "sk-ant-test-b": "anthropic-b"}


def accounts_yaml(path: Path, keys: dict[str, str]) -> Path:
    lines = ["accounts:"]
    for key, name in keys.items():
        provider = "anthropic" if name.startswith("anthropic") else "openai"
        lines.append(f"  - {{alias: {name}, provider: {provider}, api_key: {key}}}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def module_proxy(tmp_path_factory: pytest.TempPathFactory,
                 module_mitmdump_factory: MitmdumpFactory) -> Any:
    """One fake and one mitmdump for the module (starting mitmdump costs seconds)."""
    with make_fake(keys=FOUR) as fake:
        accounts = accounts_yaml(tmp_path_factory.mktemp("acc") / "accounts.yaml", FOUR)
        proxy = module_mitmdump_factory([STICKY_ADDON, PROBE_ADDON, REDIRECT_ADDON],
                                        {"sticky_accounts": str(accounts),
                                         **redirect_options(fake)})
        yield proxy, fake


@pytest.fixture
def env(module_proxy: tuple[Mitmdump, FakeUpstream]) -> tuple[Mitmdump, FakeUpstream]:
    """The shared proxy with no pins, every account healthy, and a fresh fake log."""
    proxy, fake = module_proxy
    fake.reset()
    with raw_client(proxy) as c:
        c.post("http://sticky.probe/reset")
    return proxy, fake


def probe(proxy: Mitmdump) -> dict[str, Any]:
    with raw_client(proxy) as c:
        return c.get("http://sticky.probe/state").json()  # type: ignore[no-any-return]


def wait_idle(proxy: Mitmdump, timeout: float = 10.0) -> dict[str, Any]:
    """Poll until no account has a request in flight (or the timeout; the caller asserts)."""
    deadline = time.monotonic() + timeout
    while True:
        state = probe(proxy)
        if all(a["inflight"] == 0 for a in state["accounts"].values()) or (
                time.monotonic() > deadline):
            return state
        time.sleep(0.05)


def served(fake: FakeUpstream) -> list[tuple[str | None, Any, Any, Any]]:
    return [(e["account"], e["session_headers"].get("session-id"), e["status"], e["fault"])
            for e in fake.requests() if e["api"] != "other"]


def test_rate_limited_account_never_shows(env: tuple[Mitmdump, FakeUpstream]) -> None:
    """One of 3 accounts answers 429 to its next 20 requests: 30 conversations x 3 turns
    (full history with encrypted reasoning, like Codex) see no error at all."""
    proxy, fake = env
    with raw_client(proxy) as c:
        c.post("http://sticky.probe/disable/openai-d")  # three OpenAI accounts
    fake.add_fault(account="openai-a", kind="429", count=20, retry_after=1)
    client = openai_client(proxy)
    errors: list[str] = []

    def conversation(i: int) -> None:
        history: list[Any] = []
        for turn in range(3):
            history.append({"role": "user", "content": f"conversation {i} turn {turn}"})
            try:
                r = client.responses.create(
                    model="gpt-fake", input=history, store=False, reasoning={"effort": "low"},
                    include=[ENC], extra_headers={"session-id": f"conv-{i}"})
            except openai.APIError as e:
                errors.append(f"conv-{i} turn {turn}: {e}")
                return
            history += [item.model_dump(exclude_none=True) for item in r.output]

    with ThreadPoolExecutor(10) as pool:
        list(pool.map(conversation, range(30)))
    log = served(fake)
    print("\n".join(map(str, log)))
    assert errors == []
    assert sum(1 for _, _, status, _ in log if status == 200) == 90
    faults = [e for e in log if e[3] == "429"]
    assert faults and all(account == "openai-a" for account, *_ in faults)
    # Every conversation that was moved stays on its new account afterwards (re-pinned).
    by_session: dict[str, list[str]] = defaultdict(list)
    for account, session, status, _ in log:
        if status == 200:
            by_session[session].append(account)
    assert len(by_session) == 30
    for accounts in by_session.values():
        assert len(accounts) == 3 and accounts[1] == accounts[2]
    assert "retried /v1/responses after openai-a: rate limited" in proxy.output()
    assert wait_idle(proxy)["kept_requests"] == 0


def test_burst_of_new_sessions_spreads_and_one_session_lands_once(
        env: tuple[Mitmdump, FakeUpstream]) -> None:
    proxy, fake = env  # four OpenAI accounts

    async def burst() -> None:
        client = async_openai_client(proxy)
        await asyncio.gather(*(client.responses.create(
            model="gpt-fake", input="hi", extra_headers={"session-id": f"burst-{i}"})
            for i in range(100)))
        await asyncio.gather(*(client.responses.create(
            model="gpt-fake", input="hi", extra_headers={"session-id": "one-session"})
            for _ in range(50)))

    asyncio.run(burst())
    log = served(fake)
    sessions = Counter(account for account, session, _, _ in log
                       if session and session.startswith("burst-"))
    print(sessions)
    assert sum(sessions.values()) == 100 and len(sessions) == 4
    assert max(sessions.values()) / min(sessions.values()) <= 1.5
    one = {account for account, session, _, _ in log if session == "one-session"}
    assert len(one) == 1


def test_inflight_returns_to_zero_after_client_disconnects(
        env: tuple[Mitmdump, FakeUpstream]) -> None:
    proxy, fake = env
    errors_before = {a: s["errors"] for a, s in probe(proxy)["accounts"].items()}
    body = {"model": "gpt-fake", "input": "tell me a long story", "stream": True}
    with raw_client(proxy) as c:
        for i in range(6):  # walk away after the first SSE event of a slow stream
            with c.stream("POST", "https://api.openai.com/v1/responses", json=body,
                          headers={"authorization": "Bearer sk-client", "session-id": f"d{i}",
                                   "x-fake-output-tokens": "200",
                                   "x-fake-chunk-delay": "0.05"}) as r:
                assert r.status_code == 200
                chunks = r.iter_raw()  # (a dropped generator would close the stream at once)
                next(chunks)
                if i == 0:  # counted while the answer is streaming
                    live = probe(proxy)
                    assert sum(a["inflight"] for a in live["accounts"].values()) == 1
        fake.add_fault(account=None, kind="stall", count=3)  # and time out while waiting
        for i in range(3):
            with pytest.raises(httpx2.TimeoutException):
                c.post("https://api.openai.com/v1/responses", json=body, timeout=0.5,
                       headers={"authorization": "Bearer sk-client", "session-id": f"s{i}"})
        fake.release_stalls()
        r = c.post("https://api.openai.com/v1/responses", json={**body, "stream": False},
                   headers={"authorization": "Bearer sk-client", "session-id": "after"})
        assert r.status_code == 200
    state = wait_idle(proxy)
    print(state)
    assert {a: s["inflight"] for a, s in state["accounts"].items()} == dict.fromkeys(
        FOUR.values(), 0)
    assert state["kept_requests"] == 0
    # A client walking away is not the account's fault.
    assert all(s["health"]["state"] == "healthy" and s["errors"] == errors_before[a]
               for a, s in state["accounts"].items())
    assert [e["completed"] for e in fake.requests()][:6] == [False] * 6  # really mid-stream


# kind, fault options, client sees an error?, state of the faulty account afterwards, reason part
SCENARIOS: list[tuple[str, dict[str, Any], bool, str, str]] = [
    ("429", {"retry_after": 30}, False, "cooling", "rate limited (429"),
    ("quota", {"retry_after": 600}, False, "cooling", "quota exhausted (429 insufficient_quota"),
    ("401", {}, False, "disabled", "credential rejected (401"),
    ("500", {}, False, "cooling", "upstream error (500"),
    ("529", {}, False, "cooling", "upstream error (529 overloaded_error"),
    ("drop", {}, True, "cooling", "connection error"),
    ("slow", {"delay": 0.5}, False, "healthy", ""),
]


def test_fault_matrix(env: tuple[Mitmdump, FakeUpstream]) -> None:
    """Every fault kind with a real SDK client: what the client saw, who served, the cooldown."""
    proxy, fake = env
    oai, ant = openai_client(proxy), anthropic_client(proxy)
    report = []
    history: dict[str, list[Any]] = defaultdict(list)

    def turn(kind: str, session: str) -> str:
        try:
            if kind == "529":
                ant.messages.create(model="claude-fake", max_tokens=20, messages=[
                    {"role": "user", "content": f"hi {session}"}],
                    extra_headers={"x-claude-code-session-id": session})
            else:  # like Codex: whole history, encrypted reasoning included, store=false
                h = history[session]
                h.append({"role": "user", "content": f"turn {len(h)}"})
                r = oai.responses.create(model="gpt-fake", input=h, store=False,
                                         reasoning={"effort": "low"}, include=[ENC],
                                         extra_headers={"session-id": session})
                h += [item.model_dump(exclude_none=True) for item in r.output]
            return "ok"
        except Exception as e:  # openai.APIError, anthropic.APIError
            return f"error {type(e).__name__}"

    for kind, options, client_error, state, reason in SCENARIOS:
        session = f"matrix-{kind}"
        assert turn(kind, session) == "ok"
        pinned = fake.requests()[-1]["account"]
        fake.reset_log()
        fake.add_fault(account=pinned, kind=kind, count=1, **options)
        saw = turn(kind, session)
        after = turn(kind, session)  # the next turn of the same conversation
        log = [(e["account"], e["status"], e["fault"]) for e in fake.requests()]
        health = probe(proxy)["accounts"][pinned]["health"]
        report.append(f"{kind:6} pinned={pinned:12} client={saw:24} upstream={log} "
                      f"then={after} health={health}")
        assert saw.startswith("error") == client_error, report[-1]
        if kind not in ("529", "slow"):  # moved with the first account's reasoning dropped
            assert f"session {session[-8:]}" in proxy.output() and re.search(
                rf"session {session[-8:]} .*moved from {pinned} .*dropped 1 encrypted",
                proxy.output()), report[-1]
        assert after == "ok", report[-1]
        assert health["state"] == state and reason in (health["reason"] or ""), report[-1]
        if kind != "slow":
            assert log[0][0] == pinned and all(a != pinned for a, *_ in log[1:]), report[-1]
            served_by = [a for a, status, _ in log if status == 200]
            assert len(set(served_by)) == 1, report[-1]  # re-pinned: both turns, one account
        proxy_state = probe(proxy)
        for alias in proxy_state["accounts"]:  # the operator puts everything back
            with raw_client(proxy) as c:
                c.post(f"http://sticky.probe/enable/{alias}")
    print("\n".join(report))
    state = wait_idle(proxy)

    assert all(a["inflight"] == 0 for a in state["accounts"].values())
    assert state["kept_requests"] == 0
    assert "sk-test" not in proxy.output()  # credentials never logged


def test_hard_pinned_turns_fail_clearly_and_never_move(env: tuple[Mitmdump, FakeUpstream]) -> None:
    """previous_response_id lives on one account: a 429 there is the client's to see (with
    Retry-After), and the next turn waits for that account instead of moving."""
    proxy, fake = env
    client = openai_client(proxy)
    r1 = client.responses.create(model="gpt-fake", input="a conversation kept server-side")
    home = fake.requests()[-1]["account"]
    fake.add_fault(account=home, kind="429", count=1, retry_after=30)
    with pytest.raises(openai.RateLimitError) as upstream:
        client.responses.create(model="gpt-fake", input="next", previous_response_id=r1.id)
    with pytest.raises(openai.RateLimitError) as ours:
        client.responses.create(model="gpt-fake", input="again", previous_response_id=r1.id)
    print(upstream.value, "|", ours.value)
    assert upstream.value.response.headers["retry-after"] == "30"
    assert 25 <= int(ours.value.response.headers["retry-after"]) <= 30
    assert f"lives on account '{home}'" in str(ours.value) and "cannot move" in str(ours.value)
    chained = [e for e in fake.requests() if e["previous_response_id"] == r1.id]
    assert [e["account"] for e in chained] == [home]  # the second turn never left the proxy
    assert not any(e["error_code"] == "previous_response_not_found" for e in fake.requests())
