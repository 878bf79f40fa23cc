"""Issue 12, no open relay: a real mitmdump listening on every interface signs requests only for
clients on this machine, for clients the clients: gate knows, or for anyone when
sticky_allow_remote is set. Clients connect from this machine's own non-loopback address, so
mitmproxy sees them as another machine would look."""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path

import httpx2
import pytest

from devtools.harness import (
    ANTHROPIC_KEYS,
    OPENAI_KEYS,
    REDIRECT_ADDON,
    STICKY_ADDON,
    Mitmdump,
    non_loopback_address,
    redirect_options,
    write_accounts,
)
from fakeapi import FakeUpstream
from tests.e2e.helpers import MitmdumpFactory

ADDRESS = non_loopback_address()
needs_address = pytest.mark.skipif(
    ADDRESS is None, reason="this machine has no non-loopback IPv4 address to connect from, so "
    "no client can look remote to the proxy")
TOKEN = "remote-client-token"
SECRETS = [*OPENAI_KEYS, *ANTHROPIC_KEYS]
BODY = {"model": "gpt-5", "input": "hello"}


def client(proxy: Mitmdump, source: str, key: str = "sk-made-up") -> httpx2.Client:
    """A client whose connections to the proxy start from `source` (its address as the proxy
    sees it) and that talks to the proxy at that same address."""
    transport = httpx2.HTTPTransport(
        local_address=source,
        proxy=httpx2.Proxy(f"http://{source}:{proxy.port}"),
        verify=ssl.create_default_context(cafile=str(proxy.ca_path)))
    return httpx2.Client(transport=transport, trust_env=False, timeout=20,
                         headers={"authorization": f"Bearer {key}"})


def start(factory: MitmdumpFactory, fake: FakeUpstream, accounts: Path,
          **options: object) -> Mitmdump:
    return factory([STICKY_ADDON, REDIRECT_ADDON], listen_host="",
                   options={"sticky_accounts": str(accounts), **redirect_options(fake),
                            **options})


def signed_upstream(fake: FakeUpstream) -> list[dict]:
    return [e for e in fake.requests() if any(s in str(e.get("credential")) for s in SECRETS)]


@needs_address
def test_remote_client_without_a_gate_gets_403_and_nothing_goes_upstream(
        mitmdump_factory, fake_upstream, tmp_path):
    assert ADDRESS is not None
    proxy = start(mitmdump_factory, fake_upstream, write_accounts(tmp_path / "accounts.yaml"))
    with client(proxy, ADDRESS) as remote:
        r = remote.post("https://api.openai.com/v1/responses", json=BODY)
        assert r.status_code == 403
        error = r.json()["error"]
        assert error["code"] == "remote_client_not_allowed"
        assert "sticky_allow_remote" in error["message"] and "clients:" in error["message"]
        a = remote.post("https://api.anthropic.com/v1/messages",
                        json={"model": "claude-sonnet-4-5", "max_tokens": 5,
                              "messages": [{"role": "user", "content": "hi"}]},
                        headers={"x-api-key": "made-up"})
        assert a.status_code == 403 and a.json()["type"] == "error"
        assert not any(s in r.text + a.text for s in SECRETS)
    assert signed_upstream(fake_upstream) == []
    assert fake_upstream.requests() == []  # refused at the proxy: nothing reached the fake
    with client(proxy, "127.0.0.1") as local:  # the same proxy still serves this machine
        r = local.post("https://api.openai.com/v1/responses", json=BODY)
        assert r.status_code == 200, r.text
    [entry] = fake_upstream.requests()
    assert entry["account"] in OPENAI_KEYS.values()
    assert proxy.wait_for_output(rf"refused POST .* from {ADDRESS}: remote_client_not_allowed")


@needs_address
def test_remote_client_with_a_gate_token_is_served(mitmdump_factory, fake_upstream, tmp_path):
    assert ADDRESS is not None
    accounts = write_accounts(tmp_path / "accounts.yaml")
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    accounts.write_text(accounts.read_text() + "clients:\n  - name: laptop\n"
                        f"    token_hash: sha256:{digest}\n    accounts: ['*']\n")
    proxy = start(mitmdump_factory, fake_upstream, accounts)
    with client(proxy, ADDRESS, key=TOKEN) as remote:
        r = remote.post("https://api.openai.com/v1/responses", json=BODY)
        assert r.status_code == 200, r.text
    with client(proxy, ADDRESS) as stranger:
        r = stranger.post("https://api.openai.com/v1/responses", json=BODY)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unknown_client"
    [entry] = fake_upstream.requests()
    assert entry["account"] in OPENAI_KEYS.values() and TOKEN not in str(entry)


@needs_address
def test_allow_remote_serves_everyone_and_says_so(mitmdump_factory, fake_upstream, tmp_path):
    assert ADDRESS is not None
    proxy = start(mitmdump_factory, fake_upstream, write_accounts(tmp_path / "accounts.yaml"),
                  sticky_allow_remote=True)
    assert proxy.wait_for_output("sticky_allow_remote is on: any client that can reach")
    with client(proxy, ADDRESS) as remote:
        r = remote.post("https://api.openai.com/v1/responses", json=BODY)
        assert r.status_code == 200, r.text
    assert len(signed_upstream(fake_upstream)) == 1
