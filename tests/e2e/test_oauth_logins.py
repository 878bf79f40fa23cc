"""Issue 13, done when: subscription logins through real mitmdump, with fake access tokens that
live a few seconds.

Codex-shaped conversations (chatgpt.com/backend-api/codex, encrypted reasoning carried every
turn) on `chatgpt` logins and Claude-Code-shaped ones (/v1/messages?beta=true, its session
header and betas) on `anthropic` logins keep going across several token expiries with 0
client-visible errors; two proxies on one Redis refresh each login once per expiry and the
fake counts 0 reused refresh tokens, also when one of them restarts mid-run; a revoked login
leaves its account revoked while the others serve, and a new login brings it back. The token
endpoints are the fake's, reached over loopback http (token_url); nothing a proxy wrote holds
a token.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mitmproxy import io as mitmio

from devtools.harness import (
    REDIRECT_ADDON,
    STICKY_ADDON,
    Mitmdump,
    find_free_port,
    make_fake,
    raw_client,
    redirect_options,
)
from fakeapi import FakeUpstream
from fakeapi.oauth import Issued, write_login_file
from tests.e2e.helpers import MitmdumpFactory
from tests.e2e.redis_server import RedisServer

TTL = 3.0  # seconds a fake access token lives
MARGIN = 1  # sticky_refresh_margin
LOGINS = {"cx1": "chatgpt", "cx2": "chatgpt", "cl1": "anthropic", "cl2": "anthropic"}
CODEX_URL = "https://chatgpt.com/backend-api/codex/responses"
CLAUDE_URL = "https://api.anthropic.com/v1/messages?beta=true"
CLIENT_BETA = "claude-code-20250219,interleaved-thinking-2025-05-14"
ADMIN_TOKEN = "admin-token-logins"


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with make_fake(access_ttl=TTL) as f:
        yield f


def create_logins(fake: FakeUpstream) -> dict[str, Issued]:
    with fake.lock:
        return {alias: fake.oauth.create(f"sub-{alias}", family, login=alias)
                for alias, family in LOGINS.items()}


def write_world(fake: FakeUpstream, folder: Path, issued: dict[str, Issued]) -> Path:
    """Login files as the CLIs write them, and the accounts file that uses them."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["accounts:"]
    for alias, tokens in issued.items():
        write_login_file(folder / f"{alias}.json", tokens)
        path = "/oauth/token" if LOGINS[alias] == "chatgpt" else "/v1/oauth/token"
        lines += [f"  - alias: {alias}", f"    provider: {LOGINS[alias]}",
                  f"    oauth_file: {alias}.json", f"    token_url: {fake.url}{path}"]
    accounts = folder / "accounts.yaml"
    accounts.write_text("\n".join(lines) + "\n")
    accounts.chmod(0o600)
    return accounts


def options(fake: FakeUpstream, accounts: Path, margin: int = MARGIN,
            **more: Any) -> dict[str, Any]:
    return {"sticky_accounts": str(accounts), "sticky_refresh_margin": margin,
            "sticky_store": "memory", **redirect_options(fake), **more}


# ---- the clients ------------------------------------------------------------------------------
def sse_events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines()
            if line.startswith("data: ") and line[6:].strip().startswith("{")]


