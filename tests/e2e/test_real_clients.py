"""The README's client recipes, run with the real Codex CLI and Claude Code.

The pinned CLIs (`just clients`, scripts/install-clients) run non-interactively, each with a
throwaway home and config and only the environment the README gives them, through a real
mitmdump with stickyroute and the redirect addon (every host goes to the fake upstream, so
nothing leaves the machine). Each scenario then reads the fake upstream's log: every turn of a
conversation on one account, cached prompt tokens from the second turn on, the client's own
credential never upstream, a second conversation on another account, and no account credential
on a host outside that account's own, whatever the CLI sends at start.

The subscription scenarios put both sides on OAuth logins: the pool is `oauth_file:` accounts
whose logins the fake issued with access tokens that live a few seconds (refreshed by the proxy
between the turns of a conversation), and the CLI is logged in with a long-lived login of its
own (Claude Code's `.credentials.json`, Codex's `auth.json`), so it never refreshes it. Those
also prove that the CLI's own tokens reach no host, that the pool's tokens reach only their
API host and (refresh tokens) the token endpoint, and that no refresh token was spent twice.

Marked `clients` as well as `e2e`: `pytest -m "not clients"` leaves these out.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools.harness import (
    ANTHROPIC_KEYS,
    OPENAI_KEYS,
    REDIRECT_ADDON,
    REPO,
    STICKY_ADDON,
    Mitmdump,
    make_fake,
    write_accounts,
)
from fakeapi import FakeUpstream
from fakeapi.oauth import (
    OAUTH_BETA,
    TOKEN_PATHS,
    Issued,
    claude_credentials,
    codex_auth,
    write_login_file,
)
from tests.e2e.helpers import MitmdumpFactory

pytestmark = pytest.mark.clients  # (e2e: every test in this folder)

BIN = REPO / ".clients" / "node_modules" / ".bin"
INSTALL = REPO / "scripts" / "install-clients"
CODEX_MODEL = "gpt-5.1-codex"
CLAUDE_MODEL = "claude-sonnet-4-6"
ANSWER = "the fox ran far"  # how every answer of the fake upstream starts

# Two seats of one ChatGPT team workspace: different tokens, one ChatGPT-Account-ID.
WORKSPACE = "ws-team-0001"
SEATS = {"tok-seat-1": ("chatgpt-seat-1", WORKSPACE), "tok-seat-2": ("chatgpt-seat-2", WORKSPACE)}
# Where each account credential may go: its account's host, nowhere else.
HOST_OF = {**{key: "api.openai.com" for key in OPENAI_KEYS},
           **{key: "api.anthropic.com" for key in ANTHROPIC_KEYS},
           **{token: "chatgpt.com" for token in SEATS}}

CODEX_QUIET = """\
check_for_update_on_startup = false
[analytics]
enabled = false
"""
CODEX_HTTP_PROVIDER = """\
model_provider = "openai-proxied"
[model_providers.openai-proxied]
name = "OpenAI through stickyroute"
base_url = "https://api.openai.com/v1"
env_key = "OPENAI_API_KEY"
wire_api = "responses"
supports_websockets = false
"""
# Claude Code's documented switch for telemetry, error reports and update checks at once.
CLAUDE_QUIET = {"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}

# Subscription pools: the pool logins' access tokens live TTL seconds and are refreshed MARGIN
# seconds ahead (every ~2 s), so a conversation crosses a refresh within a few seconds; the
# CLI's own login lives a year, so the CLI has no reason to refresh it.
TTL = 4.0
MARGIN = 2
OWN_LOGIN_TTL = 365 * 86400.0
POOL = ("sub1", "sub2")  # aliases and fake login names; the fake account is "acct-<alias>"
API_HOST = {"anthropic": "api.anthropic.com", "chatgpt": "chatgpt.com"}
TOKEN_PATH = {family: path for path, family in TOKEN_PATHS.items()}


# ---- the installed CLIs -----------------------------------------------------------------


@pytest.fixture(scope="module")
def clis() -> dict[str, Path]:
    """codex and claude from .clients/, installed here when npm can do it."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are not installed: the real-client tests need them "
                    "(Debian: apt-get install nodejs npm; then `just clients`)")
    done = subprocess.run([str(INSTALL)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.skip(f"`just clients` could not install the pinned CLIs:\n{done.stderr[-2000:]}")
    return {"codex": BIN / "codex", "claude": BIN / "claude", "node_dir": Path(node).parent}


@dataclass
class Home:
    """One user's throwaway machine: home, CODEX_HOME and the folder the CLI runs in."""

    root: Path

    def __post_init__(self) -> None:
        for sub in ("home", "codex", "work"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    @property
    def codex_home(self) -> Path:
        return self.root / "codex"


def run(clis: dict[str, Path], home: Home, argv: list[str], env: dict[str, str],
        timeout: float = 60) -> str:
    """Run one CLI command with only the given environment; its output, or a failure."""
    base = {"PATH": f"{clis['node_dir']}:/usr/bin:/bin", "HOME": str(home.root / "home"),
            "LANG": "C.UTF-8", "TERM": "dumb"}
    # Its own process group: `codex` is a Node wrapper around a native binary, and a timeout
    # must not leave that binary running.
    proc = subprocess.Popen(argv, env={**base, **env}, cwd=home.root / "work",
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"{argv} still running after {timeout}s:\n{(stdout + stderr)[-4000:]}")
    out = stdout + stderr
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{out[-4000:]}"
    assert ANSWER in stdout, f"{argv} printed no answer:\n{out[-4000:]}"
    return out


def codex(clis: dict[str, Path], home: Home, proxy: Mitmdump, *args: str,
          api_key: str | None = "sk-client-codex") -> str:
    env = {"CODEX_HOME": str(home.codex_home), "HTTPS_PROXY": proxy.proxy_url,
           "CODEX_CA_CERTIFICATE": str(proxy.ca_path)}
    if api_key is not None:
        env["OPENAI_API_KEY"] = api_key
    return run(clis, home, [str(clis["codex"]), "exec", "--skip-git-repo-check", "-m",
                            CODEX_MODEL, *args], env)


def claude(clis: dict[str, Path], home: Home, proxy: Mitmdump, *args: str,
           quiet: bool = True, api_key: str | None = "sk-ant-client-claude") -> str:
    env = {"HTTPS_PROXY": proxy.proxy_url, "NODE_EXTRA_CA_CERTS": str(proxy.ca_path),
           **(CLAUDE_QUIET if quiet else {})}
    if api_key is not None:
        env["ANTHROPIC_API_KEY"] = api_key
    return run(clis, home, [str(clis["claude"]), "-p", "--model", CLAUDE_MODEL, *args], env)


def chatgpt_login(home: Home, workspace: str) -> str:
    """A Codex `auth.json` for a ChatGPT user of `workspace`; returns its access token."""

    def jwt(claims: dict[str, Any]) -> str:
        parts = [{"alg": "RS256", "typ": "JWT"}, claims, {"sig": "none"}]
        return ".".join(base64.urlsafe_b64encode(json.dumps(p).encode()).rstrip(b"=").decode()
                        for p in parts)

    now = int(time.time())
    auth = {"chatgpt_account_id": workspace, "chatgpt_plan_type": "team",
            "chatgpt_user_id": "user-client-own", "user_id": "user-client-own"}
    claims = {"exp": now + 30 * 86400, "iat": now, "https://api.openai.com/auth": auth}
    access = jwt(claims)
    tokens = {"id_token": jwt({**claims, "email": "dev@example.com"}), "access_token": access,
              "refresh_token": "client-own-refresh-token", "account_id": workspace}
    (home.codex_home / "auth.json").write_text(json.dumps({
        "OPENAI_API_KEY": None, "tokens": tokens,
        "last_refresh": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}))
    return access


# ---- the proxy and the fake upstream ------------------------------------------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with make_fake(chatgpt_accounts=SEATS) as upstream:
        yield upstream


@pytest.fixture
def proxy(fake: FakeUpstream, mitmdump_factory: MitmdumpFactory,
          tmp_path_factory: pytest.TempPathFactory) -> Mitmdump:
    """A fresh stickyroute (no pins yet) in front of a freshly reset fake."""
    fake.reset()
    accounts = write_accounts(tmp_path_factory.mktemp("accounts") / "accounts.yaml")
    with accounts.open("a") as f:
        for token, (alias, workspace) in SEATS.items():
            f.write(f"  - alias: {alias}\n    provider: chatgpt\n    api_key: {token}\n"
                    f"    account_id: {workspace}\n")
    return mitmdump_factory([STICKY_ADDON, REDIRECT_ADDON], {
        "sticky_accounts": str(accounts), "sticky_store": "memory",
        "fake_upstream": fake.address, "fake_hosts": "*"})


# ---- what the fake upstream saw ----------------------------------------------------------


def model_calls(fake: FakeUpstream, api: str) -> list[dict[str, Any]]:
    return [e for e in fake.requests(api=api) if e["status"] == 200]


def turns(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Calls that asked for an answer (a WebSocket prewarm does not)."""
    return [c for c in calls if (c["body"] or {}).get("generate") is not False]


def conversation(calls: list[dict[str, Any]], header: str, value: str) -> list[dict[str, Any]]:
    return [c for c in calls if c["headers"].get(header) == value]


def one_account(calls: list[dict[str, Any]]) -> str:
    accounts = {c["account"] for c in calls}
    assert len(accounts) == 1 and None not in accounts, f"turns spread over {accounts}"
    return accounts.pop()


def assert_cached_from_second_turn(calls: list[dict[str, Any]]) -> None:
    assert len(calls) >= 2
    cached = [c["usage"]["cached_tokens"] for c in calls]
    assert all(n > 0 for n in cached[1:]), f"cached prompt tokens per turn: {cached}"


def assert_credentials_in_place(fake: FakeUpstream, *client_secrets: str) -> None:
    """The client's own secrets reached no provider; each account credential only its host."""
    log = fake.requests()
    assert log, "the fake upstream saw nothing"
    for entry in log:
        seen = entry["credential"] + json.dumps(entry["headers"])
        where = f"{entry['method']} {entry['original_host']}{entry['path']}"
        for secret in client_secrets:
            assert secret not in seen, f"the client's own credential reached {where}"
        for secret, host in HOST_OF.items():
            if secret in seen:
                assert entry["original_host"] == host, f"{host}'s credential went to {where}"
        assert entry["status"] is not None and entry["status"] < 500, f"{where}: {entry['status']}"


def assert_proxy_sane(proxy: Mitmdump) -> str:
    out = proxy.output()
    for bad in ("Traceback", "could not route", "could not follow", "could not observe"):
        assert bad not in out, f"the proxy logged {bad!r}:\n{out[-4000:]}"
    for secret in HOST_OF:
        assert secret not in out, "an account credential in the proxy's output"
    return out


def websocket_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if "stickyroute: responses ->" in line
            and " | 101" in line]


# ---- subscription pools ------------------------------------------------------------------


@dataclass
class Pool:
    """A stickyroute whose accounts are subscription logins of one family, all the fake's."""

    proxy: Mitmdump
    family: str

    def secrets(self, fake: FakeUpstream) -> dict[str, set[str]]:
        """Every token the fake issued to each pool login so far (refreshes included)."""
        with fake.lock:
            return {alias: fake.oauth.secrets(alias) for alias in POOL}


@pytest.fixture
def subscription_pool(fake: FakeUpstream, mitmdump_factory: MitmdumpFactory,
                      tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Pool]:
    """start(family): a fresh stickyroute on two `oauth_file:` accounts of that family, whose
    login files the (freshly reset) fake issued; refreshes go to the fake's token endpoint."""

    def start(family: str) -> Pool:
        fake.reset()
        folder = tmp_path_factory.mktemp("logins")
        lines = ["accounts:"]
        for alias in POOL:
            with fake.lock:
                issued = fake.oauth.create(f"acct-{alias}", family, login=alias,
                                           access_ttl=TTL)
            write_login_file(folder / f"{alias}.json", issued)
            lines += [f"  - alias: {alias}", f"    provider: {family}",
                      f"    oauth_file: {alias}.json",
                      f"    token_url: {fake.url}{TOKEN_PATH[family]}"]
        accounts = folder / "accounts.yaml"
        accounts.write_text("\n".join(lines) + "\n")
        accounts.chmod(0o600)
        proxy = mitmdump_factory([STICKY_ADDON, REDIRECT_ADDON], {
            "sticky_accounts": str(accounts), "sticky_store": "memory",
            "sticky_refresh_margin": MARGIN, "fake_upstream": fake.address, "fake_hosts": "*"})
        return Pool(proxy, family)

    return start


def own_login(fake: FakeUpstream, home: Home, family: str, name: str) -> Issued:
    """The CLI's own subscription login, a long-lived one the fake issued, in the file and the
    shape the CLI writes: Claude Code's ~/.claude/.credentials.json, Codex's auth.json."""
    with fake.lock:
        issued = fake.oauth.create(name, family, login=name, access_ttl=OWN_LOGIN_TTL,
                                   chatgpt_account_id=f"ws-{name}" if family == "chatgpt"
                                   else None)
    if family == "chatgpt":
        (home.codex_home / "auth.json").write_text(json.dumps(codex_auth(issued)))
    else:
        folder = home.root / "home" / ".claude"
        folder.mkdir(exist_ok=True)
        (folder / ".credentials.json").write_text(json.dumps(claude_credentials(issued)))
    return issued


def own_secrets(fake: FakeUpstream, *names: str) -> set[str]:
    with fake.lock:
        return set().union(*(fake.oauth.secrets(name) for name in names))


def wait_for_refresh(pool: Pool, alias: str) -> None:
    """Until the proxy has refreshed `alias`'s login once more (its next request is signed with
    the new access token)."""
    line = f"{alias}: login refreshed"
    done = pool.proxy.output().count(line)
    deadline = time.monotonic() + TTL + 10
    while pool.proxy.output().count(line) <= done:
        assert time.monotonic() < deadline, f"no refresh of {alias}'s login"
        time.sleep(0.05)


def alias_of(account: str) -> str:
    return account.removeprefix("acct-")


def assert_logins_in_place(fake: FakeUpstream, pool: Pool, *own: str) -> None:
    """The CLIs' own logins reached no host; each pool login's tokens went only to its API host
    (access tokens, ChatGPT account ids) or straight to its token endpoint (refresh tokens);
    each pool login was refreshed, none of its refresh tokens twice; the CLIs' logins never."""
    log = fake.requests()
    assert log, "the fake upstream saw nothing"
    client = own_secrets(fake, *own)
    pool_secrets = set().union(*pool.secrets(fake).values())
    for entry in log:
        seen = entry["credential"] + json.dumps(entry["headers"]) + json.dumps(entry["body"])
        where = f"{entry['method']} {entry['original_host']}{entry['path']}"
        assert not [s for s in client if s in seen], f"the CLI's own login reached {where}"
        if [s for s in pool_secrets if s in seen]:
            if entry["api"] == "oauth_token":  # the refresher, straight to the token endpoint
                assert entry["original_host"] is None, f"a refresh went through {where}"
                assert entry["path"] == TOKEN_PATH[pool.family], where
            else:
                assert entry["original_host"] == API_HOST[pool.family], (
                    f"a login's token went to {where}")
        assert entry["status"] is not None and entry["status"] < 500, f"{where}: {entry['status']}"
    with fake.lock:
        stats = fake.oauth.stats()
    assert all(stats[alias]["refreshes"] >= 1 for alias in POOL), stats
    assert all(s["reused"] == 0 and not s["revoked"] for s in stats.values()), stats
    assert all(stats[name]["refreshes"] == 0 for name in own), stats
    refreshes = [e["credential"] for e in fake.requests(api="oauth_token")]
    assert len(refreshes) == len(set(refreshes)), "a refresh token was sent twice"
    assert all(e["status"] == 200 for e in fake.requests(api="oauth_token"))


def assert_pool_proxy_sane(fake: FakeUpstream, pool: Pool) -> None:
    out = assert_proxy_sane(pool.proxy)
    with fake.lock:
        leaked = [s for s in fake.oauth.secrets() if s in out]
    assert not leaked, "a login's token in the proxy's output"


# ---- scenarios ---------------------------------------------------------------------------


def test_codex_builtin_provider_over_websocket(clis: dict[str, Path], proxy: Mitmdump,
                                               fake: FakeUpstream, tmp_path: Path) -> None:
    """No config change: Codex's own openai provider, its WebSocket through HTTPS_PROXY."""
    first, second = Home(tmp_path / "first"), Home(tmp_path / "second")
    for home in (first, second):
        (home.codex_home / "config.toml").write_text(CODEX_QUIET)
    codex(clis, first, proxy, "Say hi.")
    codex(clis, first, proxy, "resume", "--last", "Say more.")
    codex(clis, second, proxy, "Say hello.")

    calls = model_calls(fake, "responses")
    assert calls and all(c.get("ws") and c["original_host"] == "api.openai.com" for c in calls)
    thread = calls[0]["headers"]["session-id"]
    talk = conversation(calls, "session-id", thread)
    assert sum(c["body"].get("generate") is False for c in talk) == 2  # one per connection
    account = one_account(talk)
    assert_cached_from_second_turn(turns(talk))
    other = [c for c in calls if c not in talk]
    assert other and one_account(other) != account
    assert_credentials_in_place(fake, "sk-client-codex")

    lines = websocket_lines(assert_proxy_sane(proxy))
    prewarms = [line for line in lines if "| prewarm |" in line]
    assert len(prewarms) == 3 and len(lines) == 6, "\n".join(lines)
    assert not any(" | 0 B | " in line for line in lines), "\n".join(lines)


def test_codex_custom_http_provider(clis: dict[str, Path], proxy: Mitmdump,
                                   fake: FakeUpstream, tmp_path: Path) -> None:
    """The README's optional provider for older Codex builds: HTTP + SSE, no WebSocket."""
    first, second = Home(tmp_path / "first"), Home(tmp_path / "second")
    for home in (first, second):
        (home.codex_home / "config.toml").write_text(CODEX_HTTP_PROVIDER + CODEX_QUIET)
    codex(clis, first, proxy, "Say hi.")
    codex(clis, first, proxy, "resume", "--last", "Say more.")
    codex(clis, second, proxy, "Say hello.")

    calls = model_calls(fake, "responses")
    assert calls and not any(c.get("ws") for c in calls)
    assert all(c["method"] == "POST" and c["stream"] for c in calls)
    talk = conversation(calls, "session-id", calls[0]["headers"]["session-id"])
    assert len(talk) == 2
    account = one_account(talk)
    assert_cached_from_second_turn(talk)
    assert one_account([c for c in calls if c not in talk]) != account
    assert_credentials_in_place(fake, "sk-client-codex")
    assert_proxy_sane(proxy)


def test_codex_chatgpt_login(clis: dict[str, Path], proxy: Mitmdump, fake: FakeUpstream,
                             tmp_path: Path) -> None:
    """A ChatGPT login of the team workspace, served by the workspace's seats in accounts.yaml."""
    first, second = Home(tmp_path / "first"), Home(tmp_path / "second")
    own_tokens = []
    for home in (first, second):
        (home.codex_home / "config.toml").write_text(CODEX_QUIET)
        own_tokens.append(chatgpt_login(home, WORKSPACE))
    codex(clis, first, proxy, "Say hi.", api_key=None)
    codex(clis, first, proxy, "resume", "--last", "Say more.", api_key=None)
    codex(clis, second, proxy, "Say hello.", api_key=None)

    calls = model_calls(fake, "responses")
    assert calls and all(c["path"] == "/backend-api/codex/responses" for c in calls)
    talk = conversation(calls, "session-id", calls[0]["headers"]["session-id"])
    account = one_account(talk)
    assert account in {alias for alias, _ in SEATS.values()}
    assert_cached_from_second_turn(turns(talk))
    assert one_account([c for c in calls if c not in talk]) != account
    assert_credentials_in_place(fake, *own_tokens, "client-own-refresh-token")
    assert_proxy_sane(proxy)


def test_claude_code_api_key(clis: dict[str, Path], proxy: Mitmdump, fake: FakeUpstream,
                             tmp_path: Path) -> None:
    """`claude -p`, then `--continue`; a second user leaves telemetry on."""
    first, second = Home(tmp_path / "first"), Home(tmp_path / "second")
    claude(clis, first, proxy, "Say hi.")
    claude(clis, first, proxy, "--continue", "Say more.")
    quiet_calls = {e["path"].split("?")[0] for e in fake.requests(api="other")}
    claude(clis, second, proxy, "Say hello.", quiet=False)

    calls = model_calls(fake, "messages")
    assert calls and all(c["original_host"] == "api.anthropic.com" for c in calls)
    header = "x-claude-code-session-id"
    talk = conversation(calls, header, calls[0]["headers"][header])
    assert len(talk) == 2
    account = one_account(talk)
    assert_cached_from_second_turn(talk)
    assert one_account([c for c in calls if c not in talk]) != account
    # Quiet, Claude Code asks only for its settings and policy; the policy once per run.
    assert quiet_calls == {"/api/claude_code/settings", "/api/claude_code/policy_limits"}
    assert len(fake.requests(path="/api/claude_code/policy_limits")) == 3
    assert_credentials_in_place(fake, "sk-ant-client-claude")
    assert_proxy_sane(proxy)


def test_codex_chatgpt_login_of_a_workspace_outside_the_pool(
        clis: dict[str, Path], proxy: Mitmdump, fake: FakeUpstream, tmp_path: Path) -> None:
    home = Home(tmp_path / "personal")
    (home.codex_home / "config.toml").write_text(CODEX_QUIET)
    chatgpt_login(home, "ws-personal-elsewhere")
    env = {"CODEX_HOME": str(home.codex_home), "HTTPS_PROXY": proxy.proxy_url,
           "CODEX_CA_CERTIFICATE": str(proxy.ca_path)}
    # Codex asks which workspaces its login may use and stops when its own is not listed; the
    # proxy answers that itself with the client's own workspace (its requests are the pool's).
    # Broken, Codex retries for ~12 s; fixed, it answers in well under a second.
    run(clis, home, [str(clis["codex"]), "exec", "--skip-git-repo-check", "-m", CODEX_MODEL,
                     "Say hi."], env, timeout=6)
    assert fake.requests(path="/backend-api/wham/accounts/check") == []  # answered locally
    assert proxy.wait_for_output(r"wham/accounts/check -> 200: answered by the proxy")
    calls = [c for c in model_calls(fake, "responses") if c["headers"].get("session-id")]
    assert calls and all(c["account"] in {alias for alias, _ in SEATS.values()} for c in calls)


def test_claude_code_logged_in_on_a_subscription_pool(
        clis: dict[str, Path], subscription_pool: Callable[[str], Pool], fake: FakeUpstream,
        tmp_path: Path) -> None:
    """Claude Code with its own Claude login (no API key) in front of two Claude logins."""
    pool = subscription_pool("anthropic")
    first, second = Home(tmp_path / "first"), Home(tmp_path / "second")
    own = [own_login(fake, home, "anthropic", f"client-own-{n}").login
           for n, home in enumerate((first, second))]
    claude(clis, first, pool.proxy, "Say hi.", api_key=None)
    [opened] = model_calls(fake, "messages")
    wait_for_refresh(pool, alias_of(opened["account"]))  # the next turn crosses a refresh
    claude(clis, first, pool.proxy, "--continue", "Say more.", api_key=None)
    quiet_calls = {e["path"].split("?")[0] for e in fake.requests(api="other")}
    claude(clis, second, pool.proxy, "Say hello.", quiet=False, api_key=None)

    calls = model_calls(fake, "messages")
    header = "x-claude-code-session-id"
    talk = conversation(calls, header, calls[0]["headers"][header])
    assert len(talk) == 2
    account = one_account(talk)
    assert talk[0]["credential"] != talk[1]["credential"], "no refresh between the turns"
    assert_cached_from_second_turn(talk)
    assert one_account([c for c in calls if c not in talk]) != account
    # Logged in, quiet, Claude Code reads only its profile besides the turns (no settings or
    # policy, unlike with an API key), once per user (it keeps it in ~/.claude.json); the pool
    # login that signed the request answers it.
    assert quiet_calls == {"/api/oauth/profile"}
    profiles = fake.requests(path="/api/oauth/profile")
    assert len(profiles) == 2 and all(e["status"] == 200 for e in profiles)
    # every request to api.anthropic.com was signed with a pool login: Bearer, no x-api-key,
    # the oauth beta (which Claude Code sends itself) exactly once
    anthropic = [e for e in fake.requests() if e["original_host"] == "api.anthropic.com"]
    secrets = pool.secrets(fake)
    for e in anthropic:
        scheme, _, token = e["headers"]["authorization"].partition(" ")
        assert scheme == "Bearer" and any(token in tokens for tokens in secrets.values())
        assert "x-api-key" not in e["headers"]
        flags = [f.strip() for f in e["headers"]["anthropic-beta"].split(",")]
        assert flags.count(OAUTH_BETA) == 1, e["headers"]["anthropic-beta"]
    assert_logins_in_place(fake, pool, *own)
    assert_pool_proxy_sane(fake, pool)


def test_codex_chatgpt_login_on_a_subscription_pool(
        clis: dict[str, Path], subscription_pool: Callable[[str], Pool], fake: FakeUpstream,
        tmp_path: Path) -> None:
    """Codex with its own ChatGPT login in front of two ChatGPT logins of other workspaces."""
    pool = subscription_pool("chatgpt")
    first, second = Home(tmp_path / "first"), Home(tmp_path / "second")
    own = []
    for n, home in enumerate((first, second)):
        (home.codex_home / "config.toml").write_text(CODEX_QUIET)
        own.append(own_login(fake, home, "chatgpt", f"client-own-{n}").login)
    codex(clis, first, pool.proxy, "Say hi.", api_key=None)
    opened = turns(model_calls(fake, "responses"))[0]
    wait_for_refresh(pool, alias_of(opened["account"]))  # the resumed turn crosses a refresh
    codex(clis, first, pool.proxy, "resume", "--last", "Say more.", api_key=None)
    codex(clis, second, pool.proxy, "Say hello.", api_key=None)

    calls = model_calls(fake, "responses")
    assert calls and all(c["path"] == "/backend-api/codex/responses" and c.get("ws")
                         for c in calls)
    talk = conversation(calls, "session-id", calls[0]["headers"]["session-id"])
    account = one_account(talk)
    said = turns(talk)
    assert len(said) == 2 and said[0]["credential"] != said[1]["credential"], (
        "no refresh between the turns")
    assert_cached_from_second_turn(said)
    assert one_account([c for c in calls if c not in talk]) != account
    # each call carries its pool login's own workspace, never the CLI's
    assert all(c["headers"]["chatgpt-account-id"] == f"acct-{c['account']}" for c in calls)
    # the workspace discovery was the proxy's to answer: it never reached the provider
    assert fake.requests(path="/backend-api/wham/accounts/check") == []
    assert pool.proxy.wait_for_output(r"wham/accounts/check -> 200: answered by the proxy")
    assert_logins_in_place(fake, pool, *own)
    assert_pool_proxy_sane(fake, pool)


def test_pinned_versions_are_the_ones_installed(clis: dict[str, Path], tmp_path: Path) -> None:
    script = INSTALL.read_text()
    codex_pin = re.search(r"^CODEX_VERSION=(\S+)", script, re.M)
    claude_pin = re.search(r"^CLAUDE_VERSION=(\S+)", script, re.M)
    assert codex_pin and claude_pin
    env = {"PATH": f"{clis['node_dir']}:/usr/bin:/bin", "HOME": str(tmp_path)}
    versions = [subprocess.run([str(clis[name]), "--version"], env=env, capture_output=True,
                               text=True, timeout=30).stdout for name in ("codex", "claude")]
    assert codex_pin.group(1) in versions[0] and claude_pin.group(1) in versions[1]
