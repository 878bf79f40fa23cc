"""Issue 14 through a real mitmdump with the default strategy (headroom): account A reported at
95% of its 5-hour window (Codex headers on OpenAI answers, 0.95 unified 5h utilization on
Anthropic ones) takes no new conversation; conversations already pinned to it keep it while their
cache is warm, move once it is cold (OpenAI: sticky_openai_cache_ttl set short; Anthropic's
5-minute lifetime is the unit tests'), and move when A is limited; a hard pin on a limited A fails
with an error naming the reset time; /api/accounts shows A's windows."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx2
import pytest

from devtools.harness import (
    REDIRECT_ADDON,
    STICKY_ADDON,
    find_free_port,
    make_fake,
    raw_client,
    redirect_options,
    write_accounts,
)
from fakeapi import FakeUpstream, UsagePlan

pytestmark = pytest.mark.e2e

SYSTEM = "You are a careful coding agent. " * 200  # cached: long enough, and a prefix to place
TTL = 6  # sticky_openai_cache_ttl, seconds: short so a pin goes cold within the test
TOKEN = "windows-admin-token"


@pytest.fixture
def fake() -> Any:
    # every account reports both windows, at 0% and not growing, until a test says otherwise
    with make_fake(usage=UsagePlan(windows=(300, 10080), steps=(0.0, 0.0))) as f:
        yield f


@pytest.fixture
def proxy(mitmdump_factory: Any, fake: FakeUpstream, tmp_path: Any) -> Any:
    admin = find_free_port()
    p = mitmdump_factory([STICKY_ADDON, REDIRECT_ADDON], {
        "sticky_accounts": str(write_accounts(tmp_path / "accounts.yaml")),
        "sticky_openai_cache_ttl": TTL, "sticky_admin": f"127.0.0.1:{admin}",
        "sticky_admin_token": TOKEN, **redirect_options(fake)})
    p.admin = f"http://127.0.0.1:{admin}"
    return p


class Conversations:
    """Turns of named conversations through the proxy; which account the fake saw, and when."""

    def __init__(self, proxy: Any, fake: FakeUpstream, provider: str) -> None:
        self.client = raw_client(proxy)
        self.fake, self.provider = fake, provider
        self.last: dict[str, float] = {}  # session -> monotonic time of its last turn
        self.response: dict[str, str] = {}  # session -> its last response id

    def turn(self, session: str, chain: bool = False) -> httpx2.Response:
        system = f"{SYSTEM} Conversation {session}."  # its own prefix: placed by load
        if self.provider == "openai":
            body: dict[str, Any] = {"model": "gpt-fake", "instructions": system,
                                    "input": f"next step of {session}"}
            if chain:
                body["previous_response_id"] = self.response[session]
            r = self.client.post("https://api.openai.com/v1/responses", json=body,
                                 headers={"authorization": "Bearer sk-client",
                                          "session-id": session})
        else:
            r = self.client.post(
                "https://api.anthropic.com/v1/messages",
                headers={"x-api-key": "sk-client", "anthropic-version": "2023-06-01",
                         "x-claude-code-session-id": session},
                json={"model": "claude-fake", "max_tokens": 5,
                      "system": [{"type": "text", "text": system,
                                  "cache_control": {"type": "ephemeral"}}],
                      "messages": [{"role": "user", "content": f"next step of {session}"}]})
        self.last[session] = time.monotonic()
        if r.status_code == 200 and self.provider == "openai":
            self.response[session] = r.json()["id"]
        return r

    def served(self, session: str, chain: bool = False) -> list[tuple[str, int]]:
        """One turn; (account, status) of every upstream request it took (retries too)."""
        self.fake.reset_log()
        r = self.turn(session, chain)
        assert r.status_code == 200, r.text
        return [(e["account"], e["status"]) for e in self.fake.requests()]

    def account(self, session: str) -> str:
        tries = self.served(session)
        assert len(tries) == 1, tries
        return tries[0][0]

    def idle_past(self, session: str, seconds: float) -> None:
        time.sleep(max(0.0, self.last[session] + seconds - time.monotonic()))


def windows_of(proxy: Any, alias: str) -> dict[str, Any]:
    with httpx2.Client(base_url=proxy.admin, trust_env=False, timeout=10,
                       headers={"authorization": f"Bearer {TOKEN}"}) as admin:
        return dict(admin.get(f"/api/accounts/{alias}").json())


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_draining_account_takes_no_new_conversation_and_its_pins_stay(
        proxy: Any, fake: FakeUpstream, provider: str) -> None:
    a = f"{provider}-a"
    talk = Conversations(proxy, fake, provider)
    on: dict[str, list[str]] = {}
    for i in range(9):  # three accounts at 0%: three conversations each
        on.setdefault(talk.account(f"c{i}"), []).append(f"c{i}")
    assert sorted(len(v) for v in on.values()) == [3, 3, 3], on
    x, y, hard = on[a]

    fake.set_usage(a, 300, used_percent=95, resets_in=3600)
    assert talk.account(x) == a  # learns A's 95% from this answer; the pin keeps its account
    assert talk.account(y) == a
    assert proxy.wait_for_output(rf"account {a} is draining: 95% of its 300-minute window "
                                 r"used; new conversations go elsewhere")
    seen = windows_of(proxy, a)
    assert seen["draining"] and seen["usage_state"] == "draining"
    assert [(w["minutes"], w["used_percent"], w["status"]) for w in seen["windows"]
            if w["minutes"] >= 60] == [(300, 95, "draining"), (10080, 0, "ok")]  # + API's 1m

    new = [talk.account(f"n{i}") for i in range(6)]
    assert a not in new and len(set(new)) == 2, new

    if provider == "openai":  # cold: its cache is worth nothing on a draining account
        talk.idle_past(y, TTL - 2)
        assert talk.account(y) == a  # still warm
        talk.idle_past(x, TTL + 0.5)
        moved = talk.served(x)
        assert len(moved) == 1 and moved[0][0] != a, moved
        assert proxy.wait_for_output(rf"session {x} .*\| moved from {a}")

    # limited: a warm pin's turn is refused by A and retried elsewhere; A cools until the reset
    fake.set_usage(a, 300, used_percent=100)
    tries = talk.served(y)
    assert tries[0] == (a, 429) and tries[-1][0] != a and tries[-1][1] == 200, tries
    cooling = proxy.wait_for_output(rf"account {a} healthy -> cooling for (\d+) s: "
                                    r"(usage limit reached|quota exhausted)")
    assert cooling and 3500 <= int(cooling.group(1)) <= 3600, proxy.output()[-3000:]
    assert windows_of(proxy, a)["usage_state"] == "limited"

    if provider == "openai":  # a hard pin cannot move: a clear error naming the reset
        fake.reset_log()
        r = talk.turn(hard, chain=True)
        assert r.status_code == 429 and not fake.requests()
        message = r.json()["error"]["message"]
        assert re.search(rf"{a} cooling \(.*\) until \d{{4}}-\d\d-\d\d \d\d:\d\d UTC; "
                         r"retry in \d+ s", message), message
        assert 3500 <= int(r.headers["retry-after"]) <= 3600