class Conversation:
    """One Codex- or Claude-Code-shaped conversation, turn by turn, through a proxy."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind, self.name = kind, name
        self.history: list[dict[str, Any]] = []
        self.turns = 0

    def turn(self, client: httpx2.Client) -> int:
        self.turns += 1
        if self.kind == "codex":
            return self._codex(client)
        return self._claude(client)

    def _codex(self, client: httpx2.Client) -> int:
        said = {"type": "message", "role": "user",
                "content": [{"type": "input_text", "text": f"{self.name} turn {self.turns}"}]}
        body = {"model": "gpt-5-codex", "instructions": "You are Codex.", "store": False,
                "stream": True, "input": [*self.history, said], "prompt_cache_key": self.name,
                "include": ["reasoning.encrypted_content"], "reasoning": {"effort": "low"}}
        r = client.post(CODEX_URL, json=body, headers={
            "authorization": "Bearer client-placeholder", "chatgpt-account-id": "client-acct",
            "session-id": self.name, "thread-id": self.name, "originator": "codex_cli_rs"})
        if r.status_code == 200:
            done = [e for e in sse_events(r.text) if e.get("type") == "response.completed"]
            output = done[-1]["response"]["output"] if done else []
            self.history += [said, *output]  # encrypted reasoning included, as Codex does
        return r.status_code

    def _claude(self, client: httpx2.Client) -> int:
        said = {"role": "user", "content": f"{self.name} turn {self.turns}"}
        body = {"model": "claude-sonnet-4-5", "max_tokens": 40, "stream": True,
                "system": [{"type": "text", "text": "You are Claude Code."}],
                "messages": [*self.history, said],
                "metadata": {"user_id": json.dumps({"session_id": self.name})}}
        r = client.post(CLAUDE_URL, json=body, headers={
            "x-api-key": "client-placeholder", "anthropic-version": "2023-06-01",
            "anthropic-beta": CLIENT_BETA, "x-claude-code-session-id": self.name})
        if r.status_code == 200:
            self.history += [said, {"role": "assistant", "content": "ok"}]
        return r.status_code


class Traffic:
    """Conversations on worker threads until stopped; every status the clients saw."""

    def __init__(self, pick: Callable[[int], Mitmdump], workers: int = 4,
                 pause: float = 0.1) -> None:
        self.pick, self.workers, self.pause = pick, workers, pause
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._work, args=(n,), daemon=True)
                        for n in range(workers)]

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def assert_no_client_errors(self) -> None:
        assert self.statuses and set(self.statuses) == {200}, (
            dict(self.statuses), self.failures[:10])

    def _work(self, n: int) -> None:
        kind = ("codex", "claude")[n % 2]
        conv, turn = Conversation(kind, f"{kind}-{n}-0"), 0
        while not self.stop.is_set():
            proxy = self.pick(turn)
            turn += 1
            try:
                with raw_client(proxy, timeout=60) as client:
                    status = conv.turn(client)
            except Exception as e:  # a connection error while a proxy restarts counts too
                status = 0
                with self.lock:
                    self.failures.append(f"{conv.name}: {type(e).__name__}: {e}")
            with self.lock:
                self.statuses[status] += 1
                if status != 200:
                    self.failures.append(f"{conv.name} turn {conv.turns}: {status}")
            if conv.turns >= 6:  # a new conversation now and then
                conv = Conversation(kind, f"{kind}-{n}-{turn}")
            time.sleep(self.pause)


def bound(elapsed: float, margin: int = MARGIN) -> int:
    """Most refreshes one login may see in `elapsed` seconds: one per token life less the margin
    (the margin is at most half of it), plus the first, and one the early expiry forced."""
    return int(elapsed / (TTL - margin)) + 3


def refresh_log(fake: FakeUpstream) -> list[dict[str, Any]]:
    return fake.requests(api="oauth_token")


def assert_single_use(fake: FakeUpstream) -> None:
    stats = fake.oauth.stats()
    assert all(s["reused"] == 0 for s in stats.values()), stats
    sent = [e["credential"] for e in refresh_log(fake)]
    assert len(sent) == len(set(sent)), "a refresh token was sent twice"


# ---- one proxy: conversations across several expiries -----------------------------------------
@pytest.mark.parametrize("margin", [MARGIN, 0], ids=["refreshed-ahead", "refreshed-at-expiry"])
def test_conversations_keep_going_across_token_expiries(
        fake: FakeUpstream, mitmdump_factory: MitmdumpFactory, tmp_path: Path,
        margin: int) -> None:
    """margin 0: tokens run out while requests come in; those wait for the one refresh."""
    accounts = write_world(fake, tmp_path / "logins", create_logins(fake))
    flows_file = tmp_path / "flows.mitm"
    proxy = mitmdump_factory([STICKY_ADDON, REDIRECT_ADDON], options(
        fake, accounts, margin, save_stream_file=str(flows_file), flow_detail=3))
    start = time.monotonic()
    with Traffic(lambda _: proxy) as traffic:
        time.sleep(4.5)
        with fake.lock:  # the provider ends every access token early: 401s on the way
            for alias in LOGINS:
                fake.oauth.expire(alias)
        time.sleep(5.5)
    elapsed = time.monotonic() - start
    out = proxy.stop()

    traffic.assert_no_client_errors()
    traffic_ok = fake.requests(api="responses") + fake.requests(api="messages")
    stats = fake.oauth.stats()
    assert all(2 <= s["refreshes"] <= bound(elapsed, margin)
               for s in stats.values()), (stats, elapsed)
    assert_single_use(fake)
    assert "Traceback" not in out and "could not route" not in out
    refused = [e for e in traffic_ok if e["status"] == 401]
    assert refused, "the early expiry should have reached the provider (never a client)"
    calls = [e for e in traffic_ok if e["status"] == 200]
    claude = [e for e in calls if e["api"] == "messages"]
    codex = [e for e in calls if e["api"] == "responses"]
    assert claude and codex
    for e in claude:
        flags = [f.strip() for f in e["headers"]["anthropic-beta"].split(",")]
        assert flags.count("oauth-2025-04-20") == 1 and flags[:2] == CLIENT_BETA.split(",")
        assert "x-api-key" not in e["headers"]
        assert e["headers"]["authorization"].startswith("Bearer ")
    assert all(e["headers"]["chatgpt-account-id"] == f"acct-sub-{e['account'][4:]}"
               for e in codex)
    assert {e["account"] for e in calls} == {f"sub-{a}" for a in LOGINS}
    # nothing the proxy wrote holds a token: its log, the saved flows
    secrets = fake.oauth.secrets()
    assert not [s for s in secrets if s in out]
    data = flows_file.read_bytes()
    assert not [s for s in secrets if s.encode() in data]
    with flows_file.open("rb") as fh:
        signed = [f for f in mitmio.FlowReader(fh).stream()
                  if "stickyroute.signed" in f.metadata]
    assert signed and all(f.request.headers["authorization"].startswith("Bearer [stickyroute:")
                          for f in signed)


# ---- two proxies, one Redis ---------------------------------------------------------------
def test_two_proxies_on_one_redis_refresh_each_login_once(
        fake: FakeUpstream, mitmdump_factory: MitmdumpFactory, tmp_path: Path) -> None:
    issued = create_logins(fake)
    # each proxy has its own copy of the logins (as on two machines): only Redis ties them
    files = [write_world(fake, tmp_path / f"proxy{i}", issued) for i in range(2)]
    with RedisServer() as server:
        def start(i: int) -> Mitmdump:
            return mitmdump_factory([STICKY_ADDON, REDIRECT_ADDON], options(
                fake, files[i], sticky_store=server.url), confdir=tmp_path / f"conf{i}")

        proxies = [start(0), start(1)]
        began = time.monotonic()
        with Traffic(lambda turn: proxies[turn % 2], workers=4) as traffic:
            time.sleep(5)
            # a restart mid-run; while it is down its login files fall behind (the other
            # proxy refreshes), so the restarted one must take the tokens from Redis
            old = proxies[1]
            proxies[1] = proxies[0]  # clients go to the one still up meanwhile
            time.sleep(0.5)
            first_run = old.stop()
            time.sleep(2 * TTL)
            proxies[1] = restarted = start(1)
            time.sleep(6)
        elapsed = time.monotonic() - began
        outs = [first_run, *(p.stop() for p in (proxies[0], restarted))]
    traffic.assert_no_client_errors()
    assert_single_use(fake)
    stats = fake.oauth.stats()
    assert all(s["revoked"] is False for s in stats.values()), stats
    # once per expiry between the two of them, not once per proxy
    assert all(2 <= s["refreshes"] <= bound(elapsed) for s in stats.values()), (stats, elapsed)
    assert all(e["status"] == 200 for e in refresh_log(fake)), refresh_log(fake)
    # the restarted proxy's files were behind: it took the current tokens from Redis
    assert "took the login another proxy refreshed" in outs[2]
    assert not [o for o in outs if "Traceback" in o]


# ---- a revoked login ------------------------------------------------------------------------
def admin(port: int) -> httpx2.Client:
    return httpx2.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=10,
                         headers={"authorization": f"Bearer {ADMIN_TOKEN}"})


def accounts_view(port: int) -> dict[str, dict[str, Any]]:
    with admin(port) as client:
        return {a["alias"]: a for a in client.get("/api/accounts").json()["accounts"]}


def wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def test_a_revoked_login_leaves_its_account_revoked_while_the_others_serve(
        fake: FakeUpstream, mitmdump_factory: MitmdumpFactory, tmp_path: Path) -> None:
    accounts = write_world(fake, tmp_path / "logins", create_logins(fake))
    port = find_free_port()
    proxy = mitmdump_factory([STICKY_ADDON, REDIRECT_ADDON], options(
        fake, accounts, sticky_admin=f"127.0.0.1:{port}", sticky_admin_token=ADMIN_TOKEN))
    with Traffic(lambda _: proxy) as traffic:
        time.sleep(2)
        with fake.lock:
            fake.oauth.revoke("cx1")  # a logout elsewhere, a password change
        assert wait_for(lambda: accounts_view(port)["cx1"]["login"]["state"] == "revoked", 10)
        served_before = len(fake.requests(api="responses"))
        time.sleep(2)  # the other chatgpt login serves every Codex conversation meanwhile
        view = accounts_view(port)
        assert len(fake.requests(api="responses")) > served_before
        assert view["cx1"]["health"]["state"] == "disabled"
        assert view["cx1"]["health"]["reason"].startswith("revoked: log in again")
        assert view["cx1"]["login"]["reason"].startswith("log in again")
        assert all(view[a]["health"]["state"] == "healthy" for a in ("cx2", "cl1", "cl2"))
        with admin(port) as client:
            metrics = client.get("/metrics").text
        assert 'stickyroute_login_revoked{account="cx1"} 1.0' in metrics
        # the person logs in again and imports the new login: the account comes back
        with fake.lock:
            new = fake.oauth.create("sub-cx1", "chatgpt", login="cx1-again")
        write_login_file(tmp_path / "logins" / "cx1.json", new)
        assert wait_for(lambda: accounts_view(port)["cx1"]["health"]["state"] == "healthy", 10)
        time.sleep(1)
    out = proxy.stop()
    traffic.assert_no_client_errors()  # its conversations moved to the other login
    assert "cx1 healthy -> disabled: revoked: log in again" in out
    assert "cx1: took the login in" in out
    assert fake.oauth.stats()["cx1"]["reused"] == 0
    assert not [s for s in fake.oauth.secrets() if s in out]
