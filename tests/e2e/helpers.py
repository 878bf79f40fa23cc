"""Shared builders for the e2e tests: a proxy with the admin API on a free port, SDK turns
through it, and the type of the mitmdump factory fixtures (e2e/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from devtools.harness import (
    REDIRECT_ADDON,
    STICKY_ADDON,
    Mitmdump,
    anthropic_client,
    find_free_port,
    openai_client,
    redirect_options,
)
from fakeapi.oauth import write_login_file

MitmdumpFactory = Callable[..., Mitmdump]

ADMIN_TOKEN = "e2e-admin-token-7f3a"
ADMIN_ACCOUNTS = """\
accounts:
  - alias: oa
    provider: openai
    api_key: sk-test-openai-a
  - alias: ob
    provider: openai
    api_key: sk-test-openai-b
    headers: {OpenAI-Project: proj-secret-77}
  - alias: an
    provider: anthropic
    api_key: sk-ant-test-a
  - alias: cg
    provider: chatgpt
    api_key: tok-chatgpt-a
    account_id: chatgpt-account-id-a
  - alias: sub
    provider: anthropic
    oauth_file: sub.json
    enabled: false  # a subscription login: its view is in the answers, it takes no traffic
"""
ADMIN_SECRETS = ("sk-test-openai-a", "sk-test-openai-b", "proj-secret-77", "sk-ant-test-a",
                 "tok-chatgpt-a", "chatgpt-account-id-a")  # every credential in ADMIN_ACCOUNTS


def write_admin_accounts(fake: Any, tmp: Path) -> Path:
    """ADMIN_ACCOUNTS, with the login file of `sub`: a dead subscription login (the first
    background pass finds it revoked: log in again)."""
    with fake.lock:
        dead = fake.oauth.create("sub", "anthropic", access_ttl=0)
        fake.oauth.revoke(dead.login)
    write_login_file(tmp / "sub.json", dead)
    accounts = tmp / "accounts.yaml"
    accounts.write_text(ADMIN_ACCOUNTS + f"    token_url: {fake.url}/v1/oauth/token\n")
    return accounts


def start_proxy(factory: MitmdumpFactory, fake: Any, tmp: Path, **options: Any
                ) -> tuple[Mitmdump, str]:
    """mitmdump with stickyroute on ADMIN_ACCOUNTS, the admin API on a free port: (proxy, its
    admin base URL)."""
    accounts = write_admin_accounts(fake, tmp)
    port = find_free_port()
    opts = {"sticky_accounts": str(accounts), "sticky_admin": f"127.0.0.1:{port}",
            **redirect_options(fake), **options}
    proxy = factory([STICKY_ADDON, REDIRECT_ADDON], opts)
    return proxy, f"http://127.0.0.1:{port}"


def ask_openai(proxy: Mitmdump, session: str) -> Any:
    with openai_client(proxy) as client:
        return client.responses.create(model="gpt-5", input=f"hello from {session}",
                                       extra_headers={"session-id": session})


def ask_anthropic(proxy: Mitmdump, session: str) -> Any:
    with anthropic_client(proxy) as client:
        return client.messages.create(
            model="claude-sonnet-4-5", max_tokens=20,
            messages=[{"role": "user", "content": f"hi {session}"}],
            extra_headers={"x-claude-code-session-id": session})
